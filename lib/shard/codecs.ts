/**
 * Shard codecs: gzip, zstd, none. Compression is chunked so memory never depends on shard size:
 * - gzip: the payload is cut into fixed-size chunks, each compressed as an independent gzip member in a pool of
 *   Workers (so every core works); members are written in order. A multi-member file is plain gzip (RFC 1952):
 *   Python's `gzip.open`, `gunzip` and node:zlib read it as one stream. Headers carry mtime 0: deterministic.
 * - zstd: one zstd frame per shard, compressed by libzstd's threads (zstd_mt.ts) or, where libzstd cannot be
 *   loaded, streamed through node:zlib in a Worker (zstd_stream.ts picks), so every zstd reader reads it
 *   (python-zstandard's stream_reader stops after the first frame by default).
 * Decompression streams through node:zlib (which reads multi-member gzip and multi-frame zstd).
 *
 * @example
 * ```ts
 * import { createCompressor } from "./codecs.ts";
 * const parts: Uint8Array[] = [];
 * const c = createCompressor("gzip", async (b) => { parts.push(b); }, { workers: 2 });
 * await c.write(new Uint8Array(10));
 * await c.finish(); // parts now hold a complete gzip file
 * ```
 */
import type { Transform } from "node:stream";
import { createGunzip, createZstdDecompress } from "node:zlib";
import { ActshardError } from "../errors.ts";
import { type CompressEngine, compressMember } from "./gzip_worker.ts";
import { crc32c } from "../util/crc32c.ts";
import { openZstdEngine, type ZstdEngine } from "./zstd_stream.ts";

/** Shard codecs. */
export type Codec = "gzip" | "zstd" | "none";
export const CODECS: readonly Codec[] = ["gzip", "zstd", "none"];

/** File suffix for a codec ("" for none). */
export function codecSuffix(codec: Codec): string {
  return codec === "gzip" ? ".gz" : codec === "zstd" ? ".zst" : "";
}

/** Streaming compressor: `write` payload bytes in order, then `finish`. Output goes to the sink in order. */
export interface Compressor {
  write(chunk: Uint8Array): Promise<void>;
  finish(): Promise<void>;
  /** Stop without flushing (releases workers). */
  abort(): void;
}

/** Options for {@link createCompressor}. */
export interface CompressorOptions {
  /** gzip/zstd workers; 0 compresses on the calling thread. Default: number of cores. */
  workers?: number;
  /** Input bytes per gzip member / per write into the zstd stream. Default 256 KiB. */
  chunkBytes?: number;
  /** gzip level (default 6) or zstd level (default 1, zstd_stream.ts's `ZSTD_DEFAULT_LEVEL`). */
  level?: number;
  /** gzip engine: native zlib with Z_RLE (default, fastest measured at the same ratio), zlib, or fflate. */
  gzipEngine?: "zlib-rle" | "zlib" | "fflate";
  /** A shared zstd engine (zstd codec; not closed here). */
  zstd?: ZstdEngine;
  /** A shared gzip pool (then workers/level/engine come from it, and it is not closed here). */
  pool?: GzipWorkers;
  /**
   * `none` codec: supplies each next chunk buffer (e.g. recycled by the sink), since every full chunk is handed
   * to the sink. Default: a new buffer per chunk.
   */
  buffers?: (size: number) => Uint8Array;
}

/**
 * Sink receiving compressed bytes in file order, with their CRC-32C when already known. It owns `bytes` (it may
 * transfer the buffer to a Worker): the compressor never touches a buffer again after handing it over.
 */
export type ByteSink = (bytes: Uint8Array, crc32c?: number) => Promise<void>;

/** A compressed chunk and its CRC-32C (computed in the Worker, so the writer only combines). */
export interface Compressed {
  out: Uint8Array;
  crc: number;
}

/** A compressor for `codec` writing into `sink`. */
export function createCompressor(codec: Codec, sink: ByteSink, opts: CompressorOptions = {}): Compressor {
  const chunkBytes = opts.chunkBytes ?? 256 << 10;
  if (codec === "none") {
    // Uncompressed bytes are only cut, in 256 KiB writes: measured cheaper in the kernel than 1 MiB or 4 MiB
    // writes here (≈ 0.3 vs ≈ 1.0 s/GB of write-syscall CPU at 1 MiB).
    return new Chunker(
      chunkBytes,
      sink,
      () => {},
      false,
      undefined,
      opts.buffers ?? ((n) => new Uint8Array(n)),
    );
  }
  if (codec === "zstd") {
    if (opts.zstd) return opts.zstd.compressor(sink, chunkBytes, opts.buffers);
    const w = openZstdEngine({ level: opts.level, threads: opts.workers });
    const c = w.compressor(sink, chunkBytes, opts.buffers);
    return {
      write: (b) => c.write(b),
      finish: () => c.finish().finally(() => w.close()),
      abort: () => (c.abort(), w.close()),
    };
  }
  const own = !opts.pool;
  const pool = opts.pool ?? new GzipWorkers(
    opts.workers ?? navigator.hardwareConcurrency ?? 1,
    opts.level ?? 6,
    opts.gzipEngine ?? "zlib-rle",
  );
  if (pool.engine === "zstd") {
    throw new ActshardError("a zstd member pool cannot write a gzip shard", { kind: "internal" });
  }
  const ordered = new OrderedGzip(pool, sink);
  return new Chunker(
    chunkBytes,
    (b) => ordered.submit(b),
    () => own && pool.close(),
    true,
    () => ordered.drain(),
    (size) => pool.buffer(size),
  );
}

/** Cuts a byte stream into fixed-size chunks and hands each to `emit` (awaited: backpressure). */
class Chunker implements Compressor {
  #buf: Uint8Array;
  #n = 0;
  #emitted = false;
  constructor(
    size: number,
    private emit: (b: Uint8Array) => Promise<void>,
    private release: () => unknown,
    private emitEmpty = false,
    private drain: () => Promise<void> = () => Promise.resolve(),
    /** When set, a flushed buffer is handed over (e.g. transferred to a Worker) and this supplies the next. */
    private fresh?: (size: number) => Uint8Array,
  ) {
    this.#buf = fresh ? fresh(size) : new Uint8Array(size);
  }
  async write(chunk: Uint8Array): Promise<void> {
    let off = 0;
    while (off < chunk.length) {
      const take = Math.min(chunk.length - off, this.#buf.length - this.#n);
      this.#buf.set(chunk.subarray(off, off + take), this.#n);
      this.#n += take;
      off += take;
      if (this.#n === this.#buf.length) await this.#flush();
    }
  }
  async #flush(): Promise<void> {
    const b = this.#buf.subarray(0, this.#n);
    if (this.fresh) this.#buf = this.fresh(this.#buf.length);
    this.#n = 0;
    this.#emitted = true;
    await this.emit(b);
  }
  async finish(): Promise<void> {
    try {
      if (this.#n > 0 || (!this.#emitted && this.emitEmpty)) await this.#flush();
      await this.drain();
    } finally {
      this.release();
    }
  }
  abort(): void {
    this.release();
  }
}

/**
 * A pool of gzip Workers compressing independent members. Share one across shards (creating Workers costs
 * tens of ms); `close` terminates them.
 */
export class GzipWorkers {
  #workers: Worker[] = [];
  #idle: Worker[] = [];
  #waiting: (() => void)[] = [];
  #nextId = 0;
  #free: Uint8Array[] = [];
  #resolvers = new Map<number, { ok: (b: Compressed) => void; err: (e: unknown) => void }>();

  constructor(
    readonly size: number,
    readonly level = 6,
    readonly engine: CompressEngine = "zlib-rle",
  ) {
    for (let i = 0; i < size; i++) {
      const w = new Worker(new URL("./gzip_worker.ts", import.meta.url), { type: "module" });
      w.onmessage = (
        ev: MessageEvent<{ id: number; out?: Uint8Array; crc?: number; input?: Uint8Array; error?: string }>,
      ) => {
        const r = this.#resolvers.get(ev.data.id)!;
        if (ev.data.input && this.#free.length < this.size + 2) {
          this.#free.push(new Uint8Array(ev.data.input.buffer));
        }
        this.#resolvers.delete(ev.data.id);
        this.#idle.push(w);
        this.#waiting.shift()?.();
        if (ev.data.out) r.ok({ out: ev.data.out, crc: ev.data.crc! });
        else r.err(new ActshardError(`gzip worker failed: ${ev.data.error}`, { kind: "internal" }));
      };
      this.#workers.push(w);
      this.#idle.push(w);
    }
  }

  /** A chunk buffer of `size` bytes: a recycled one when available (inputs come back from the Workers). */
  buffer(size: number): Uint8Array {
    const i = this.#free.findIndex((b) => b.length === size);
    return i >= 0 ? this.#free.splice(i, 1)[0] : new Uint8Array(size);
  }

  /** Compress one member/frame (on this thread when the pool has no workers). Takes ownership of `chunk`. */
  async compress(chunk: Uint8Array): Promise<Compressed> {
    if (this.size === 0) {
      const out = compressMember(chunk, this.level, this.engine);
      return { out, crc: crc32c(out) };
    }
    while (this.#idle.length === 0) await new Promise<void>((r) => this.#waiting.push(r));
    const w = this.#idle.pop()!;
    const id = this.#nextId++;
    const p = new Promise<Compressed>((ok, err) => this.#resolvers.set(id, { ok, err }));
    w.postMessage({ id, data: chunk, level: this.level, engine: this.engine }, [chunk.buffer]);
    return p;
  }

  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
    this.#idle = [];
  }
}

/** Ordered writer over a {@link GzipWorkers}: at most `size + 1` members in flight (bounded memory). */
class OrderedGzip {
  #pending: Promise<void>[] = [];
  #chain: Promise<void> = Promise.resolve();
  #failed: unknown = null;

  constructor(private pool: GzipWorkers, private sink: ByteSink) {}

  async submit(chunk: Uint8Array): Promise<void> {
    if (this.#failed) throw this.#failed;
    const p = this.pool.compress(chunk);
    p.catch(() => {});
    // Outputs are written strictly in submission order.
    this.#chain = this.#chain.then(async () => {
      const r = await p;
      // The sink owns the output from here (a Worker sink takes its buffer by transfer, which also frees it
      // from this thread at once rather than at the next GC).
      await this.sink(r.out, r.crc);
    }).catch((e) => {
      this.#failed ??= e;
    });
    this.#pending.push(this.#chain);
    if (this.#pending.length > Math.max(1, this.pool.size)) await this.#pending.shift();
  }

  async drain(): Promise<void> {
    await this.#chain;
    this.#pending = [];
    if (this.#failed) throw this.#failed;
  }
}

/**
 * Decompress a stream of `codec` bytes (multi-member gzip / multi-frame zstd included). A corrupt frame (a zstd
 * checksum mismatch, a bad gzip block) errors the stream; so does a reader that stops early, cleanly.
 */
export function decompressStream(
  codec: Codec,
  input: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  if (codec === "none") return input;
  return zlibStream(codec === "gzip" ? createGunzip() : createZstdDecompress(), input, codec === "zstd");
}

/**
 * Deno 2.9's zstd decompressor throws a failed frame check ("Zstd decompress error: Restored data doesn't match
 * checksum") from a nextTick callback instead of emitting "error", which would end the process with a stack
 * trace. While zstd streams are open, such uncaught errors are routed to them (each fails as corrupt data).
 */
const zstdOpen = new Set<(e: unknown) => void>();
function onUncaughtZstd(ev: ErrorEvent): void {
  const e = ev.error;
  if (!(e instanceof Error) || !/^Zstd decompress/.test(e.message) || zstdOpen.size === 0) return;
  ev.preventDefault();
  for (const fail of [...zstdOpen]) fail(e);
}
function trackZstd(fail: (e: unknown) => void): () => void {
  if (zstdOpen.size === 0) globalThis.addEventListener("error", onUncaughtZstd);
  zstdOpen.add(fail);
  return () => {
    if (zstdOpen.delete(fail) && zstdOpen.size === 0) {
      globalThis.removeEventListener("error", onUncaughtZstd);
    }
  };
}

/**
 * `input` through a node:zlib transform, pulled: input is read only as output is wanted (bounded memory).
 * Not `Duplex.toWeb`: its adapter keeps enqueueing output after the stream was cancelled or errored (a decoder
 * that stopped at a corrupt record), and the TypeError it then throws is uncaught — it took the whole process
 * down with a stack trace.
 */
function zlibStream(
  z: Transform,
  input: ReadableStream<Uint8Array>,
  zstd: boolean,
): ReadableStream<Uint8Array> {
  const reader = input.getReader();
  const ready: Uint8Array[] = [];
  let failed: unknown = null;
  let ended = false;
  let inputDone = false;
  const waiting = new Set<() => void>();
  const poke = () => {
    for (const w of [...waiting]) w();
    waiting.clear();
  };
  /** Until `start` calls back, or output, an error or the end arrives (zlib drops write callbacks on error). */
  const until = (start: (done: () => void) => void) =>
    new Promise<void>((ok) => {
      waiting.add(ok);
      start(ok);
    });
  z.on("data", (b: Uint8Array) => {
    ready.push(new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
    poke();
  });
  const fail = (e: unknown) => {
    failed ??= e;
    untrack();
    poke();
  };
  const untrack = zstd ? trackZstd(fail) : () => {};
  z.on("error", fail);
  z.on("end", () => {
    ended = true;
    untrack();
    poke();
  });
  return new ReadableStream<Uint8Array>({
    async pull(ctl) {
      for (;;) {
        if (ready.length) return ctl.enqueue(ready.shift()!);
        if (failed) throw failed;
        if (ended) return ctl.close();
        if (inputDone) {
          await until(() => {});
          continue;
        }
        const r = await reader.read();
        if (r.done) {
          inputDone = true;
          z.end();
          continue;
        }
        await until((done) => z.write(r.value, () => done()));
      }
    },
    cancel(reason) {
      untrack();
      z.destroy();
      return reader.cancel(reason).catch(() => {});
    },
  }, { highWaterMark: 0 });
}

/** Codec from a shard file name (`shard_0001.pkl.gz` → gzip). */
export function codecFromName(name: string): Codec {
  if (name.endsWith(".gz")) return "gzip";
  if (name.endsWith(".zst")) return "zstd";
  return "none";
}
