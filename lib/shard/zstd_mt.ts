/**
 * Multithreaded zstd for shards: libzstd's own multithreading (ZSTD_c_nbWorkers) called through Deno FFI, so a
 * shard's frame is compressed by as many threads as there are cores instead of one. Still ONE standard zstd
 * frame per shard (many blocks, content checksum on): every zstd reader (python-zstandard's `stream_reader`,
 * `zstd -d`, node:zlib, ours) reads it unchanged.
 *
 * Bytes: libzstd's MT mode cuts the input into jobs of a size set by the level alone (2 MiB at level 1), so the
 * frame depends only on the input bytes, the level and the libzstd version — not on the number of threads nor
 * on how the input is cut into calls (data always goes in with ZSTD_e_continue, never ZSTD_e_flush; the frame
 * ends with an empty ZSTD_e_end, so the source size is never known up front and never changes the frame
 * header). It differs from the single-threaded frame of node:zlib (zstd_stream.ts's `ZstdWorker`, the fallback).
 *
 * Calls: `ZSTD_compressStream2` runs as a nonblocking FFI call (Deno's blocking pool), one at a time per
 * context, so the main thread keeps encoding while libzstd copies the last chunk in and its threads compress.
 * Memory, bounded and independent of the shard size: libzstd's job buffers (≈ (threads + 3) × 2 MiB in and
 * up to ≈ 2 × threads × 2 MiB out at level 1) plus two 1 MiB input chunks and one output chunk here.
 *
 * @example
 * ```ts
 * import { openLibzstdEngine } from "./zstd_mt.ts";
 * const e = openLibzstdEngine({ level: 1, threads: 2 });
 * if (typeof e !== "string") {
 *   const parts: Uint8Array[] = [];
 *   const c = e.compressor(async (b) => void parts.push(b.slice()), 1 << 18);
 *   await c.write(new Uint8Array(100));
 *   await c.finish(); // parts hold one zstd frame
 *   e.close();
 * }
 * ```
 */
import { ActshardError } from "../errors.ts";
import { libraryCandidates } from "../util/native_lib.ts";
import type { ByteSink, Compressor } from "./codecs.ts";
import { type Stage, stageBytes } from "./staging.ts";

/** A zstd engine: one frame per shard, one shard at a time (both engines, see zstd_stream.ts). */
export interface ZstdEngine {
  /** What writes the bytes, e.g. "libzstd 1.5.4, 2 threads" or "node:zlib (single thread)". */
  readonly name: string;
  /**
   * A compressor for one shard (one frame). Only one may be open at a time. `buffers` supplies output buffers
   * (e.g. recycled by the file sink, which takes each full one over).
   */
  compressor(sink: ByteSink, chunkBytes: number, buffers?: (size: number) => Uint8Array): Compressor;
  /** Release the engine (its threads, its context). */
  close(): void;
}

// zstd.h constants (stable API).
const ZSTD_c_compressionLevel = 100;
const ZSTD_c_checksumFlag = 201;
const ZSTD_c_nbWorkers = 400;
const ZSTD_e_continue = 0;
const ZSTD_e_end = 2;
const ZSTD_reset_session_only = 1;

const SYMBOLS = {
  ZSTD_versionNumber: { parameters: [], result: "u32" },
  ZSTD_createCCtx: { parameters: [], result: "pointer" },
  ZSTD_freeCCtx: { parameters: ["pointer"], result: "usize" },
  ZSTD_CCtx_setParameter: { parameters: ["pointer", "i32", "i32"], result: "usize" },
  ZSTD_CCtx_reset: { parameters: ["pointer", "i32"], result: "usize" },
  ZSTD_isError: { parameters: ["usize"], result: "u32" },
  ZSTD_getErrorName: { parameters: ["usize"], result: "pointer" },
  // (cctx, ZSTD_outBuffer*, ZSTD_inBuffer*, endOp): the blocking pool runs it, off the main thread.
  compressStream2: {
    name: "ZSTD_compressStream2",
    parameters: ["pointer", "pointer", "pointer", "i32"],
    result: "usize",
    nonblocking: true,
  },
  // The same, on the calling thread: only to start a frame (it creates libzstd's threads the first time, so they
  // are named after the main thread, not after a blocking-pool thread).
  compressStream2Now: {
    name: "ZSTD_compressStream2",
    parameters: ["pointer", "pointer", "pointer", "i32"],
    result: "usize",
  },
} as const satisfies Deno.ForeignLibraryInterface;

type Libzstd = Deno.DynamicLibrary<typeof SYMBOLS>;

/** Where libzstd is looked for: `ACTSHARD_ZSTD_LIB`, else the platform's usual names. */
export function libzstdCandidates(os?: typeof Deno.build.os): string[] {
  return libraryCandidates("ACTSHARD_ZSTD_LIB", {
    linux: ["libzstd.so.1", "libzstd.so"],
    darwin: ["libzstd.1.dylib", "/opt/homebrew/lib/libzstd.1.dylib", "/usr/local/lib/libzstd.1.dylib"],
    windows: ["zstd.dll", "libzstd.dll"],
  }, os);
}

/** Open libzstd, or say why not (no FFI permission, no library, too old). */
function openLibzstd(): Libzstd | string {
  const why: string[] = [];
  for (const path of libzstdCandidates()) {
    let lib: Libzstd;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable) {
        return "no FFI permission (--allow-ffi)";
      }
      why.push(`${path}: ${e instanceof Error ? e.message.split("\n")[0] : e}`);
      continue;
    }
    if (lib.symbols.ZSTD_versionNumber() < 10400) { // ZSTD_compressStream2 and nbWorkers are stable from 1.4.0
      lib.close();
      why.push(`${path}: libzstd older than 1.4.0`);
      continue;
    }
    return lib;
  }
  return why.join("; ") || "no libzstd candidate";
}

/** libzstd's name for an error code, e.g. "Allocation error : not enough memory". */
function errorName(lib: Libzstd, code: number | bigint): string {
  const p = lib.symbols.ZSTD_getErrorName(BigInt(code));
  return p ? Deno.UnsafePointerView.getCString(p) : `error ${code}`;
}

/** A libzstd error code as an error value: what failed (libzstd's words), in which engine, what to do. */
function zstdFailure(lib: Libzstd, engine: string, code: number | bigint, where: string): ActshardError {
  return new ActshardError(`zstd compression failed: ${errorName(lib, code)}`, {
    kind: "io",
    where: `${engine}, ${where}`,
    hint: "if memory is short, set ACTSHARD_ZSTD_ENGINE=node (single-threaded node:zlib zstd) and rerun: " +
      "committed shards are kept",
  });
}

/** The one line a libzstd error code becomes (what the CLI prints); for tests and diagnostics. */
export function libzstdErrorLine(code: number | bigint, where: string): string {
  const lib = openLibzstd();
  if (typeof lib === "string") return `libzstd error ${code} (${lib})`;
  try {
    return zstdFailure(lib, `libzstd ${versionText(lib.symbols.ZSTD_versionNumber())}`, code, where).line();
  } finally {
    lib.close();
  }
}

/** "1.5.4" from ZSTD_versionNumber's 10504. */
function versionText(v: number): string {
  return `${Math.floor(v / 10000)}.${Math.floor(v / 100) % 100}.${v % 100}`;
}

/** Options for {@link openLibzstdEngine}. */
export interface LibzstdEngineOptions {
  level: number;
  /** Compression threads (ZSTD_c_nbWorkers, ≥ 1). The bytes do not depend on it. Default: the cores. */
  threads?: number;
}

/**
 * A multithreaded libzstd engine, or why there is none (no FFI permission, no libzstd, one built without
 * multithreading): the caller then falls back to node:zlib.
 */
export function openLibzstdEngine(opts: LibzstdEngineOptions): ZstdEngine | string {
  const lib = openLibzstd();
  if (typeof lib === "string") return lib;
  const threads = Math.max(1, opts.threads ?? navigator.hardwareConcurrency ?? 1);
  const cctx = lib.symbols.ZSTD_createCCtx();
  if (!cctx) {
    lib.close();
    return "ZSTD_createCCtx failed";
  }
  for (const [param, value] of [[ZSTD_c_compressionLevel, opts.level], [ZSTD_c_checksumFlag, 1]]) {
    const r = lib.symbols.ZSTD_CCtx_setParameter(cctx, param, value);
    if (lib.symbols.ZSTD_isError(BigInt(r))) {
      const why = errorName(lib, r);
      lib.symbols.ZSTD_freeCCtx(cctx);
      lib.close();
      return `ZSTD_CCtx_setParameter: ${why}`;
    }
  }
  const r = lib.symbols.ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, threads);
  if (lib.symbols.ZSTD_isError(BigInt(r))) { // a libzstd built without ZSTD_MULTITHREAD
    const why = errorName(lib, r);
    lib.symbols.ZSTD_freeCCtx(cctx);
    lib.close();
    return `libzstd without multithreading (${why})`;
  }
  return new LibzstdEngine(lib, cctx, threads);
}

/** `ZSTD_inBuffer` / `ZSTD_outBuffer`: {pointer, size, pos}, in memory that never moves (off the V8 heap). */
class StreamBuffer {
  /** 128 bytes: V8 keeps typed arrays over 64 bytes off its heap, so the address is stable across GCs. */
  readonly words = new BigUint64Array(16);
  readonly ptr = Deno.UnsafePointer.of(this.words);
  set(b: Uint8Array, size = b.length): void {
    this.words[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
    this.words[1] = BigInt(size);
    this.words[2] = 0n;
  }
  get pos(): number {
    return Number(this.words[2]);
  }
}

class LibzstdEngine implements ZstdEngine {
  readonly name: string;
  /** The call in flight (or the last one), so close and the next frame wait for it. */
  #calls: Promise<unknown> = Promise.resolve();
  #inFlight = 0;
  #busy = false;
  #closed = false;
  #free: Uint8Array[] = [];

  constructor(private lib: Libzstd, private cctx: Deno.PointerValue, readonly threads: number) {
    this.name = `libzstd ${versionText(lib.symbols.ZSTD_versionNumber())}, ${threads} thread${
      threads > 1 ? "s" : ""
    }`;
  }

  #check(r: number | bigint, where: string): number {
    if (this.lib.symbols.ZSTD_isError(BigInt(r))) throw zstdFailure(this.lib, this.name, r, where);
    return Number(r);
  }

  #chunk(size: number): Uint8Array {
    const i = this.#free.findIndex((b) => b.length === size);
    return i >= 0 ? this.#free.splice(i, 1)[0] : new Uint8Array(size);
  }

  compressor(sink: ByteSink, chunkBytes: number, buffers?: (size: number) => Uint8Array): Compressor {
    if (this.#busy || this.#closed) {
      throw new ActshardError("zstd engine already has an open frame", { kind: "internal" });
    }
    this.#busy = true;
    const outBuffer = buffers ?? ((n: number) => new Uint8Array(n));
    // This frame's own ZSTD_inBuffer/ZSTD_outBuffer: a call of an aborted frame may still be running on them.
    const inBuf = new StreamBuffer(), outBuf = new StreamBuffer();
    let started = false;
    let aborted = false;
    // Input goes to libzstd in chunks of 4 × chunkBytes (1 MiB by default): a nonblocking call costs ≈ 50–80 µs
    // of dispatch here, which at 256 KiB per call would rival the main thread's time to fill the next chunk.
    const stageSize = 4 * chunkBytes;
    const st: Stage = { buf: this.#chunk(stageSize), n: 0 };
    let out = outBuffer(chunkBytes);
    outBuf.set(out);
    /** The previous chunk's feed: one call sequence at a time, in order. */
    let feeding: Promise<void> = this.#calls.then(() => {});

    const start = () => {
      // A new frame: drop any state an aborted one left, then one empty ZSTD_e_continue on this thread (starts
      // the frame with its source size unknown, and creates libzstd's threads on first use).
      this.#check(this.lib.symbols.ZSTD_CCtx_reset(this.cctx, ZSTD_reset_session_only), "ZSTD_CCtx_reset");
      inBuf.set(st.buf, 0);
      this.#check(
        this.lib.symbols.compressStream2Now(this.cctx, outBuf.ptr, inBuf.ptr, ZSTD_e_continue),
        "ZSTD_compressStream2",
      );
      started = true;
    };
    /** Hand over the output buffer when full (`all`: whatever it holds) and take a fresh one. */
    const deliver = async (all: boolean) => {
      if (aborted) return;
      const pos = outBuf.pos;
      if (pos === 0 || (!all && pos < out.length)) return;
      const full = out;
      out = outBuffer(chunkBytes);
      outBuf.set(out);
      await sink(pos === full.length ? full : full.subarray(0, pos));
    };
    /** Run one ZSTD_compressStream2 call off this thread; its result, checked. */
    const call = async (op: number): Promise<number> => {
      this.#inFlight++;
      const p = this.lib.symbols.compressStream2(this.cctx, outBuf.ptr, inBuf.ptr, op)
        .finally(() => this.#inFlight--);
      this.#calls = p.catch(() => {});
      return this.#check(await p, "ZSTD_compressStream2");
    };
    /** Feed `data` (ZSTD_e_continue) until libzstd has taken all of it; then recycle the chunk. */
    const feed = async (data: Uint8Array, len: number) => {
      if (aborted) return; // an aborted frame makes no further call (the next frame may own the context)
      if (!started) start();
      inBuf.set(data, len);
      while (inBuf.pos < len) {
        if (aborted) return;
        await call(ZSTD_e_continue);
        await deliver(false);
      }
      if (this.#free.length < 2) this.#free.push(data);
    };
    const flush = async () => {
      const data = st.buf, len = st.n;
      st.buf = this.#chunk(stageSize);
      st.n = 0;
      const previous = feeding;
      // At most one chunk waits behind the one being fed (two chunks of memory here).
      await previous;
      feeding = previous.then(() => feed(data, len));
      feeding.catch(() => {});
    };
    return {
      write: (chunk: Uint8Array) => stageBytes(st, chunk, flush),
      finish: async () => {
        try {
          if (st.n > 0) await flush();
          await feeding;
          if (!started) start();
          inBuf.set(st.buf, 0);
          while (await call(ZSTD_e_end) !== 0 && !aborted) await deliver(false);
          await deliver(true);
        } finally {
          this.#busy = false;
        }
      },
      abort: () => {
        // The call in flight finishes on its own; the next frame's start resets the context.
        aborted = true;
        this.#busy = false;
      },
    };
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Free only once no call is running on the blocking pool (freeing joins libzstd's threads).
    const free = () => {
      this.lib.symbols.ZSTD_freeCCtx(this.cctx);
      this.lib.close();
    };
    if (this.#inFlight === 0) free();
    else this.#calls.then(free);
  }
}
