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

  constructor(readonly level = 3) {
    this.#w = new Worker(new URL("./zstd_worker.ts", import.meta.url), { type: "module" });
    this.#w.onmessage = (ev: MessageEvent<Reply>) => {
      const r = this.#waiting.get(ev.data.id)!;
      this.#waiting.delete(ev.data.id);
      if (ev.data.input && this.#free.length < 4) this.#free.push(new Uint8Array(ev.data.input.buffer));
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
    let previous: Promise<void> | null = null;
    const deliver = (p: Promise<Reply>) => {
      chain = chain.then(async () => {
        const r = await p;
        if (r.out && r.out.length) await sink(r.out, r.crc);
      });
      chain.catch(() => {});
    };
    const flush = async () => {
      deliver(this.#send("write", buf.subarray(0, n)));
      buf = this.#buffer(chunkBytes);
      n = 0;
      // Two chunks in flight at most: this one in the Worker, the next being filled here.
      if (previous) await previous;
      previous = chain;
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
