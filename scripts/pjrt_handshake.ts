/**
 * `deno run -A scripts/pjrt_handshake.ts --pjrt_plugin PATH [--json]`: the ABI handshake with a PJRT plugin
 * (lib/backend/pjrt/handshake.ts) — C API version, table size, plugin attributes (StableHLO versions), then a
 * client, or the one line saying why none could be created (no TPU / no GPU on this host). Exit 0 when the
 * handshake itself worked (a missing device is reported, not an error); 1 when the plugin cannot be loaded.
 * Without `--pjrt_plugin` it uses the plugin discovery would pick.
 *
 * @example
 * ```sh
 * TF_CPP_MIN_LOG_LEVEL=2 deno run -A scripts/pjrt_handshake.ts --pjrt_plugin .../libtpu/libtpu.so
 * ```
 */
import { parseFlags } from "../lib/cli/flags.ts";
import { runCli } from "../lib/cli/run.ts";
import { ActshardError } from "../lib/errors.ts";
import { findPjrtPlugin, quietPluginLogs } from "../lib/backend/pjrt/index.ts";
import { pjrtHandshake } from "../lib/backend/pjrt/handshake.ts";
import { PjrtError, PjrtLoadError } from "../native/pjrt/mod.ts";

/** Parse flags, run the handshake, print the report. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("pjrt-handshake", args, {
    pjrt_plugin: { type: "string", metavar: "PATH", help: "PJRT plugin .so (default: discovery)" },
    json: { type: "boolean", help: "print the report as JSON" },
    verbose: { type: "boolean", help: "let the plugin's own log lines through" },
  }, { description: "Load a PJRT plugin and report its ABI facts and whether a client can be created." });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  const path = findPjrtPlugin((f.values.pjrt_plugin as string | undefined) ?? null);
  if (!f.values.verbose) quietPluginLogs();
  let r;
  try {
    r = await pjrtHandshake(path);
  } catch (e) {
    if (e instanceof PjrtLoadError) throw new ActshardError(e.message, { where: e.path, cause: e });
    if (e instanceof PjrtError) throw new ActshardError(`PJRT plugin failed: ${e.message}`, { where: path });
    throw e;
  }
  if (f.values.json) {
    console.log(JSON.stringify(r, null, 2));
    return 0;
  }
  const v = (x: unknown) => Array.isArray(x) ? x.join(".") : String(x ?? "?");
  console.log(`${r.path}: ${r.kind} plugin, PJRT C API ${r.apiVersion} (table ${r.tableSize} bytes)`);
  console.log(
    `  StableHLO ${v(r.attributes.stablehlo_minimum_version)}..${
      v(r.attributes.stablehlo_current_version)
    }; ` +
      `attributes ${JSON.stringify(r.attributes)}`,
  );
  console.log(
    r.client
      ? `  client: ${r.client.platform} ${r.client.version}, ${r.client.devices} device(s) (${r.client.kind})`
      : `  client: ${r.clientError}`,
  );
  console.log(`  ${r.seconds.toFixed(2)} s`);
  return 0;
}

if (import.meta.main) await runCli("pjrt-handshake", main);
