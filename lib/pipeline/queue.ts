/**
 * A bounded async queue between two pipeline stages. The producer's `push` waits while the queue is full, so a
 * fast stage can run at most `capacity` items ahead of a slow one and memory stays bounded by the capacity,
 * never by the dataset or shard size. `close()` ends the stream; `fail(e)` makes both sides throw `e`.
 *
 * @example
 * ```ts
 * import { BoundedQueue } from "./queue.ts";
 * const q = new BoundedQueue<number>(2);
 * const consumer = (async () => { for await (const x of q) console.log(x); })();
 * for (let i = 0; i < 5; i++) await q.push(i);
 * q.close();
 * await consumer;
 * ```
 */
export class BoundedQueue<T> implements AsyncIterable<T> {
  readonly capacity: number;
  #items: T[] = [];
  #closed = false;
  #error: { e: unknown } | null = null;
  #waitSpace: (() => void)[] = [];
  #waitItem: (() => void)[] = [];

  constructor(capacity: number) {
    this.capacity = Math.max(1, Math.floor(capacity));
  }

  /** Items waiting for the consumer. */
  get length(): number {
    return this.#items.length;
  }

  /** Add an item, waiting while the queue is full. Throws the failure passed to {@link fail}, if any. */
  async push(item: T): Promise<void> {
    while (this.#items.length >= this.capacity && !this.#error && !this.#closed) {
      await new Promise<void>((r) => this.#waitSpace.push(r));
    }
    if (this.#error) throw this.#error.e;
    if (this.#closed) throw new Error("queue: push after close");
    this.#items.push(item);
    this.#wake(this.#waitItem);
  }

  /** No more items: the consumer ends after draining what is queued. */
  close(): void {
    this.#closed = true;
    this.#wake(this.#waitItem);
    this.#wake(this.#waitSpace);
  }

  /** Abort both sides with `e` (the first failure wins). */
  fail(e: unknown): void {
    if (!this.#error) this.#error = { e };
    this.#items = [];
    this.#wake(this.#waitItem);
    this.#wake(this.#waitSpace);
  }

  /** The next item, or `undefined` when closed and drained. */
  async shift(): Promise<T | undefined> {
    while (this.#items.length === 0 && !this.#closed && !this.#error) {
      await new Promise<void>((r) => this.#waitItem.push(r));
    }
    if (this.#error) throw this.#error.e;
    const item = this.#items.shift();
    this.#wake(this.#waitSpace);
    return item;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<T> {
    while (true) {
      const item = await this.shift();
      if (item === undefined && this.#items.length === 0 && (this.#closed || this.#error)) return;
      yield item as T;
    }
  }

  #wake(list: (() => void)[]): void {
    for (const r of list.splice(0)) r();
  }
}
