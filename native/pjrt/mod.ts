/**
 * Deno FFI binding to the PJRT C API (docs/pjrt.md): open a plugin, create a client, compile StableHLO text,
 * move buffers, execute on one or many devices. Every PJRT_Error becomes a {@link PjrtError}.
 *
 * @example
 * ```ts
 * import { PjrtApi, PjrtClient } from "./mod.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so");
 * const client = PjrtClient.create(api);
 * console.log(client.platformName, client.devices.length);
 * client.close();
 * api.close();
 * ```
 */
export * from "./api.ts";
export { PjrtError, PjrtLoadError, type PjrtLoadProblem, PjrtStructSizeError } from "./errors.ts";
export { type AttributeValue, type LiveCounts, PjrtApi, readNamedValues } from "./ffi.ts";
export { type HostLayout, PjrtBuffer, rowMajorLayout } from "./buffer.ts";
export { PjrtExecutable } from "./executable.ts";
export {
  CREATE_OPTION_TYPES,
  encodeNamedValues,
  type NamedValue,
  type NamedValueType,
  parseCreateOption,
  PjrtClient,
  type PjrtDevice,
} from "./client.ts";
