/**
 * Decoded shard bytes as a stream. A local shard is read and decompressed in a Worker (read_worker.ts), in large
 * chunks, while this thread decodes records (and, in the `shard` stage, the writer's Workers compress): the read
 * path runs in parallel with the rest. Other stores (gs://) stream through node:zlib on this thread.
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

/** Decoded chunks the Worker may have ready ahead of the reader (memory: ≈ this × 4 MiB). */
const AHEAD = 3;

/**
 * The decompressed bytes of shard `name` of `store`, with `codec` (the reader takes it from the shard's
 * metadata.json entry; default: from the name's suffix).
 */
export async function openShardStream(
  store: BlobStore,
  name: string,
  codec: Codec = codecFromName(name.split("/").pop()!),
): Promise<ReadableStream<Uint8Array>> {
  if (!(store instanceof LocalStore)) return decompressStream(codec, await store.openRead(name));
  const path = join(store.dir, ...name.split("/"));
  // Fail as the store does for a missing file (one clear error), before any Worker starts.
  await (await store.openRead(name)).cancel();
  const w = new Worker(new URL("./read_worker.ts", import.meta.url), { type: "module" });
  w.postMessage({ op: "open", path, codec });
  let waiting: { ok: (m: Reply) => void }[] = [];
  w.onmessage = (ev: MessageEvent<Reply>) => waiting.shift()?.ok(ev.data);
  const next = () => {
    const p = new Promise<Reply>((ok) => waiting.push({ ok }));
    w.postMessage({ op: "pull" });
    return p;
  };
  const ahead: Promise<Reply>[] = [];
  const stop = () => {
    w.terminate();
    waiting = [];
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      while (ahead.length < AHEAD) ahead.push(next());
      const r = await ahead.shift()!;
      if (r.error !== undefined) {
        stop();
        controller.error(new Error(r.error));
      } else if (r.done) {
        stop();
        controller.close();
      } else controller.enqueue(r.chunk!);
    },
    cancel: stop,
  }, { highWaterMark: 0 });
}

interface Reply {
  chunk?: Uint8Array;
  done?: boolean;
  error?: string;
}
