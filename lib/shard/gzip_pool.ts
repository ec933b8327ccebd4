/**
 * The gzip codec's Workers (codecs.ts): {@link GzipWorkers}, a pool compressing independent gzip members (the
 * shard's payload cut into fixed-size chunks, one member each, so every core works), and {@link OrderedGzip},
 * which writes the members in submission order with a bounded number in flight.
 *
 * @example
 * ```ts
 * import { gunzipSync } from "node:zlib";
 * import { GzipWorkers, OrderedGzip } from "./gzip_pool.ts";
 * const pool = new GzipWorkers(2);
 * const members: Uint8Array[] = [];
 * const ordered = new OrderedGzip(pool, async (b) => void members.push(b));
 * for (const v of [1, 2, 3]) await ordered.submit(new Uint8Array(1000).fill(v));
 * await ordered.drain();
 * pool.close();
 * const all = new Uint8Array(members.reduce((n, m) => n + m.length, 0));
 * members.reduce((o, m) => (all.set(m, o), o + m.length), 0);
 * console.log(members.length, gunzipSync(all).length); // 3 3000 (one gzip file of three members)
 * ```
 *
 * @module
 */
import { ActshardError } from "../errors.ts";
import { type CompressEngine, compressMember } from "./gzip_member.ts";
import { crc32c } from "../util/crc32c.ts";

/** A compressed chunk and its CRC-32C (computed in the Worker, so the writer only combines). */
export interface Compressed {
  /** The compressed bytes. */
  out: Uint8Array;
  /** CRC-32C of `out`. */
  crc: number;
}

/** Where {@link OrderedGzip} writes each member, with its CRC-32C, in order (codecs.ts's `ByteSink`). */
export type MemberSink = (bytes: Uint8Array, crc32c?: number) => Promise<void>;

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

  /** Start `size` Workers (0: compress on the calling thread) at gzip `level` with `engine`. */
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

  /** Terminate the Workers. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    this.#workers = [];
    this.#idle = [];
  }
}

/** Ordered writer over a {@link GzipWorkers}: at most `size + 1` members in flight (bounded memory). */
export class OrderedGzip {
  #pending: Promise<void>[] = [];
  #chain: Promise<void> = Promise.resolve();
  #failed: unknown = null;

  constructor(private pool: GzipWorkers, private sink: MemberSink) {}

  /** Compress `chunk` (taking it over) and write its member after those submitted before it. */
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

  /** Wait for every submitted member to be written; throws the first failure. */
  async drain(): Promise<void> {
    await this.#chain;
    this.#pending = [];
    if (this.#failed) throw this.#failed;
  }
}
