/**
 * Worker for zstd shards: one streaming zstd context per shard, so a shard's data is a single zstd frame, with its
 * content checksum (readable by every zstd reader, including python-zstandard's `stream_reader`, which stops after
 * the first frame by default) while compression runs off the main thread. Messages are handled strictly in order:
 * `{op: "begin", level}` starts a frame; `{op: "write", id, data}` → `{id, out, input}` (whatever output is
 * ready, maybe empty; `input` handed back for reuse); `{op: "end", id}` → `{id, out}` (the frame's tail).
 * No CRC-32C here: the frame is one serial stream, so this thread only compresses; the file sink's CRC Worker
 * computes the CRC-32C of the output.
 */
import { constants, createZstdCompress } from "node:zlib";

type Msg = { op: "begin"; level: number } | { op: "write"; id: number; data: Uint8Array } | {
  op: "end";
  id: number;
};

// deno-lint-ignore no-explicit-any
const ctx = self as any;
// deno-lint-ignore no-explicit-any
let z: any = null;
let parts: Uint8Array[] = [];
let queue: Promise<void> = Promise.resolve();

function take(): Uint8Array {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  parts = [];
  return out;
}

async function handle(m: Msg): Promise<void> {
  if (m.op === "begin") {
    // A 1 MiB output buffer: with node:zlib's default 16 KiB, Deno's stream makes a JS round trip per 16 KiB of
    // output and runs at about half the speed of zstd itself (measured: ≈530 vs ≈1200 MB/s at level 1).
    // The content checksum (4 bytes per frame) lets every zstd reader, ours (node:zlib verifies it) and Python's,
    // detect a corrupted frame on its own, without metadata.json.
    z = createZstdCompress({
      chunkSize: 1 << 20,
      params: { [constants.ZSTD_c_compressionLevel]: m.level, [constants.ZSTD_c_checksumFlag]: 1 },
    });
    parts = [];
    z.on("data", (d: Uint8Array) => parts.push(d));
    return;
  }
  try {
    if (m.op === "write") {
      await new Promise<void>((res, rej) => z.write(m.data, (e: unknown) => (e ? rej(e) : res())));
      const out = take();
      ctx.postMessage({ id: m.id, out, input: m.data }, [out.buffer, m.data.buffer]);
    } else {
      // Some Deno versions' node:zlib followed the frame with an empty 9-byte frame (28b52ffd 2000010000) on
      // end() (2.9.6 does not); either way every data byte is in the first frame, so single-frame readers read
      // the whole shard.
      await new Promise<void>((res, rej) => {
        z.once("end", () => res());
        z.once("error", rej);
        z.end();
      });
      z = null;
      const out = take();
      ctx.postMessage({ id: m.id, out }, [out.buffer]);
    }
  } catch (e) {
    ctx.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) });
  }
}

ctx.onmessage = (ev: MessageEvent<Msg>) => {
  queue = queue.then(() => handle(ev.data));
};
