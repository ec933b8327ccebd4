/**
 * Worker behind {@link openShardStream} (read_stream.ts): reads one local shard file and decompresses it off the
 * main thread (node:zlib streams read multi-member gzip and multi-frame zstd), handing over decoded bytes in
 * large chunks (≥ 4 MiB, so most records of a shard lie inside one chunk and are decoded without a join).
 * Messages, each naming the stream it is for (a Worker serves one shard after another, read_stream.ts's
 * `ShardReaders`): `{op: "open", stream, path, codec}` (ends the stream before it); then each
 * `{op: "pull", stream}` → `{stream, chunk}` (transferred), `{stream, done: true}` or `{stream, error}`;
 * `{op: "close", stream}` releases the file.
 *
 * An uncompressed shard is read with Deno's own file reads, each chunk read straight into the buffer handed
 * over; an uncompressed pickle (`split`) is cut so that each large array's data is read straight into a buffer
 * of its own, handed over as `{stream, chunk, whole: true}` (read_split.ts says why); the codecs (and node:fs, node:zlib) are imported only for a compressed one. Loading them took this
 * Worker ≈ 40 ms to its first chunk against ≈ 15 without, and the `shard` stage waits for that first chunk.
 */
import type { Codec } from "./codecs.ts";
import { BIG_PAYLOAD, splitPickle } from "./read_split.ts";

const CHUNK = 4 << 20;
/**
 * Full chunk buffers handed back by the reader once consumed (byte_source.ts's `chunkRecyclers`), read into
 * again: no new 4 MiB buffer (zeroed, then new external memory in the reader's isolate, which sets off its GCs)
 * per chunk. Bounded: the reader holds ≈ AHEAD + 2 chunks at a time.
 */
const pool: Uint8Array[] = [];
const POOL = 6;
/**
 * Buffers for large arrays' data (read_split.ts), by size: the reader sends one of the size back for each it
 * takes (the arrays the writer has written, reusable_buffers.ts), so that no new one is zeroed and faulted in.
 */
const payloads = new Map<number, Uint8Array[]>();
let payloadBytes = 0;
const PAYLOAD_BYTES = 48 << 20;
/** Chunks that are one array's data, whole. */
const whole = new WeakSet<Uint8Array>();

function payloadBuffer(n: number): Uint8Array {
  const b = payloads.get(n)?.pop();
  if (!b) return new Uint8Array(n);
  payloadBytes -= n;
  return b;
}

/** An uncompressed pickle, large arrays' data cut out as buffers of their own. */
async function* splitFile(path: string): AsyncGenerator<Uint8Array> {
  using f = await Deno.open(path, { read: true });
  for await (const c of splitPickle(f, payloadBuffer, (await f.stat()).size)) {
    if (c.whole) whole.add(c.chunk);
    yield c.chunk;
  }
}

// deno-lint-ignore no-explicit-any
const ctx = self as any;
/** The stream being served; pulls run one at a time, in order. */
let current: { stream: number; source: AsyncGenerator<Uint8Array> } | null = null;
let queue: Promise<void> = Promise.resolve();

/** An uncompressed file in {@link CHUNK}-byte reads (the last one shorter). */
async function* plain(path: string): AsyncGenerator<Uint8Array> {
  using f = await Deno.open(path, { read: true });
  for (;;) {
    const buf = pool.pop() ?? new Uint8Array(CHUNK);
    let n = 0;
    while (n < CHUNK) {
      const k = await f.read(buf.subarray(n));
      if (k === null) break;
      n += k;
    }
    if (n === CHUNK) yield buf;
    else {
      if (n > 0) yield buf.slice(0, n);
      if (pool.length < POOL) pool.push(buf);
      return;
    }
  }
}

async function* decompressed(path: string, codec: Codec): AsyncGenerator<Uint8Array> {
  const [{ createReadStream }, { codecSpec }] = await Promise.all([import("node:fs"), import("./codecs.ts")]);
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

async function pull(stream: number): Promise<void> {
  const c = current;
  if (!c || c.stream !== stream) return ctx.postMessage({ stream, error: "stream closed" });
  try {
    const r = await c.source.next();
    if (r.done) ctx.postMessage({ stream, done: true });
    else ctx.postMessage({ stream, chunk: r.value, whole: whole.has(r.value) }, [r.value.buffer]);
  } catch (e) {
    ctx.postMessage({ stream, error: e instanceof Error ? e.message : String(e) });
  }
}

/** End the current stream (its generator's `finally` closes the file, once a read in progress returns). */
function release(): void {
  current?.source.return(undefined).catch(() => {});
  current = null;
}

type Msg =
  | { op: "open"; stream: number; path: string; codec: Codec; split?: boolean }
  | { op: "pull"; stream: number }
  | { op: "close"; stream: number }
  | { op: "recycle"; buf: Uint8Array };

ctx.onmessage = (ev: MessageEvent<Msg>) => {
  const m = ev.data;
  if (m.op === "open") {
    release();
    current = {
      stream: m.stream,
      source: m.codec !== "none"
        ? decompressed(m.path, m.codec)
        : m.split
        ? splitFile(m.path)
        : plain(m.path),
    };
  } else if (m.op === "pull") queue = queue.then(() => pull(m.stream));
  else if (m.op === "recycle") {
    const n = m.buf.length;
    if (n === CHUNK && pool.length < POOL) pool.push(m.buf);
    else if (n >= BIG_PAYLOAD && payloadBytes + n <= PAYLOAD_BYTES) {
      payloads.set(n, [...(payloads.get(n) ?? []), m.buf]);
      payloadBytes += n;
    }
  } else if (current?.stream === m.stream) release();
};
