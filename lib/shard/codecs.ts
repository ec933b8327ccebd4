/**
 * Shard codecs, in one table ({@link CODEC_TABLE}): each codec's name, file suffix, compressor factory (and the
 * Workers a writer shares across shards) and decompressor. The {@link Codec} union, {@link CODECS} (the `--codec`
 * choices), {@link codecSuffix} and file-name parsing ({@link codecFromName}) all derive from it. Compression is
 * chunked so memory never depends on shard size:
 * - gzip: the payload is cut into fixed-size chunks, each compressed as an independent gzip member in a pool of
 *   Workers (gzip_pool.ts; so every core works); members are written in order. A multi-member file is plain
 *   gzip (RFC 1952): Python's `gzip.open`, `gunzip` and node:zlib read it as one stream. Headers carry mtime 0:
 *   deterministic.
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
import { GzipWorkers, OrderedGzip } from "./gzip_pool.ts";
import { openZstdEngine, type ZstdEngine } from "./zstd_stream.ts";
import { zlibStream } from "./zlib_stream.ts";
import { type Stage, stageBytes } from "./staging.ts";

/** What the codec table holds for one codec. */
export interface CodecSpec {
  /** File-name suffix after the format's extension (`shard_0001.pkl.gz`); "" for none. */
  readonly suffix: string;
  /** True when stored bytes are the payload itself, so a reader may fetch byte ranges (no decompression). */
  readonly randomAccess: boolean;
  /** A compressor writing `codec` bytes into `sink`. */
  compressor(sink: ByteSink, opts: CompressorOptions): Compressor;
  /**
   * What a writer creates once and shares across its shards (Worker pools: starting Workers costs tens of ms),
   * as options for {@link CodecSpec.compressor}; `close` ends them.
   */
  shared(opts: SharedCodecOptions): SharedCodec;
  /** A node:zlib decompressor (`chunkSize`: its output buffer), or null when the bytes pass through. */
  decompressor(chunkSize?: number): Transform | null;
  /**
   * True when the decompressor can throw a corrupt-frame error from a callback instead of emitting "error"
   * (Deno 2.9's zstd): the reading stream then traps it (zlib_stream.ts).
   */
  readonly throwsUncaught: boolean;
}

/** Settings a writer passes to {@link CodecSpec.shared}. */
export interface SharedCodecOptions {
  /** gzip Workers (default: cores). */
  gzipWorkers?: number;
  /** zstd level (default 1, zstd_stream.ts's `ZSTD_DEFAULT_LEVEL`). */
  zstdLevel?: number;
}

/** A codec's per-writer resources: options for each shard's compressor, and how to release them. */
export interface SharedCodec {
  /** Passed to every shard's {@link createCompressor}. */
  options: CompressorOptions;
  /** Terminate the shared Workers. */
  close(): void;
}

const NOTHING_SHARED: SharedCodec = { options: {}, close() {} };

/**
 * Shard codecs: the names of {@link CODEC_TABLE} (spelled out so the public type stands alone; the compiler
 * holds the two to the same names).
 */
export type Codec = "gzip" | "zstd" | "none";

/**
 * The codecs. Adding one is its name in {@link Codec} and one entry here (suffix, compressor, shared Workers,
 * decompressor): `--codec` choices, file names and readers follow from it.
 */
export const CODEC_TABLE: { readonly [C in Codec]: CodecSpec } = {
  gzip: {
    suffix: ".gz",
    randomAccess: false,
    compressor: gzipCompressor,
    shared: (o: SharedCodecOptions): SharedCodec => {
      const pool = new GzipWorkers(o.gzipWorkers ?? navigator.hardwareConcurrency ?? 1);
      return { options: { pool }, close: () => pool.close() };
    },
    decompressor: (chunkSize?: number): Transform => createGunzip(chunkSize ? { chunkSize } : {}),
    throwsUncaught: false,
  },
  zstd: {
    suffix: ".zst",
    randomAccess: false,
    compressor: zstdCompressor,
    // One engine per writer (libzstd's threads, or a node:zlib Worker): a shard is one zstd frame.
    shared: (o: SharedCodecOptions): SharedCodec => {
      const zstd = openZstdEngine({ level: o.zstdLevel });
      return { options: { zstd }, close: () => zstd.close() };
    },
    decompressor: (chunkSize?: number): Transform => createZstdDecompress(chunkSize ? { chunkSize } : {}),
    throwsUncaught: true,
  },
  none: {
    suffix: "",
    randomAccess: true,
    compressor: noneCompressor,
    shared: (): SharedCodec => NOTHING_SHARED,
    decompressor: (): null => null,
    throwsUncaught: false,
  },
};

/** Every codec, in table order (the `--codec` choices). */
export const CODECS: readonly Codec[] = Object.keys(CODEC_TABLE) as Codec[];

/** True when `name` is a codec of {@link CODEC_TABLE} (e.g. a metadata.json `codec` value). */
export function isCodec(name: unknown): name is Codec {
  return typeof name === "string" && Object.hasOwn(CODEC_TABLE, name);
}

/** The table entry of `codec`. */
export function codecSpec(codec: Codec): CodecSpec {
  return CODEC_TABLE[codec];
}

/** File suffix for a codec ("" for none). */
export function codecSuffix(codec: Codec): string {
  return CODEC_TABLE[codec].suffix;
}

/** Streaming compressor: `write` payload bytes in order, then `finish`. Output goes to the sink in order. */
export interface Compressor {
  /**
   * Take the next payload bytes (copied or handed on before it resolves: the caller may reuse `chunk`).
   * `owned`: the caller gives `chunk`'s buffer up, so a codec that passes bytes through unchanged (none) may hand
   * it to the sink as it is instead of copying it (it is then detached).
   */
  write(chunk: Uint8Array, owned?: boolean): Promise<void>;
  /** Flush the tail to the sink and release what this compressor owns. */
  finish(): Promise<void>;
  /** Stop without flushing (releases workers). */
  abort(): void;
}

/** Options for {@link createCompressor}. */
export interface CompressorOptions {
  /** gzip/zstd workers; 0 compresses on the calling thread. Default: number of cores. */
  workers?: number;
  /**
   * Input bytes per gzip member (default 256 KiB); bytes per chunk handed to the sink for none and zstd (default
   * 1 MiB).
   */
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
 * `handedOver`: `bytes` is an array the compressor's caller gave up (passed through by codec none), which the
 * sink may give on for reuse once written (reusable_buffers.ts).
 */
export type ByteSink = (bytes: Uint8Array, crc32c?: number, handedOver?: boolean) => Promise<void>;

/** A compressor for `codec` writing into `sink`. */
export function createCompressor(codec: Codec, sink: ByteSink, opts: CompressorOptions = {}): Compressor {
  return codecSpec(codec).compressor(sink, opts);
}

/** gzip: input bytes per member (part of the shard's bytes: pinned). */
const CHUNK_BYTES = 256 << 10;
/**
 * none and zstd: bytes per chunk handed to the file sink (not part of the bytes: zstd writes one frame). 1 MiB
 * rather than 256 KiB: a quarter of the messages, which cost both threads per chunk — measured in the `shard`
 * stage, none 3.0 → 2.5 and zstd 4.5 → 4.0 CPU-s/GB. The sink writes at most 1 MiB per syscall
 * (file_sink_worker.ts: larger writes cost the kernel far more here).
 */
const SINK_CHUNK_BYTES = 1 << 20;

function noneCompressor(sink: ByteSink, opts: CompressorOptions): Compressor {
  // Uncompressed bytes are only cut; a large owned buffer goes to the sink as it is (no copy).
  return new Chunker(
    opts.chunkBytes ?? SINK_CHUNK_BYTES,
    (b, handedOver) => sink(b, undefined, handedOver),
    () => {},
    false,
    undefined,
    opts.buffers ?? ((n) => new Uint8Array(n)),
    true,
  );
}

function zstdCompressor(sink: ByteSink, opts: CompressorOptions): Compressor {
  const chunkBytes = opts.chunkBytes ?? SINK_CHUNK_BYTES;
  if (opts.zstd) return opts.zstd.compressor(sink, chunkBytes, opts.buffers);
  const w = openZstdEngine({ level: opts.level, threads: opts.workers });
  const c = w.compressor(sink, chunkBytes, opts.buffers);
  return {
    write: (b) => c.write(b),
    finish: () => c.finish().finally(() => w.close()),
    abort: () => (c.abort(), w.close()),
  };
}

function gzipCompressor(sink: ByteSink, opts: CompressorOptions): Compressor {
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
    opts.chunkBytes ?? CHUNK_BYTES,
    (b) => ordered.submit(b),
    () => own && pool.close(),
    true,
    () => ordered.drain(),
    (size) => pool.buffer(size),
  );
}

/** Cuts a byte stream into fixed-size chunks and hands each to `emit` (awaited: backpressure). */
class Chunker implements Compressor {
  #st: Stage;
  #emitted = false;
  constructor(
    size: number,
    /** `handedOver`: `b` is a caller's owned buffer passed through (see `passOwned`), not a chunk of ours. */
    private emit: (b: Uint8Array, handedOver?: boolean) => Promise<void>,
    private release: () => unknown,
    private emitEmpty = false,
    private drain: () => Promise<void> = () => Promise.resolve(),
    /** When set, a flushed buffer is handed over (e.g. transferred to a Worker) and this supplies the next. */
    private fresh?: (size: number) => Uint8Array,
    /**
     * Hand an owned whole buffer of at least a chunk's size to `emit` as it is, after what is staged (the
     * bytes are the same; only where the chunks are cut moves, so not for gzip, whose members are pinned).
     * Saves the staging copy (measured ≈ 0.15 s/GB on the `shard` stage's main thread).
     */
    private passOwned = false,
  ) {
    this.#st = { buf: fresh ? fresh(size) : new Uint8Array(size), n: 0 };
  }
  async write(chunk: Uint8Array, owned?: boolean): Promise<void> {
    const whole = chunk.byteOffset === 0 && chunk.byteLength === chunk.buffer.byteLength;
    if (!owned || !this.passOwned || !whole || chunk.length < this.#st.buf.length) {
      return stageBytes(this.#st, chunk, () => this.#flush());
    }
    const st = this.#st;
    if (st.n > 0) {
      const staged = st.buf.slice(0, st.n); // the staging buffer stays here
      st.n = 0;
      await this.emit(staged);
    }
    this.#emitted = true;
    await this.emit(chunk, true);
  }
  async #flush(): Promise<void> {
    const st = this.#st;
    const b = st.buf.subarray(0, st.n);
    if (this.fresh) st.buf = this.fresh(st.buf.length);
    st.n = 0;
    this.#emitted = true;
    await this.emit(b);
  }
  async finish(): Promise<void> {
    try {
      if (this.#st.n > 0 || (!this.#emitted && this.emitEmpty)) await this.#flush();
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
 * Decompress a stream of `codec` bytes (multi-member gzip / multi-frame zstd included). A corrupt frame (a zstd
 * checksum mismatch, a bad gzip block) errors the stream; so does a reader that stops early, cleanly.
 */
export function decompressStream(
  codec: Codec,
  input: ReadableStream<Uint8Array>,
): ReadableStream<Uint8Array> {
  const spec = codecSpec(codec);
  const z = spec.decompressor();
  return z ? zlibStream(z, input, spec.throwsUncaught) : input;
}

/**
 * Codec from a shard file name by its suffix (`shard_0001.pkl.gz` → gzip); a name with no codec suffix is
 * uncompressed. For seed-written data: a metadata.json entry's `codec` field, when present, decides.
 */
export function codecFromName(name: string): Codec {
  let best: Codec | undefined;
  for (const c of CODECS) {
    const suffix = CODEC_TABLE[c].suffix;
    if (name.endsWith(suffix) && (!best || suffix.length > CODEC_TABLE[best].suffix.length)) best = c;
  }
  return best ?? "none";
}
