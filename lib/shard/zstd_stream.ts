/**
 * zstd compression for shards: a single zstd frame per shard, compressed in a Worker (see zstd_worker.ts) while
 * the main thread encodes, hashes and writes. One {@link ZstdWorker} serves a writer's shards one after another.
 *
 * @example
 * ```ts
 * import { ZstdWorker } from "./zstd_stream.ts";
 * const w = new ZstdWorker();
 * const parts: Uint8Array[] = [];
 * const c = w.compressor(async (b) => void parts.push(b.slice()), 1 << 20);
 * await c.write(new Uint8Array(100));
 * await c.finish();
 * w.close();
 * ```
 */
import { ActshardError } from "../errors.ts";
import type { ByteSink, Compressor } from "./codecs.ts";

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

/** A Worker holding one streaming zstd context at a time. */
export class ZstdWorker {
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
  compressor(sink: ByteSink, chunkBytes: number): Compressor {
    if (this.#busy) throw new ActshardError("zstd worker already has an open frame", { kind: "internal" });
    this.#busy = true;
    this.#w.postMessage({ op: "begin", level: this.level });
    let buf = this.#buffer(chunkBytes);
    let n = 0;
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
      deliver(this.#send("write", buf.subarray(0, n)));
      inFlight.push(chain);
      buf = this.#buffer(chunkBytes);
      n = 0;
      // A few chunks queued at the Worker, so it never waits for this thread's hashing and writing (with one
      // chunk in flight the two threads mostly took turns); memory stays bounded at IN_FLIGHT + 1 chunks.
      while (inFlight.length > IN_FLIGHT) await inFlight.shift();
    };
    return {
      write: async (chunk: Uint8Array) => {
        let off = 0;
        while (off < chunk.length) {
          const k = Math.min(chunk.length - off, buf.length - n);
          buf.set(chunk.subarray(off, off + k), n);
          n += k;
          off += k;
          if (n === buf.length) await flush();
        }
      },
      finish: async () => {
        try {
          if (n > 0) await flush();
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
