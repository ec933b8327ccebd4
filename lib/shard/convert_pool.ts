/**
 * ConvertPool: the float32 → float16/bfloat16 conversion of a writer's records on a pool of Workers
 * (convert_worker.ts), so that it no longer runs on the main thread, where it was the busiest serial stage of
 * those dtypes (≈ 0.6–0.8 s per GB of float32: ≈ 1 GB/s for one writer, whatever the cores). The main thread
 * copies each activation into a recycled buffer (≈ 0.1 s/GB) and takes the stored bytes back; the conversion
 * is the same function (lib/util/dtype.ts), so the bytes are too.
 *
 * @example
 * ```ts
 * import { ConvertPool } from "./convert_pool.ts";
 * const pool = new ConvertPool("bfloat16", 2);
 * const bytes = await pool.convert(new Float32Array([1, -2.5, 3]));
 * console.log(bytes.length); // 6
 * pool.close();
 * ```
 */
import { ActshardError } from "../errors.ts";

/** Conversion Workers for `cores` cores: none on one core (the writer converts on its own thread), at most 8. */
export function convertPoolSize(cores: number = navigator.hardwareConcurrency ?? 1): number {
  return cores >= 2 ? Math.min(8, cores) : 0;
}

interface Reply {
  id: number;
  out?: Uint8Array;
  buf: ArrayBuffer;
  error?: string;
}

/** A pool of Workers converting float32 activations into one stored dtype. */
export class ConvertPool {
  #workers: Worker[] = [];
  #next = 0;
  #nextId = 0;
  #waiting = new Map<number, { ok: (b: Uint8Array) => void; err: (e: unknown) => void }>();
  /** Input buffers handed back by the Workers, for reuse (by byte length). */
  #free: ArrayBuffer[] = [];

  /** Start `size` Workers (at least 1) converting to `dtype`. */
  constructor(readonly dtype: "float16" | "bfloat16", size: number) {
    for (let i = 0; i < Math.max(1, size); i++) {
      const w = new Worker(new URL("./convert_worker.ts", import.meta.url), { type: "module" });
      w.onmessage = (ev: MessageEvent<Reply>) => this.#reply(ev.data);
      this.#workers.push(w);
    }
  }

  #reply(r: Reply): void {
    if (this.#free.length < 2 * this.#workers.length) this.#free.push(r.buf);
    const p = this.#waiting.get(r.id);
    this.#waiting.delete(r.id);
    if (!p) return;
    if (r.error !== undefined) {
      p.err(new ActshardError(`converting an activation to ${this.dtype}: ${r.error}`, { kind: "internal" }));
    } else p.ok(r.out!);
  }

  /** The stored bytes of `values` in this pool's dtype (little-endian), converted by a Worker. */
  convert(values: Float32Array): Promise<Uint8Array> {
    const i = this.#free.findIndex((b) => b.byteLength === values.byteLength);
    const buf = i >= 0 ? this.#free.splice(i, 1)[0] : new ArrayBuffer(values.byteLength);
    new Float32Array(buf).set(values);
    const id = this.#nextId++;
    const p = new Promise<Uint8Array>((ok, err) => this.#waiting.set(id, { ok, err }));
    this.#workers[this.#next++ % this.#workers.length].postMessage(
      { id, buf, n: values.length, dtype: this.dtype },
      [buf],
    );
    return p;
  }

  /** Stop the Workers (conversions still in flight are dropped). */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
    this.#waiting.clear();
  }
}
