/**
 * The extract job's configuration: what `deno task extract`'s flags (lib/cli/extract_flags.ts) check and build,
 * and what the pipeline runs on. It lives here, below the CLI, so prompts-plan glue and the pipeline need not
 * import the CLI layer.
 *
 * @example
 * ```ts
 * import type { ExtractConfig } from "./config.ts";
 * const show = (c: ExtractConfig) => `${c.model_path}: layers ${c.layers_to_extract.join(",")}`;
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
  dataset_path: string;
  output_dir: string;
  n_tasks: number | null;
  batch_size: number;
  layers_to_extract: number[];
  predictions_per_task: number;
  random_seed: number;
  /** 0 = no truncation. */
  max_seq_length: number;
  shard_size_gb: number;
  compress_shards: boolean;
  upload_to_gcs: boolean;
  gcs_bucket: string | null;
  gcs_prefix: string;
  delete_local_after_upload: boolean;
  verbose: boolean;
  no_data_parallel: boolean;
  backend: "onnx" | "pjrt" | "auto";
  pjrt_plugin: string | null;
  /** `--pjrt_option NAME=VALUE ...` joined with commas (parsed by lib/backend/pjrt `parsePjrtOptions`). */
  pjrt_option: string | null;
  compute_dtype: "float32" | "bfloat16";
  /** A format of the registry (lib/shard/formats/mod.ts). */
  format: ShardFormat;
  /** A codec of the codec table (lib/shard/codecs.ts). */
  codec: Codec;
  dtype: "float32" | "float16" | "bfloat16";
  keep_padding: boolean;
  /** null = the built-in default format. */
  prompt_format: string | null;
  augment: "default" | "none";
  overwrite: boolean;
  dry_run: boolean;
  dump_prompts: string | null;
  num_workers: number;
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
