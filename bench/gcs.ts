/**
 * `deno task bench gcs`: upload throughput into the GCS emulator on loopback (the emulator in its own process,
 * as a server would be), side by side in one run with what bounds it:
 *
 * - CRC-32C of the same bytes (our table-driven Crc32c: the client hashes every file once; the emulator hashes
 *   every object with CRC-32C and MD5),
 * - a loopback HTTP sink (Deno.serve discarding the body) fed by our transport: the HTTP ceiling of this machine,
 * - `GcsStore.uploadFile` into the emulator with 1, 2 and 4 uploads in flight (`--concurrency`),
 * - the official `@google-cloud/storage` client uploading the same files, for comparison.
 *
 * Prints MB/s and ratios; no thresholds (speed is compared, not asserted).
 */
import { join } from "node:path";
import { Storage } from "@google-cloud/storage";
import { Crc32c } from "../lib/util/crc32c.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { GcsTransport } from "../lib/storage/gcs_transport.ts";

const FILES = 6;
const FILE_MB = 16;
const MB = 1e6;

async function startEmulatorProcess(): Promise<{ url: string; stop: () => Promise<void> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../scripts/gcs_emulator.ts", import.meta.url).pathname, "--port", "0"],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!/listening on (http:\/\/\S+)/.test(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error("emulator did not start");
    text += value;
  }
  const url = /listening on (http:\/\/\S+)/.exec(text)![1];
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

async function timed<T>(fn: () => Promise<T>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** CPU seconds (user + system) this process used so far (Linux /proc; 0 elsewhere). */
function cpuSeconds(): number {
  try {
    const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<unknown>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: n }, async () => {
    while (queue.length) await fn(queue.shift()!);
  }));
}

/** Run the section. */
export async function run(): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "actshard-bench-gcs-" });
  const emu = await startEmulatorProcess();
  try {
    const files: string[] = [];
    let x = 12345;
    for (let i = 0; i < FILES; i++) {
      const buf = new Uint8Array(FILE_MB * MB);
      const w = new Uint32Array(buf.buffer);
      for (let j = 0; j < w.length; j++) w[j] = x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      const p = join(dir, `f${i}.bin`);
      await Deno.writeFile(p, buf);
      files.push(p);
    }
    const total = FILES * FILE_MB * MB;
    const rate = (s: number) => total / MB / s;
    await fetch(`${emu.url}/storage/v1/b?project=bench`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "bench" }),
    }).then((r) => r.body?.cancel());

    const data = await Deno.readFile(files[0]);
    const crcS = await timed(() => {
      for (let i = 0; i < FILES; i++) new Crc32c().update(data);
      return Promise.resolve();
    });

    const sink = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
      if (req.body) { for await (const _ of req.body) { /* discard */ } }
      return new Response("{}");
    });
    const t = new GcsTransport({ endpoint: `http://127.0.0.1:${sink.addr.port}`, token: null });
    const sinkS = await timed(async () => {
      for (let i = 0; i < FILES; i++) {
        for (let off = 0; off < data.length; off += 16 * 2 ** 20) {
          (await t.request("PUT", t.uploadUrl("/x"), { body: data.subarray(off, off + 16 * 2 ** 20) }))
            .release();
        }
      }
    });
    await sink.shutdown();

    const ours: Record<number, number> = {};
    const oursCpu: Record<number, number> = {};
    for (const n of [1, 2, 4]) {
      const store = await GcsStore.open("bench", `ours-${n}`, { apiEndpoint: emu.url });
      const c0 = cpuSeconds();
      ours[n] = await timed(() => pool(files, n, (f) => store.uploadFile(f, f.split("/").pop()!)));
      oursCpu[n] = cpuSeconds() - c0;
    }

    const storage = new Storage({ apiEndpoint: emu.url, projectId: "bench" });
    const official = await timed(() =>
      pool(files, 2, (f) =>
        storage.bucket("bench").upload(f, {
          destination: `official/${f.split("/").pop()}`,
          resumable: true,
          chunkSize: 16 * 2 ** 20,
          validation: "crc32c",
        }))
    );

    const line = (what: string, s: number) =>
      console.log(`  ${what.padEnd(58)} ${rate(s).toFixed(0).padStart(6)} MB/s`);
    console.log(`gcs: ${FILES} files × ${FILE_MB} MB, emulator in its own process on loopback`);
    line("CRC-32C of the bytes (Crc32c, one core)", crcS);
    line("loopback HTTP sink via our transport (16 MiB PUTs, streamed)", sinkS);
    for (const n of [1, 2, 4]) {
      line(`GcsStore.uploadFile into the emulator, ${n} in flight`, ours[n]);
      console.log(
        `    client CPU ${(oursCpu[n] / ours[n] * 100).toFixed(0)}% of one core over the wall time`,
      );
    }
    line("@google-cloud/storage upload into the emulator, 2 in flight", official);
    console.log(
      `  ratios: upload(2) / sink = ${(sinkS / ours[2]).toFixed(2)}, upload(2) / crc = ${
        (crcS / ours[2]).toFixed(2)
      }, ours(2) / official(2) = ${(official / ours[2]).toFixed(2)}, upload(4) / upload(1) = ${
        (ours[1] / ours[4]).toFixed(2)
      }`,
    );
  } finally {
    await emu.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await run();
