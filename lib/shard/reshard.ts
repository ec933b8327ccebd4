/**
 * Re-shard or convert a dataset as a stream (`deno task shard --input --output`): every record of a dataset
 * (a directory, `gs://bucket/prefix`, or a merged multi-worker root) is written to a new local dataset with
 * another format, codec, dtype or shard size, one prompt's records in memory at a time, with fresh metadata.
 * The output carries the input's completeness: a conversion of an interrupted run is not a finished dataset
 * (refused unless `allowIncomplete`; then the output stays `in_progress` and says what it came from).
 *
 * @example
 * ```ts
 * import { reshardDataset } from "./reshard.ts";
 * import { ShardWriter } from "./writer.ts";
 * const input = await Deno.makeTempDir(), output = await Deno.makeTempDir();
 * const w = await ShardWriter.open({
 *   dir: input,
 *   format: "pickle",
 *   codec: "gzip",
 *   dtype: "float32",
 *   shardSizeBytes: 1 << 20,
 *   base: { shard_size_gb: 1 / 1024 },
 * });
 * const activation = new Float32Array(2 * 4);
 * await w.write([{ task_id: "t0", sample_idx: 0, layer: 3, activation, shape: [2, 4], prompt: "p" }]);
 * await w.close();
 * const r = await reshardDataset({
 *   input,
 *   output,
 *   format: "safetensors",
 *   codec: "none",
 *   dtype: "float16",
 *   shardSizeGb: 1,
 * });
 * console.log(`${r.records} records → ${r.shards} shards in ${r.output}`); // 1 records → 1 shards in …
 * await Deno.remove(input, { recursive: true });
 * await Deno.remove(output, { recursive: true });
 * ```
 *
 * @module
 */
import { ActshardError } from "../errors.ts";
import type { ActivationDType, ActivationRecord } from "../types.ts";
import type { Codec } from "./codecs.ts";
import type { DatasetMetadata } from "./metadata.ts";
import { Dataset, type ReadRecord } from "./reader.ts";
import { type ShardFormat, ShardWriter } from "./writer.ts";

/** What to convert into what ({@link reshardDataset}). */
export interface ReshardOptions {
  /** The dataset to read: a directory, `gs://bucket/prefix`, or a merged root. */
  input: string;
  /** The local directory to write (not gs://: upload it afterwards); must differ from `input`. */
  output: string;
  /** The output's shard format. */
  format: ShardFormat;
  /** The output's codec. */
  codec: Codec;
  /** The output's stored dtype (pickle cannot hold bfloat16). */
  dtype: ActivationDType;
  /** Bound on each shard's uncompressed payload, GB (GiB: 2^30 bytes). */
  shardSizeGb: number;
  /** Replace a dataset already in `output` (default: refused). */
  overwrite?: boolean;
  /** Convert a run that did not finish (the output then stays `in_progress`). */
  allowIncomplete?: boolean;
  /**
   * Take the output's one-writer lock once the input is checked, before anything is written (the CLI passes
   * lib/pipeline/lock.ts's `lockOutputDir`); released when the conversion ends.
   */
  lockOutput?: (dir: string) => Promise<{ release(): void }>;
}

/** What {@link reshardDataset} wrote. */
export interface ReshardResult {
  /** The output directory. */
  output: string;
  /** Records written (all of the input's). */
  records: number;
  /** Shards written. */
  shards: number;
  /** The input was not a finished run (`allowIncomplete`): the output's status stays `in_progress`. */
  incomplete: boolean;
  /** The output's metadata.json. */
  metadata: DatasetMetadata;
}

/**
 * Convert `input` into `output` as a stream; throws an ActshardError (one line at the CLI) for an unfinished
 * input without `allowIncomplete`, or an output that holds a dataset without `overwrite`. A failed conversion
 * leaves no partial shard (the open one is removed).
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { reshardDataset } from "./reshard.ts";
 * import { ShardWriter } from "./writer.ts";
 * const input = await Deno.makeTempDir(), output = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir: input, format: "pickle", codec: "gzip", dtype: "float32",
 *   shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t0", sample_idx: 0, layer: 3, activation: new Float32Array(8), shape: [2, 4],
 *   prompt: "p" }]);
 * await w.close();
 * const r = await reshardDataset({ input, output, format: "safetensors", codec: "zstd", dtype: "bfloat16",
 *   shardSizeGb: 1 });
 * assert(r.records === 1 && r.shards === 1 && !r.incomplete);
 * await Deno.remove(input, { recursive: true });
 * await Deno.remove(output, { recursive: true });
 * ```
 */
export async function reshardDataset(o: ReshardOptions): Promise<ReshardResult> {
  const src = await Dataset.open(o.input);
  const unfinished = incompleteBecause(src);
  if (unfinished && !o.allowIncomplete) {
    throw new ActshardError(`--input is not a finished run (${unfinished})`, {
      where: o.input,
      kind: "input",
      hint:
        "finish it first (rerun the same extract), or pass --allow_incomplete (the output then says in_progress)",
    });
  }
  const lock = await o.lockOutput?.(o.output);
  try {
    await clearOutputMetadata(o.output, o.overwrite === true);
    return await copyRecords(src, o, unfinished !== null);
  } finally {
    lock?.release();
  }
}

/** Why `src` is not a finished run, or null when it is (its metadata says complete, or it is the seed's). */
function incompleteBecause(src: Dataset): string | null {
  const m = src.metadata;
  if (!m) return "no metadata.json";
  if (m.status !== undefined && m.status !== "complete") return `status ${m.status}`;
  return null;
}

/** Refuse an output that holds a dataset, or (`overwrite`) drop its metadata.json so the writer starts afresh. */
async function clearOutputMetadata(output: string, overwrite: boolean): Promise<void> {
  try {
    await Deno.stat(`${output}/metadata.json`);
    if (!overwrite) {
      throw new ActshardError("output already holds a dataset", {
        where: output,
        kind: "input",
        hint: "choose another --output or add --overwrite",
      });
    }
    await Deno.remove(`${output}/metadata.json`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Stream every record of `src` into a new writer, a prompt's records together; the input's status carried. */
async function copyRecords(src: Dataset, o: ReshardOptions, incomplete: boolean): Promise<ReshardResult> {
  // The first record is asked for before the writer opens, so the input's read Worker starts while the
  // writer's Workers do (each takes tens of ms to load).
  const input = src.records()[Symbol.asyncIterator]();
  const first = input.next();
  first.catch(() => {}); // awaited below; a failure before then must not go unhandled
  let w: ShardWriter;
  try {
    w = await openWriter(src, o, incomplete);
  } catch (e) {
    await input.return?.();
    throw e;
  }
  let group: ActivationRecord[] = [];
  let records = 0;
  try {
    // Consecutive records of the same prompt stay together (one shard unless a prompt alone is too big).
    for (let n = await first; !n.done; n = await input.next()) {
      const r = n.value;
      if (group.length && (group[0].sample_idx !== r.sample_idx || group[0].task_id !== r.task_id)) {
        await w.write(group, { handOver: true }); // read for this alone: no copy of its bytes
        group = [];
      }
      group.push(withoutReadFields(r));
      records++;
    }
    if (group.length) await w.write(group, { handOver: true });
  } catch (e) {
    await w.abort();
    await input.return?.();
    throw e;
  }
  const metadata = await w.close({ incomplete });
  return { output: o.output, records, shards: metadata.total_shards, incomplete, metadata };
}

/** The output's writer: fresh metadata that carries the input's config and says where it came from. */
function openWriter(src: Dataset, o: ReshardOptions, incomplete: boolean): Promise<ShardWriter> {
  const { format, codec, dtype } = o;
  return ShardWriter.open({
    dir: o.output,
    format,
    codec,
    dtype,
    shardSizeBytes: Math.floor(o.shardSizeGb * 2 ** 30),
    base: {
      shard_size_gb: o.shardSizeGb,
      upload_to_gcs: false,
      gcs_bucket: null,
      gcs_prefix: null,
      config: {
        ...(src.metadata?.config ?? {}),
        resharded_from: src.store.url,
        ...(incomplete ? { resharded_from_status: src.metadata?.status ?? "unknown" } : {}),
        format,
        codec,
        dtype,
      },
    },
  });
}

/** A read record as the writer takes it (without the reader's `dtype` and `shard`). */
function withoutReadFields(r: ReadRecord): ActivationRecord {
  const { dtype: _d, shard: _s, ...rec } = r;
  return rec;
}
