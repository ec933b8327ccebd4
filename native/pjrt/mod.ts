/**
 * Deno FFI binding to the PJRT C API (docs/pjrt.md): open a plugin, create a client, compile StableHLO text,
 * move buffers, execute on one or many devices. Every PJRT_Error becomes a {@link PjrtError}. This is the
 * `./pjrt` entry point of deno.json; the struct layouts and slot tables behind it (api.ts, ffi.ts's `Struct`)
 * are internal.
 *
 * @example
 * ```ts
 * import { PjrtApi, PjrtClient } from "./mod.ts";
 * const api = PjrtApi.open("native/build/libpjrt_test_plugin.so"); // the C test double (native/build.sh)
 * const client = PjrtClient.create(api);
 * console.log(client.platformName, client.devices.length);
 * await client.close();
 * api.close();
 * ```
 *
 * @module
 */
export { BINDING_API_VERSION, type ElementType, SUPPORTED_MAJOR } from "./api.ts";
export { PjrtError, PjrtLoadError, type PjrtLoadProblem, PjrtStructSizeError } from "./errors.ts";
export { type AttributeValue, type LiveCounts, PjrtApi, type Ptr } from "./ffi.ts";
export { PjrtBuffer } from "./buffer.ts";
export { PjrtExecutable } from "./executable.ts";
export {
  type NamedValue,
  type NamedValueType,
  parseCreateOption,
  PjrtClient,
  type PjrtDevice,
} from "./client.ts";
