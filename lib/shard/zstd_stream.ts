/**
 * zstd compression for shards: a single zstd frame per shard, by one of two engines ({@link openZstdEngine}):
 * - **libzstd, multithreaded** (zstd_mt.ts, Deno FFI; the default wherever libzstd with multithreading loads):
 *   the frame is compressed by one thread per core;
 * - **node:zlib, single thread** ({@link ZstdWorker}: one Worker, zstd_worker.ts; the fallback where libzstd
 *   cannot be loaded — no FFI permission, macOS without libzstd — or when `ACTSHARD_ZSTD_ENGINE=node`).
 *
 * Both write one standard frame with its content checksum, readable by every zstd reader, but not the same
 * bytes: the MT frame depends on the input, the level and the libzstd version (not on the thread count); the
 * node:zlib frame is the one every version of this project wrote before (shard_bytes_pinned.test.ts pins both).
 * `ACTSHARD_ZSTD_ENGINE`: `auto` (default: libzstd if it loads, else node:zlib, silently), `libzstd` (required:
 * a one-line error if it cannot be loaded), `node`. `ACTSHARD_ZSTD_LIB`: the library's path.
 *
 * @example
 * ```ts
 * import { openZstdEngine } from "./zstd_stream.ts";
 * const e = openZstdEngine();
 * const parts: Uint8Array[] = [];
 * const c = e.compressor(async (b) => void parts.push(b.slice()), 1 << 20);
 * await c.write(new Uint8Array(100));
 * await c.finish(); // parts hold one zstd frame
 * console.log(e.name); // e.g. "libzstd 1.5.4, 2 threads"
 * e.close();
 * ```
 */
import { ActshardError } from "../errors.ts";
import type { ByteSink, Compressor } from "./codecs.ts";
import { type Stage, stageBytes } from "./staging.ts";
import { openLibzstdEngine, type ZstdEngine } from "./zstd_mt.ts";
import { envGet } from "../util/native_lib.ts";

export type { ZstdEngine } from "./zstd_mt.ts";

/** Which zstd engine: see the module doc. */
export type ZstdEngineChoice = "auto" | "libzstd" | "node";

/** Options for {@link openZstdEngine}. */
export interface ZstdEngineOptions {
  /** zstd level (default {@link ZSTD_DEFAULT_LEVEL}). */
  level?: number;
  /** libzstd threads (default: the cores; the bytes do not depend on it). */
  threads?: number;
  /** Default: `ACTSHARD_ZSTD_ENGINE`, else `auto`. */
  engine?: ZstdEngineChoice;
}

/** The zstd engine for a writer: multithreaded libzstd when it loads, else node:zlib (see the module doc). */
export function openZstdEngine(opts: ZstdEngineOptions = {}): ZstdEngine {
  const level = opts.level ?? ZSTD_DEFAULT_LEVEL;
  let choice = opts.engine;
  if (!choice) {
    const env = envGet("ACTSHARD_ZSTD_ENGINE"); // no env permission: auto
    if (env && env !== "auto" && env !== "libzstd" && env !== "node") {
      throw new ActshardError(`ACTSHARD_ZSTD_ENGINE=${env} is not a zstd engine`, {
        kind: "usage",
        where: "ACTSHARD_ZSTD_ENGINE",
        hint: "use auto (default), libzstd or node",
      });
    }
    choice = (env || "auto") as ZstdEngineChoice;
  }
  if (choice === "node") return new ZstdWorker(level);
  const mt = openLibzstdEngine({ level, threads: opts.threads });
  if (typeof mt !== "string") return mt;
  if (choice === "libzstd") {
    throw new ActshardError(`multithreaded libzstd cannot be used: ${mt}`, {
      kind: "usage",
      where: "ACTSHARD_ZSTD_ENGINE=libzstd",
      hint:
        "install libzstd (apt install libzstd1, brew install zstd) or set ACTSHARD_ZSTD_LIB to its path, " +
        "or unset ACTSHARD_ZSTD_ENGINE to fall back to node:zlib",
    });
  }
  return new ZstdWorker(level);
}

/**
 * Default zstd level: 1. On float activations zstd's gain is entropy coding of exponent bytes and zero runs, which
 * every level does alike; measured ratios: seed-written real activations 0.9243 (level 1) / 0.9244 (3) / 0.9243
 * (9); synthetic float32 0.9331 / 0.9332; with half the rows zero (padding) 0.4702 / 0.4684, where level 1 runs
 * ≈2.5× faster than level 3.
 */
export const ZSTD_DEFAULT_LEVEL = 1;

/** Chunks queued at the Worker before `write` waits. */
const IN_FLIGHT = 4;

interface Reply {
  id: number;
  out?: Uint8Array;
  crc?: number;
  input?: Uint8Array;
  error?: string;
}

/** The node:zlib engine: a Worker holding one streaming zstd context at a time (single-threaded frames). */
export class ZstdWorker implements ZstdEngine {
  readonly name = "node:zlib (single thread)";
  #w: Worker;
  #next = 0;
  #waiting = new Map<number, { ok: (r: Reply) => void; err: (e: unknown) => void }>();
  #free: Uint8Array[] = [];
  #busy = false;

  constructor(readonly level = ZSTD_DEFAULT_LEVEL) {
    this.#w = new Worker(new URL("./zstd_worker.ts", import.meta.url), { type: "module" });
    this.#w.onmessage = (ev: MessageEvent<Reply>) => {
      const r = this.#waiting.get(ev.data.id)!;
      this.#waiting.delete(ev.data.id);
      if (ev.data.input && this.#free.length < IN_FLIGHT + 2) {
        this.#free.push(new Uint8Array(ev.data.input.buffer));
      }
      if (ev.data.error) {
        r.err(new ActshardError(`zstd worker failed: ${ev.data.error}`, { kind: "internal" }));
      } else r.ok(ev.data);
    };
  }

  #send(op: "write" | "end", data?: Uint8Array): Promise<Reply> {
    const id = this.#next++;
    const p = new Promise<Reply>((ok, err) => this.#waiting.set(id, { ok, err }));
    if (data) this.#w.postMessage({ op, id, data }, [data.buffer]);
    else this.#w.postMessage({ op, id });
    return p;
  }

  #buffer(size: number): Uint8Array {
    const i = this.#free.findIndex((b) => b.length === size);
    return i >= 0 ? this.#free.splice(i, 1)[0] : new Uint8Array(size);
  }

  /** A compressor for one shard (one frame). Only one may be open at a time. */
  compressor(sink: ByteSink, chunkBytes: number, _buffers?: (size: number) => Uint8Array): Compressor {
    if (this.#busy) throw new ActshardError("zstd worker already has an open frame", { kind: "internal" });
    this.#busy = true;
    this.#w.postMessage({ op: "begin", level: this.level });
    const st: Stage = { buf: this.#buffer(chunkBytes), n: 0 };
    let chain: Promise<void> = Promise.resolve();
    const inFlight: Promise<void>[] = [];
    const deliver = (p: Promise<Reply>) => {
      chain = chain.then(async () => {
        const r = await p;
        if (r.out && r.out.length) await sink(r.out, r.crc);
      });
      chain.catch(() => {});
    };
    const flush = async () => {
      deliver(this.#send("write", st.buf.subarray(0, st.n)));
      inFlight.push(chain);
      st.buf = this.#buffer(chunkBytes);
      st.n = 0;
      // A few chunks queued at the Worker, so it never waits for this thread's hashing and writing (with one
      // chunk in flight the two threads mostly took turns); memory stays bounded at IN_FLIGHT + 1 chunks.
      while (inFlight.length > IN_FLIGHT) await inFlight.shift();
    };
    return {
      write: (chunk: Uint8Array) => stageBytes(st, chunk, flush),
      finish: async () => {
        try {
          if (st.n > 0) await flush();
          deliver(this.#send("end"));
          await chain;
        } finally {
          this.#busy = false;
        }
      },
      abort: () => {
        this.#busy = false;
        // Restart the worker's context on the next begin; pending replies are dropped.
        this.#w.postMessage({ op: "begin", level: this.level });
      },
    };
  }

  close(): void {
    this.#w.terminate();
  }
}
