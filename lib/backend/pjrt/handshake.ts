/**
 * The ABI handshake with a PJRT plugin, without running anything on it: dlopen, `GetPjrtApi`, C API version
 * and table size, `PJRT_Plugin_Initialize`, `PJRT_Plugin_Attributes`, then `PJRT_Client_Create` — which on a
 * host without the plugin's hardware fails, and that failure is reported as our one line (`clientProblem`).
 * Used by `scripts/pjrt_handshake.ts` and the handshake tests (docs/pjrt.md records what real plugins printed).
 * Unlike the backend, it loads libtpu on a host without a TPU — with `TPU_SKIP_MDS_QUERY=1`, so libtpu does
 * not retry the cloud metadata server for minutes first.
 *
 * @example
 * ```ts
 * import { pjrtHandshake } from "./handshake.ts";
 * // e.g. …/site-packages/libtpu/libtpu.so on a TPU VM; here the C test double (native/build.sh)
 * const r = await pjrtHandshake("native/build/libpjrt_test_plugin.so");
 * console.log(r.apiVersion, r.client ?? r.clientError);
 * ```
 */
import { errorLine } from "../../errors.ts";
import {
  type AttributeValue,
  PjrtApi,
  PjrtClient,
  PjrtError,
  PjrtLoadError,
} from "../../../native/pjrt/mod.ts";
import { type PluginKind, pluginKind, tpuHardwarePresent } from "./discover.ts";
import { clientProblem } from "./index.ts";

/** What the handshake found. */
export interface HandshakeReport {
  path: string;
  kind: PluginKind;
  /** "0.117" */
  apiVersion: string;
  /** `PJRT_Api.struct_size`. */
  tableSize: number;
  attributes: Record<string, AttributeValue>;
  /** Set when a client was created: platform, version, device count and kind. */
  client?: { platform: string; version: string; devices: number; kind: string };
  /** Set when `PJRT_Client_Create` failed: our one line. */
  clientError?: string;
  seconds: number;
}

/** Run the handshake (load errors throw {@link PjrtLoadError}; a failed client is reported, not thrown). */
export async function pjrtHandshake(path: string): Promise<HandshakeReport> {
  const t0 = performance.now();
  const kind = pluginKind(path);
  if (kind === "tpu" && !tpuHardwarePresent() && Deno.env.get("TPU_SKIP_MDS_QUERY") === undefined) {
    Deno.env.set("TPU_SKIP_MDS_QUERY", "1");
  }
  const api = PjrtApi.open(path);
  const report: HandshakeReport = {
    path,
    kind,
    apiVersion: `${api.version.major}.${api.version.minor}`,
    tableSize: api.tableSize,
    attributes: api.attributes(),
    seconds: 0,
  };
  try {
    const client = PjrtClient.create(api, kind === "cpu" ? { cpu_device_count: 1 } : {});
    report.client = {
      platform: client.platformName,
      version: client.platformVersion,
      devices: client.devices.length,
      kind: client.devices[0]?.kind ?? "",
    };
    await client.close();
  } catch (e) {
    if (!(e instanceof PjrtError)) throw e;
    report.clientError = errorLine(clientProblem(e, path));
  } finally {
    api.close();
  }
  report.seconds = (performance.now() - t0) / 1000;
  return report;
}

export { PjrtLoadError };
