/**
 * `deno task gcs-emulator [--port N] [--dir DIR] [--bucket NAME …] [--auto_create] [--list_page_size N] [--rate_limit]`: run the built-in GCS JSON-API emulator
 * until interrupted. Point clients at it with `STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT` (or
 * `apiEndpoint`). See docs/gcs.md.
 */
import { runCli } from "../lib/cli/run.ts";
import { numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";

/** Parse flags, start the emulator, print its URL, and serve until SIGINT/SIGTERM. */
export async function main(args: string[]): Promise<number> {
  const r = parseFlags("gcs-emulator", args, {
    port: { type: "string", default: "4443", help: "TCP port (0 = any free port)", metavar: "N", port: true },
    host: { type: "string", default: "127.0.0.1", help: "address to bind", metavar: "ADDR" },
    dir: {
      type: "string",
      help: "state directory (buckets, objects, upload sessions); default: a temp dir removed on exit",
      metavar: "DIR",
      path: true,
    },
    bucket: { type: "string", list: true, help: "bucket(s) to create at start", metavar: "NAME" },
    auto_create: {
      type: "boolean",
      default: false,
      help: "create buckets on first reference (default: unknown buckets are 404, as on GCS)",
    },
    no_auto_create: {
      type: "boolean",
      default: false,
      help: "unknown buckets are 404 (the default; accepted)",
    },
    list_page_size: { type: "string", help: "at most N entries per list page (short pages)", metavar: "N" },
    rate_limit: { type: "boolean", default: false, help: "429 for a 2nd write of one object within 1 s" },
  }, { description: "A GCS JSON-API emulator for tests and demos (see docs/gcs.md)." });
  if (r.help) {
    console.log(r.help);
    return 0;
  }
  const port = numberFlag("port", r.values.port, { min: 0, max: 65535, integer: true });
  const emu = await startGcsEmulator({
    port,
    hostname: String(r.values.host),
    dir: r.values.dir as string | undefined,
    buckets: r.values.bucket ? String(r.values.bucket).split(",") : [],
    autoCreateBuckets: r.values.auto_create === true,
    listPageSize: numberFlag("list_page_size", r.values.list_page_size, { min: 1, integer: true }),
    objectWriteRateLimit: r.values.rate_limit === true,
  });
  console.log(`gcs-emulator listening on ${emu.url} (state: ${emu.dir})`);
  console.log(`  export STORAGE_EMULATOR_HOST=${emu.url}`);
  const { promise, resolve } = Promise.withResolvers<void>();
  for (const sig of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(sig, () => resolve());
  await promise;
  await emu.close();
  return 0;
}

if (import.meta.main) runCli("gcs-emulator", main);
