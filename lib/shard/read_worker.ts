/**
 * Worker behind {@link openShardStream} (read_stream.ts): reads one local shard file and decompresses it off the
 * main thread (node:zlib streams read multi-member gzip and multi-frame zstd), handing over decoded bytes in
 * large chunks (≥ 4 MiB, so most records of a shard lie inside one chunk and are decoded without a join).
 * Messages: `{op: "open", path, codec}`; then each `{op: "pull"}` → `{chunk}` (transferred), `{done: true}` or
 * `{error}`.
 */
import { createReadStream } from "node:fs";
import { type Codec, codecSpec } from "./codecs.ts";

const CHUNK = 4 << 20;

// deno-lint-ignore no-explicit-any
const ctx = self as any;
let source: AsyncIterator<Uint8Array> | null = null;
let queue: Promise<void> = Promise.resolve();

async function* decoded(path: string, codec: Codec): AsyncGenerator<Uint8Array> {
  const file = createReadStream(path, { highWaterMark: CHUNK });
  const z = codecSpec(codec).decompressor(1 << 20);
  const stream = z ? file.pipe(z) : file;
  // A file read error does not reach a piped decompressor: forward it.
  if (stream !== file) file.on("error", (e) => stream.destroy(e));
  let parts: Uint8Array[] = [];
  let n = 0;
  const take = () => {
    const out =
      parts.length === 1 && parts[0].byteOffset === 0 && parts[0].byteLength === parts[0].buffer.byteLength
        ? parts[0]
        : new Uint8Array(n);
    if (out !== parts[0]) {
      let o = 0;
      for (const p of parts) {
        out.set(p, o);
        o += p.length;
      }
    }
    parts = [];
    n = 0;
    return out;
  };
  for await (const c of stream as AsyncIterable<Uint8Array>) {
    parts.push(c);
    n += c.length;
    if (n >= CHUNK) yield take();
  }
  if (n > 0) yield take();
}

async function pull(): Promise<void> {
  try {
    const r = await source!.next();
    if (r.done) ctx.postMessage({ done: true });
    else ctx.postMessage({ chunk: r.value }, [r.value.buffer]);
  } catch (e) {
    ctx.postMessage({ error: e instanceof Error ? e.message : String(e) });
  }
}

ctx.onmessage = (ev: MessageEvent<{ op: "open"; path: string; codec: Codec } | { op: "pull" }>) => {
  const m = ev.data;
  if (m.op === "open") source = decoded(m.path, m.codec);
  else queue = queue.then(pull);
};
