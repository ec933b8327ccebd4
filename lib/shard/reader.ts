/**
 * Reading datasets: {@link Dataset} opens a directory (or any {@link BlobStore}) and streams its records shard
 * by shard, filtered by layer / task / sample; {@link readShard} decodes one shard. The decoder is the format
 * registry's (lib/shard/formats/mod.ts), picked from the shard's metadata.json entry (`format`, `codec`), or from
 * its file name for seed-written data that has no such fields. Pickles go through the restricted unpickler;
 * seed-written shards (no task_id, `text_preview`) read too, with unknown keys carried in `extra`.
 *
 * @example
 * ```ts
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "safetensors", codec: "none", dtype: "float16",
 *   shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 3, layer: 12, prompt: "p", activation: new Float32Array(8),
 *   shape: [2, 4] }]);
 * await w.close();
 * const ds = await Dataset.open(dir); // the decoder comes from each shard's metadata.json entry
 * for await (const r of ds.records({ layer: 12 })) console.log(r.task_id, r.sample_idx, r.shape); // t 3 [2, 4]
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type { ActivationDType, ActivationRecord } from "../types.ts";
import type { BlobStore } from "../storage/types.ts";
import { openStore } from "../storage/open.ts";
import { ActshardError } from "../errors.ts";
import { openShardStream, ShardReaders } from "./read_stream.ts";
import { codecSpec } from "./codecs.ts";
import { type DatasetMetadata, METADATA_NAME, readMetadata, shardLocation } from "./metadata.ts";
import { isShardFileName, type ShardItem, shardKind, type ShardKindFields } from "./formats/mod.ts";

/** A record as read back: float32 values plus the dtype it was stored in and its shard. */
export interface ReadRecord extends ActivationRecord {
  /** The stored dtype (values are float32 either way). */
  dtype: ActivationDType;
  /** The shard it came from (its location in the dataset). */
  shard: string;
}

/** Which records to keep. */
export interface RecordFilter {
  /** Only this layer. */
  layer?: number;
  /** Only this ARC task. */
  task_id?: string;
  /** Only this prompt index. */
  sample_idx?: number;
}

function matches(f: RecordFilter | undefined, item: ShardItem): boolean {
  if (!f) return true;
  return (f.layer === undefined || f.layer === item.layer) &&
    (f.task_id === undefined || f.task_id === item.task_id) &&
    (f.sample_idx === undefined || f.sample_idx === item.sample_idx);
}

async function* records(items: AsyncIterable<ShardItem>, filter: RecordFilter | undefined, shard: string) {
  for await (const item of items) {
    if (matches(filter, item)) yield { ...(await item.record()), shard } as ReadRecord;
  }
}

function whereOf(store: BlobStore, name: string): string {
  return `${store.url.replace(/\/$/, "")}/${name}`;
}

/**
 * Decode one shard of `store`, filtered. Its format and codec come from `entry` (its metadata.json entry) when
 * that names them, else from the file name (seed-written data); see {@link shardKind}.
 */
export async function* readShard(
  store: BlobStore,
  name: string,
  filter?: RecordFilter,
  entry?: ShardKindFields,
): AsyncIterable<ReadRecord> {
  yield* decodeShard(store, name, filter, entry, openStream(store, name, entry));
}

/**
 * Shard `name`'s decoded bytes (local: read and decompressed in a Worker, in parallel with the decoding). The
 * promise is marked handled: one opened ahead of its turn fails there, when it is awaited, not before.
 */
function openStream(
  store: BlobStore,
  name: string,
  entry?: ShardKindFields,
  readers?: ShardReaders,
): Promise<ReadableStream<Uint8Array>> {
  const opening = (async () => {
    const { codec } = shardKind(name, entry, whereOf(store, name));
    return await openShardStream(store, name, codec, readers);
  })();
  opening.catch(() => {});
  return opening;
}

/** The records of shard `name`, decoded from its stream once `opening` gives it. */
async function* decodeShard(
  store: BlobStore,
  name: string,
  filter: RecordFilter | undefined,
  entry: ShardKindFields | undefined,
  opening: Promise<ReadableStream<Uint8Array>>,
): AsyncIterable<ReadRecord> {
  const where = whereOf(store, name);
  const { format } = shardKind(name, entry, where);
  const stream = await opening;
  yield* records(format.decode(stream, where), filter, name);
}

/**
 * True when shard `name` (with its metadata.json `entry`, if any) can be read by byte range: an uncompressed
 * shard of a format with a ranged reader (safetensors).
 */
export function isRangeReadable(name: string, entry?: ShardKindFields): boolean {
  let kind;
  try {
    kind = shardKind(name, entry, name);
  } catch {
    return false; // not a shard this version reads: readShard says why
  }
  return !!kind.format.readRanged && codecSpec(kind.codec).randomAccess;
}

/**
 * The matching records of an uncompressed, range-readable shard (see {@link isRangeReadable}) through range
 * reads only: the format's header, then each matching record's bytes. The rest of the shard is never fetched.
 */
export async function* readShardRanged(
  store: BlobStore,
  name: string,
  filter?: RecordFilter,
  entry?: ShardKindFields,
): AsyncIterable<ReadRecord> {
  const where = whereOf(store, name);
  const { format } = shardKind(name, entry, where);
  if (!format.readRanged) {
    throw new ActshardError(`${format.name} shards cannot be read by range`, { where, kind: "internal" });
  }
  yield* records(format.readRanged(store, name, where), filter, name);
}

/**
 * A dataset root: metadata.json plus shards (or a bare directory of seed shards).
 *
 * @example
 * ```ts
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir(); // a dataset of two records, written here
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "gzip", dtype: "float32",
 *   shardSizeBytes: 1 << 20, base: {} });
 * for (const layer of [10, 11]) {
 *   await w.write([{ task_id: "t", sample_idx: 0, layer, prompt: "p", activation: new Float32Array(8),
 *     shape: [2, 4] }]);
 * }
 * await w.close();
 * const ds = await Dataset.open(dir);
 * for await (const r of ds.records({ layer: 11 })) console.log(r.task_id, r.shape, r.dtype); // t [2, 4] float32
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class Dataset {
  private constructor(
    readonly store: BlobStore,
    readonly metadata: DatasetMetadata | null,
    readonly shards: string[],
  ) {}

  /** Open a directory, `gs://` location or store. Without metadata.json, shard files found are read in order. */
  static async open(location: string | BlobStore): Promise<Dataset> {
    const store = typeof location === "string" ? await openStore(location) : location;
    if (await store.stat(METADATA_NAME)) {
      const meta = await readMetadata(store);
      return new Dataset(store, meta, meta.shards.map(shardLocation));
    }
    const names = (await store.list()).map((o) => o.name).filter((n) => isShardFileName(n.split("/").pop()!));
    if (names.length === 0) {
      throw new ActshardError("not a dataset: no metadata.json and no shard_NNNN files", {
        where: store.url,
        kind: "input",
        hint: "give the directory a run wrote",
      });
    }
    return new Dataset(store, null, names);
  }

  /**
   * Stream records, shard by shard, in file order. Shards outside the filter's layer / sample range (per
   * metadata) are skipped; with a `sample_idx` filter, uncompressed safetensors shards are read by range (header,
   * then only the matching tensors), never whole.
   */
  async *records(filter?: RecordFilter): AsyncIterable<ReadRecord> {
    const plan = this.shards.map((name, i) => ({ name, e: this.metadata?.shards[i] }))
      .filter(({ e }) => mayHold(e, filter));
    const ranged = (p: { name: string; e?: ShardKindFields }) =>
      filter?.sample_idx !== undefined && isRangeReadable(p.name, p.e);
    // Local shards are read by Workers kept from one shard to the next (read_stream.ts: starting one costs
    // ≈ 30 ms of CPU). The next shard's stream is opened when this one's decoding starts, on the second Worker,
    // which reads and decompresses its first chunks (read_stream.ts: ≈ 12 MiB) meanwhile.
    const readers = new ShardReaders();
    let next: Promise<ReadableStream<Uint8Array>> | null = null;
    try {
      for (const [k, p] of plan.entries()) {
        if (ranged(p)) {
          yield* readShardRanged(this.store, p.name, filter, p.e);
          continue;
        }
        const opening = next ?? openStream(this.store, p.name, p.e, readers);
        const q = plan[k + 1];
        next = q && !ranged(q) ? openStream(this.store, q.name, q.e, readers) : null;
        yield* decodeShard(this.store, p.name, filter, p.e, opening);
      }
    } finally {
      // A consumer that stopped early (or a failure): release the stream opened ahead.
      if (next) await next.then((s) => s.cancel(), () => {}).catch(() => {});
      readers.close();
    }
  }
}

/** False when `e`'s metadata rules out any record the filter keeps (its layers, its sample_idx range). */
function mayHold(
  e: DatasetMetadata["shards"][number] | undefined,
  filter: RecordFilter | undefined,
): boolean {
  if (!e || !filter) return true;
  if (filter.layer !== undefined && Array.isArray(e.layers) && !e.layers.includes(filter.layer)) return false;
  return !(
    filter.sample_idx !== undefined && typeof e.sample_idx_min === "number" &&
    (filter.sample_idx < e.sample_idx_min || filter.sample_idx > e.sample_idx_max)
  );
}
