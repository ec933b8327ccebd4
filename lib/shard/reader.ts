/**
 * Reading datasets: {@link Dataset} opens a directory (or any {@link BlobStore}) and streams its records shard
 * by shard, filtered by layer / task / sample; {@link readShard} decodes one shard (format and codec from its
 * name). Pickles go through the restricted unpickler; seed-written shards (no task_id, `text_preview`) read too,
 * with unknown keys carried in `extra`.
 *
 * @example
 * ```ts
 * import { Dataset } from "./reader.ts";
 * const ds = await Dataset.open("activations_arc");
 * for await (const r of ds.records({ layer: 12 })) console.log(r.task_id, r.sample_idx, r.shape);
 * ```
 */
import type { ActivationDType, ActivationRecord } from "../types.ts";
import type { BlobStore } from "../storage/types.ts";
import { openStore } from "../storage/open.ts";
import { ActshardError } from "../errors.ts";
import { openShardStream } from "./read_stream.ts";
import { decodeActivation } from "../util/dtype.ts";
import { type DatasetMetadata, METADATA_NAME, readMetadata, shardLocation } from "./metadata.ts";
import { type NdArray, unpickleRecords } from "./pickle_reader.ts";
import { readHeaderRanged, readSafetensors, readTensorRanged, tensorFacts } from "./safetensors.ts";
import { SHARD_FILE_RE } from "./writer.ts";

/** A record as read back: float32 values plus the dtype it was stored in and its shard. */
export interface ReadRecord extends ActivationRecord {
  dtype: ActivationDType;
  shard: string;
}

/** Which records to keep. */
export interface RecordFilter {
  layer?: number;
  task_id?: string;
  sample_idx?: number;
}

function matches(f: RecordFilter | undefined, layer: number, task: string, idx: number): boolean {
  if (!f) return true;
  return (f.layer === undefined || f.layer === layer) && (f.task_id === undefined || f.task_id === task) &&
    (f.sample_idx === undefined || f.sample_idx === idx);
}

const NUMPY_DTYPES: Record<string, ActivationDType> = { f4: "float32", f2: "float16" };

function ndToFloat32(a: NdArray, where: string): { values: Float32Array; dtype: ActivationDType } {
  const dtype = NUMPY_DTYPES[a.descr];
  if (!dtype && a.descr !== "f8") {
    throw new ActshardError(`unsupported numpy dtype "${a.descr}" in activation`, { where, kind: "data" });
  }
  let data = a.data;
  const width = a.descr === "f8" ? 8 : a.descr === "f4" ? 4 : 2;
  if (a.byteorder === ">") {
    data = data.slice();
    for (let i = 0; i < data.length; i += width) data.subarray(i, i + width).reverse();
  }
  const n = a.shape.reduce((x, y) => x * y, 1);
  if (data.length !== n * width) {
    throw new ActshardError(`activation has ${data.length} bytes for shape (${a.shape})`, {
      where,
      kind: "data",
    });
  }
  let values: Float32Array;
  if (a.descr === "f8") {
    const c = data.slice();
    values = Float32Array.from(new Float64Array(c.buffer, 0, n));
  } else values = decodeActivation(data, dtype);
  if (a.fortran && a.shape.length === 2) {
    const [r, c] = a.shape;
    const t = new Float32Array(n);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) t[i * c + j] = values[j * r + i];
    values = t;
  }
  return { values, dtype: dtype ?? "float32" };
}

const KNOWN = new Set(["task_id", "sample_idx", "activation", "shape", "prompt", "layer"]);

/** Decode one shard of `store` (format and codec from its name), filtered. */
export async function* readShard(
  store: BlobStore,
  name: string,
  filter?: RecordFilter,
): AsyncIterable<ReadRecord> {
  const where = `${store.url.replace(/\/$/, "")}/${name}`;
  const base = name.split("/").pop()!;
  const isPickle = /\.pkl(\.|$)/.test(base);
  const isSt = /\.safetensors(\.|$)/.test(base);
  if (!isPickle && !isSt) {
    throw new ActshardError("unknown shard format (expected .pkl or .safetensors)", { where, kind: "input" });
  }
  // Local shards are read and decompressed in a Worker, in parallel with the decoding below.
  const stream = await openShardStream(store, name);
  if (isPickle) {
    for await (const { layer, record } of unpickleRecords(stream, where)) {
      const idx = Number(record.sample_idx ?? -1);
      const task = typeof record.task_id === "string" ? record.task_id : "";
      if (!matches(filter, layer, task, idx)) continue;
      const { values, dtype } = ndToFloat32(record.activation as NdArray, where);
      const shape = (record.activation as NdArray).shape;
      const extra: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(record)) if (!KNOWN.has(k)) extra[k] = v;
      yield {
        task_id: task,
        sample_idx: idx,
        layer,
        activation: values,
        shape: [shape[0], shape[1] ?? 1],
        prompt: typeof record.prompt === "string" ? record.prompt : "",
        ...(Object.keys(extra).length ? { extra } : {}),
        dtype,
        shard: name,
      };
    }
  } else {
    for await (const t of readSafetensors(stream, where)) {
      const keys = tensorKeys(t.name, t.facts);
      if (!matches(filter, keys.layer, keys.task_id, keys.sample_idx)) continue;
      yield tensorRecord(t, keys, t.data, name);
    }
  }
}

interface TensorKeys {
  layer: number;
  sample_idx: number;
  task_id: string;
  prompt: string;
  extra?: Record<string, unknown>;
}

/** A safetensors tensor's record keys: from its `__metadata__` facts, else from its name. */
function tensorKeys(name: string, facts: Record<string, unknown>): TensorKeys {
  const f = facts as Partial<TensorKeys>;
  const m = name.match(/^layer_(\d+)\/sample_(\d+)$/);
  return {
    layer: f.layer ?? (m ? Number(m[1]) : -1),
    sample_idx: f.sample_idx ?? (m ? Number(m[2]) : -1),
    task_id: f.task_id ?? "",
    prompt: f.prompt ?? "",
    ...(f.extra ? { extra: f.extra } : {}),
  };
}

function tensorRecord(
  t: { dtype: ActivationDType; shape: number[] },
  k: TensorKeys,
  data: Uint8Array,
  shard: string,
): ReadRecord {
  return {
    task_id: k.task_id,
    sample_idx: k.sample_idx,
    layer: k.layer,
    activation: decodeActivation(data, t.dtype),
    shape: [t.shape[0], t.shape[1] ?? 1],
    prompt: k.prompt,
    ...(k.extra ? { extra: k.extra } : {}),
    dtype: t.dtype,
    shard,
  };
}

/** True for shards whose tensors can be fetched by byte range (uncompressed safetensors). */
export function isRangeReadable(name: string): boolean {
  return /\.safetensors$/.test(name);
}

/**
 * The matching records of an uncompressed safetensors shard through range reads only: the header (8 bytes, then
 * the JSON), then each matching tensor's bytes. The rest of the shard is never fetched.
 */
export async function* readShardRanged(
  store: BlobStore,
  name: string,
  filter?: RecordFilter,
): AsyncIterable<ReadRecord> {
  const where = `${store.url.replace(/\/$/, "")}/${name}`;
  const h = await readHeaderRanged(store, name, where);
  for (const t of h.tensors) {
    const keys = tensorKeys(t.name, tensorFacts(h, t.name));
    if (!matches(filter, keys.layer, keys.task_id, keys.sample_idx)) continue;
    yield tensorRecord(t, keys, await readTensorRanged(store, name, h, t, where), name);
  }
}

/** A dataset root: metadata.json plus shards (or a bare directory of seed shards). */
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
    const names = (await store.list()).map((o) => o.name).filter((n) =>
      SHARD_FILE_RE.test(n.split("/").pop()!)
    );
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
    const wanted = this.metadata && filter?.layer !== undefined;
    for (const [i, name] of this.shards.entries()) {
      if (wanted) {
        const e = this.metadata!.shards[i];
        if (Array.isArray(e.layers) && !e.layers.includes(filter!.layer!)) continue;
      }
      const e = this.metadata?.shards[i];
      if (
        e && filter?.sample_idx !== undefined && typeof e.sample_idx_min === "number" &&
        (filter.sample_idx < e.sample_idx_min || filter.sample_idx > e.sample_idx_max)
      ) continue;
      if (filter?.sample_idx !== undefined && isRangeReadable(name)) {
        yield* readShardRanged(this.store, name, filter);
      } else yield* readShard(this.store, name, filter);
    }
  }
}
