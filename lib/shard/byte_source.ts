/**
 * Pull-based reader over a `ReadableStream<Uint8Array>`: the decoders (pickle, safetensors) ask for exactly n
 * bytes and get them without the stream ever being buffered whole.
 *
 * @example
 * ```ts
 * import { ByteSource } from "./byte_source.ts";
 * const src = new ByteSource(new Blob([new Uint8Array([1, 2, 3])]).stream());
 * console.log(await src.read(2)); // Uint8Array [1, 2]
 * ```
 */
import { ActshardError } from "../errors.ts";
import { takeBuffer, takeReusedBuffer } from "../util/reusable_buffers.ts";

/**
 * Streams whose chunks a {@link ByteSource} may hand back once it has consumed them, to be read into again
 * (read_stream.ts registers its read Workers' streams). Only the stream's only reader may do so: a chunk handed
 * back is detached here and overwritten there.
 */
export const chunkRecyclers: WeakMap<ReadableStream<Uint8Array>, (chunk: Uint8Array) => void> = new WeakMap();

/**
 * Chunks that are exactly one large array's data in a buffer nothing else refers to (read_stream.ts marks them:
 * read_split.ts): {@link ByteSource.takeOwned} hands such a chunk out as it is, instead of copying it.
 */
export const wholeChunks: WeakSet<Uint8Array> = new WeakSet();

/** Sequential exact-length reads from a stream. */
export class ByteSource {
  #reader: ReadableStreamDefaultReader<Uint8Array>;
  #chunks: Uint8Array[] = [];
  #avail = 0;
  #done = false;
  #recycle: ((chunk: Uint8Array) => void) | undefined;
  /** Consumed chunks, handed back at the next call (a view returned by the last one may still be in use). */
  #retired: Uint8Array[] = [];
  /** Bytes consumed so far. */
  offset = 0;

  constructor(stream: ReadableStream<Uint8Array>, private where = "stream") {
    this.#recycle = chunkRecyclers.get(stream);
    this.#reader = stream.getReader();
  }

  /** Hand back the chunks consumed before the current call (views into them are no longer in use then). */
  #release(): void {
    for (const c of this.#retired.splice(0)) this.#recycle!(new Uint8Array(c.buffer));
  }

  /** Drop the first chunk, all of it consumed. */
  #shift(): void {
    const c = this.#chunks.shift()!;
    if (this.#recycle) this.#retired.push(c);
  }

  /** Bytes buffered and readable without awaiting. */
  get available(): number {
    return this.#avail;
  }

  /** Buffer at least `n` bytes; false if the stream ends first. */
  async fill(n: number): Promise<boolean> {
    if (this.#retired.length) this.#release();
    while (this.#avail < n && !this.#done) {
      let r;
      try {
        r = await this.#reader.read();
      } catch (e) {
        throw new ActshardError(`cannot decode: ${e instanceof Error ? e.message : e}`, {
          where: this.where,
          kind: "data",
          hint: "the file is corrupt or truncated",
          cause: e,
        });
      }
      if (r.done) this.#done = true;
      else if (r.value.length) {
        this.#chunks.push(r.value);
        this.#avail += r.value.length;
      }
    }
    return this.#avail >= n;
  }

  /** Exactly `n` bytes (throws a data error on a short stream). */
  async read(n: number): Promise<Uint8Array> {
    if (this.#avail < n && !(await this.fill(n))) {
      throw new ActshardError(`unexpected end of data at byte ${this.offset + this.#avail}`, {
        where: this.where,
        kind: "data",
        hint: "the file is truncated",
      });
    }
    return this.take(n);
  }

  /** {@link read}, into a buffer of its own ({@link takeOwned}). */
  async readOwned(n: number): Promise<Uint8Array> {
    if (this.#avail < n && !(await this.fill(n))) await this.read(n); // throws the short-stream error
    return this.takeOwned(n);
  }

  /** Exactly `n` already-buffered bytes (call {@link fill} first). */
  take(n: number): Uint8Array {
    if (this.#retired.length) this.#release();
    this.offset += n;
    this.#avail -= n;
    const first = this.#chunks[0];
    if (first.length >= n) {
      const out = first.subarray(0, n);
      if (first.length === n) this.#shift();
      else this.#chunks[0] = first.subarray(n);
      return out;
    }
    return this.#join(n, new Uint8Array(n));
  }

  /** The next `n` buffered bytes, spanning chunks, copied into `out`. */
  #join(n: number, out: Uint8Array): Uint8Array {
    let o = 0;
    while (o < n) {
      const c = this.#chunks[0];
      const k = Math.min(c.length, n - o);
      out.set(c.subarray(0, k), o);
      o += k;
      if (k === c.length) this.#shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }

  /**
   * Exactly `n` already-buffered bytes in a buffer of their own (offset 0, nothing else refers to it; a reused
   * one where one of that size was given back, reusable_buffers.ts): one copy, from one chunk or joined
   * across chunks; none where the next chunk is those bytes, whole ({@link wholeChunks}).
   */
  takeOwned(n: number): Uint8Array {
    if (n === 0) return new Uint8Array(0);
    const first = this.#chunks[0];
    if (first?.length === n && wholeChunks.has(first)) {
      // Read for this alone: handed out, not recycled; a reusable buffer of its size goes back to be read into.
      if (this.#retired.length) this.#release();
      this.#chunks.shift();
      this.offset += n;
      this.#avail -= n;
      const spare = this.#recycle && takeReusedBuffer(n);
      if (spare) this.#recycle!(spare);
      return first;
    }
    const out = takeBuffer(n);
    if (this.#chunks.length > 0 && this.#chunks[0].length < n) {
      if (this.#retired.length) this.#release();
      this.offset += n;
      this.#avail -= n;
      return this.#join(n, out);
    }
    out.set(this.take(n));
    return out;
  }

  /** One byte, or -1 at end of stream. */
  async byte(): Promise<number> {
    if (this.#avail < 1 && !(await this.fill(1))) return -1;
    return this.take(1)[0];
  }

  /** True when every byte has been consumed. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill(1));
  }

  /** Release the underlying stream. */
  async cancel(): Promise<void> {
    await this.#reader.cancel().catch(() => {});
  }
}
