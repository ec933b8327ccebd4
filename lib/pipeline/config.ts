/**
 * The extract job's configuration: what `deno task extract`'s flags (lib/cli/extract_flags.ts) check and build,
 * and what the pipeline runs on. It lives here, below the CLI, so prompts-plan glue and the pipeline need not
 * import the CLI layer.
 *
 * @example
 * ```ts
 * import type { ExtractConfig } from "./config.ts";
 * const show = (c: ExtractConfig) => `${c.model_path}: layers ${c.layers_to_extract.join(",")}`;
 * console.log(show({ model_path: "./tiny", layers_to_extract: [10, 11] } as ExtractConfig)); // ./tiny: layers 10,11
 * ```
 *
 * @module
 */
import type { Codec } from "../shard/codecs.ts";
import type { ShardFormat } from "../shard/formats/mod.ts";

/** A checked extract configuration (snake_case: these are also the run's recorded config). */
export interface ExtractConfig {
  /** Model directory, or hub id resolved via the HF cache. */
  model_path: string;
  /** `--dataset_path`: ARC tasks (dict JSON, a directory of task files, or JSONL). */
  dataset_path: string;
  /** `--output_dir`: where shards and metadata.json go. */
  output_dir: string;
  /** `--n_tasks`: keep the first N tasks (null = all). */
  n_tasks: number | null;
  /** `--batch_size`: prompts per forward pass. */
  batch_size: number;
  /** `--layers_to_extract`: decoder blocks whose output is recorded. */
  layers_to_extract: number[];
  /** `--predictions_per_task`: augmented copies per task. */
  predictions_per_task: number;
  /** `--random_seed`: seeds the augmentations. */
  random_seed: number;
  /** 0 = no truncation. */
  max_seq_length: number;
  /** `--shard_size_gb`: size bound of one shard file. */
  shard_size_gb: number;
  /** `--compress_shards` (false = `--no_compress_shards`: codec none). */
  compress_shards: boolean;
  /** `--upload_to_gcs`: upload each shard as it is committed. */
  upload_to_gcs: boolean;
  /** `--gcs_bucket` (required with `upload_to_gcs`). */
  gcs_bucket: string | null;
  /** `--gcs_prefix`: the object prefix in the bucket. */
  gcs_prefix: string;
  /** `--delete_local_after_upload`: delete a local shard once its upload is verified. */
  delete_local_after_upload: boolean;
  /** `--verbose`: more progress detail and the cause of errors. */
  verbose: boolean;
  /** `--no_data_parallel`: one device only (pjrt). */
  no_data_parallel: boolean;
  /** `--backend`: onnx (CPU), pjrt, or auto (pjrt when an accelerator plugin is found). */
  backend: "onnx" | "pjrt" | "auto";
  /** `--pjrt_plugin`: the PJRT plugin's path (null = search the usual places). */
  pjrt_plugin: string | null;
  /** `--pjrt_option NAME=VALUE ...` joined with commas (parsed by lib/backend/pjrt `parsePjrtOptions`). */
  pjrt_option: string | null;
  /** `--compute_dtype`: arithmetic dtype on the device (pjrt). */
  compute_dtype: "float32" | "bfloat16";
  /** `--format`: shard payload format (a name of the format registry, lib/shard/formats/mod.ts). */
  format: ShardFormat;
  /** `--codec`: shard compression (a name of the codec table, lib/shard/codecs.ts). */
  codec: Codec;
  /** `--dtype`: stored activation dtype. */
  dtype: "float32" | "float16" | "bfloat16";
  /** `--keep_padding`: store padded positions too. */
  keep_padding: boolean;
  /** null = the built-in default format. */
  prompt_format: string | null;
  /** `--augment`: none = one plain prompt per test input. */
  augment: "default" | "none";
  /** `--overwrite`: replace a different dataset at the output instead of refusing. */
  overwrite: boolean;
  /** `--dry_run`: print the plan, load no weights. */
  dry_run: boolean;
  /** `--dump_prompts FILE`: write the prompt plan as JSONL (with `--dry_run`). */
  dump_prompts: string | null;
  /** `--num_workers`: hosts the prompt list is split over (1 = no split). */
  num_workers: number;
  /** `--worker_index`: this host's part, 0-based. */
  worker_index: number;
}

/** Where a worker's objects go under `--gcs_prefix`: `PREFIX`, or `PREFIX/worker-IIIII-of-NNNNN` of a split run. */
export function gcsPrefixFor(c: Pick<ExtractConfig, "gcs_prefix">, run: { workerDir: string }): string {
  const p = c.gcs_prefix.replace(/^\/+|\/+$/g, "");
  return run.workerDir ? (p ? `${p}/${run.workerDir}` : run.workerDir) : p;
}

/** `gs://BUCKET/` + {@link gcsPrefixFor}. */
export function gcsUrlFor(
  c: Pick<ExtractConfig, "gcs_bucket" | "gcs_prefix">,
  run: { workerDir: string },
): string {
  return `gs://${c.gcs_bucket}/${gcsPrefixFor(c, run)}`;
}
