/**
 * Decoded shard bytes as a stream. A local shard is read and decompressed in a Worker (read_worker.ts), in large
 * chunks, while this thread decodes records (and, in the `shard` stage, the writer's Workers compress): the read
 * path runs in parallel with the rest. Other stores (gs://) stream through node:zlib on this thread.
 *
 * Starting a Worker costs ≈ 30 ms of CPU (its runtime, then its teardown), which in a dataset of small shards
 * was most of the read: 16 MiB shards read at ≈ 0.6 GB/s against ≈ 2 GB/s for one large one. A
 * {@link ShardReaders} keeps its Workers for one shard after another (a dataset's reader holds one while it
 * reads).
 *
 * @example
 * ```ts
 * import { openShardStream } from "./read_stream.ts";
 * import { ShardWriter } from "./writer.ts";
 * import { LocalStore } from "../storage/local.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "gzip", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p", activation: new Float32Array(4), shape: [1, 4] }]);
 * await w.close();
 * const s = await openShardStream(new LocalStore(dir), "shard_0001.pkl.gz");
 * for await (const chunk of s) console.log(chunk.length);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import type { BlobStore } from "../storage/types.ts";
import { LocalStore } from "../storage/local.ts";
import { type Codec, codecFromName, decompressStream } from "./codecs.ts";
import { chunkRecyclers, wholeChunks } from "./byte_source.ts";
import { BIG_PAYLOAD } from "./read_split.ts";

/** Decoded chunks the Worker may have ready ahead of the reader (memory: ≈ this × 4 MiB, or two arrays). */
const AHEAD = 3;
/** read_worker.ts's chunk size: a consumed chunk of it goes back to be read into again. */
const CHUNK_BYTES = 4 << 20;

/**
 * The decompressed bytes of shard `name` of `store`, with `codec` (the reader takes it from the shard's
 * metadata.json entry; default: from the name's suffix). `readers`: Workers to read a local shard with (kept
 * for the next shard once this stream ends); default: a Worker of its own, gone when the stream ends.
 */
export async function openShardStream(
  store: BlobStore,
  name: string,
  codec: Codec = codecFromName(name.split("/").pop()!),
  readers?: ShardReaders,
): Promise<ReadableStream<Uint8Array>> {
  if (!(store instanceof LocalStore)) return decompressStream(codec, await store.openRead(name));
  const path = join(store.dir, ...name.split("/"));
  // Fail as the store does for a missing file (one clear error), before any Worker starts.
  await (await store.openRead(name)).cancel();
  const own = readers ?? new ShardReaders();
  return own.stream(path, codec, readers ? undefined : () => own.close());
}

interface Reply {
  stream: number;
  chunk?: Uint8Array;
  /** `chunk` is one large array's data, in a buffer of its own (read_split.ts). */
  whole?: boolean;
  done?: boolean;
  error?: string;
}

/** One read Worker; each stream it serves has an id, and its replies carry it. */
class ReadWorker {
  readonly w = new Worker(new URL("./read_worker.ts", import.meta.url), { type: "module" });
  /** The stream being served and the replies it awaits, in order. */
  stream = -1;
  waiting: ((r: Reply) => void)[] = [];
  constructor() {
    this.w.onmessage = (ev: MessageEvent<Reply>) => {
      if (ev.data.stream === this.stream) this.waiting.shift()?.(ev.data); // else: a stream given up on
    };
  }
}

/**
 * Read Workers for shards read one after another (or two at once: the next one opened ahead); each stream takes
 * an idle Worker, or starts one, and gives it back when it ends or is cancelled. `close` terminates them.
 *
 * @example
 * ```ts
 * import { openShardStream, ShardReaders } from "./read_stream.ts";
 * import { ShardWriter } from "./writer.ts";
 * import { LocalStore } from "../storage/local.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "none", dtype: "float32", shardSizeBytes: 64, base: {} });
 * for (let i = 0; i < 3; i++) {
 *   await w.write([{ task_id: "t", sample_idx: i, layer: 0, prompt: "p", activation: new Float32Array(16), shape: [1, 16] }]);
 * }
 * const meta = await w.close();
 * const readers = new ShardReaders();
 * for (const s of meta.shards) {
 *   let n = 0;
 *   for await (const c of await openShardStream(new LocalStore(dir), s.filename, "none", readers)) n += c.length;
 *   console.log(s.filename, n); // one Worker read all three
 * }
 * readers.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class ShardReaders {
  #idle: ReadWorker[] = [];
  #all: ReadWorker[] = [];
  #next = 0;
  #closed = false;

  /** A stream of `path`'s decoded bytes on one of these Workers; `ended` runs once it has given it back. */
  stream(path: string, codec: Codec, ended?: () => void): ReadableStream<Uint8Array> {
    const rw = this.#idle.pop() ?? this.#spawn();
    const id = this.#next++;
    rw.stream = id;
    rw.waiting = [];
    // An uncompressed pickle comes with its large arrays cut out (read_split.ts). The same number of chunks ahead
    // (then at most two arrays' data and the opcodes between them: memory bounded by the arrays' size, as the
    // record itself is; twice as many measured no faster).
    const split = codec === "none" && path.endsWith(".pkl");
    rw.w.postMessage({ op: "open", stream: id, path, codec, split });
    const next = () => {
      const p = new Promise<Reply>((ok) => rw.waiting.push(ok));
      rw.w.postMessage({ op: "pull", stream: id });
      return p;
    };
    // The first reads are asked for now, not at the first pull: a shard opened ahead of its turn (the dataset
    // reader's next one) is read and decompressed meanwhile, in parallel with the one being decoded.
    const ahead: Promise<Reply>[] = Array.from({ length: AHEAD }, next);
    let given = false;
    const giveBack = () => {
      if (given) return;
      given = true;
      rw.stream = -1; // late replies for this stream are dropped
      rw.waiting = [];
      rw.w.postMessage({ op: "close", stream: id });
      if (this.#closed) rw.w.terminate();
      else this.#idle.push(rw);
      ended?.();
    };
    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        while (ahead.length < AHEAD) ahead.push(next());
        const r = await ahead.shift()!;
        if (r.error !== undefined) {
          giveBack();
          controller.error(new Error(r.error));
        } else if (r.done) {
          giveBack();
          controller.close();
        } else {
          if (r.whole) wholeChunks.add(r.chunk!);
          controller.enqueue(r.chunk!);
        }
      },
      cancel: giveBack,
    }, { highWaterMark: 0 });
    // Its ByteSource hands consumed chunks back, and buffers for the large arrays it takes whole; any of these
    // Workers may read into them again.
    chunkRecyclers.set(stream, (c) => {
      if ((c.byteLength === CHUNK_BYTES || c.byteLength >= BIG_PAYLOAD) && !this.#closed) {
        rw.w.postMessage({ op: "recycle", buf: c }, [c.buffer]);
      }
    });
    return stream;
  }

  /** Workers started so far (each is reused by later streams once its stream ends). */
  get started(): number {
    return this.#all.length;
  }

  #spawn(): ReadWorker {
    const rw = new ReadWorker();
    this.#all.push(rw);
    return rw;
  }

  /** Terminate every Worker (a stream still open fails its next read). */
  close(): void {
    this.#closed = true;
    for (const rw of this.#all) {
      rw.w.terminate();
      for (const ok of rw.waiting.splice(0)) ok({ stream: rw.stream, error: "the shard reader was closed" });
    }
    this.#all = [];
    this.#idle = [];
  }
}
