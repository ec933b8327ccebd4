/**
 * The flags of `deno task extract`: the seed's (`extract_activations_arc.py`) with its names and defaults, plus
 * actshard's additions (backend, format, codec, dtype, prompt format, augmentation, resume, dry run, scale-out).
 * {@link parseExtractFlags} turns argv into a checked {@link ExtractConfig}; any bad value is a usage error
 * (exit 2) naming the flag.
 *
 * @example
 * ```ts
 * import { parseExtractFlags } from "./extract_flags.ts";
 * const c = parseExtractFlags(["--layers_to_extract", "20", "21", "--no_compress_shards"]);
 * if (!("help" in c)) console.log(c.layers_to_extract, c.codec); // [20, 21] "none"
 * ```
 *
 * @module
 */
import { usageError } from "../errors.ts";
import { ACTIVATION_DTYPES } from "../util/dtype.ts";
import type { ExtractConfig } from "../pipeline/config.ts";
import { CODECS } from "../shard/codecs.ts";
import { checkFormatDtype, dtypeRulesNote, FORMATS } from "../shard/formats/mod.ts";
import { resolveWorker } from "../pipeline/work_split.ts";
import { choiceFlag, type FlagSpec, GCS_HELP, numberFlag, parseFlags } from "./flags.ts";
import { applyGcsNetworkFlags, GCS_NETWORK_FLAGS } from "./gcs_flags.ts";

export type { ExtractConfig } from "../pipeline/config.ts";

/** Default layers: 10..23 (the seed's, for Qwen2.5-0.5B's 24 blocks). */
export const DEFAULT_LAYERS = "10-23";

/** Flag specs, in --help order. */
export const EXTRACT_FLAGS: Record<string, FlagSpec> = {
  model_path: {
    type: "string",
    default: "KathirKs/qwen-2.5-0.5b",
    metavar: "DIR|ID",
    path: "or-id",
    help: "model directory, or a Hugging Face id resolved via the local HF cache",
  },
  dataset_path: {
    type: "string",
    default: "test_data_small.json",
    metavar: "PATH",
    path: true,
    help: "ARC tasks: {id: task} JSON, a directory of task files, or JSONL",
  },
  output_dir: {
    type: "string",
    default: "./activations_arc",
    metavar: "DIR",
    path: true,
    help: "local output directory",
  },
  n_tasks: { type: "string", metavar: "N", help: "process only the first N tasks (0 = all)" },
  batch_size: { type: "string", default: "8", metavar: "N", help: "prompts per forward batch (per device)" },
  layers_to_extract: {
    type: "string",
    list: true,
    default: DEFAULT_LAYERS,
    metavar: "L",
    help: 'layers: "20 21 22", "20,21" or "10-23"',
  },
  predictions_per_task: {
    type: "string",
    default: "8",
    metavar: "N",
    help: "augmented prompts per test input (cycling the 8 flips/rotations)",
  },
  random_seed: { type: "string", default: "42", metavar: "N", help: "seed of the augmentations" },
  max_seq_length: {
    type: "string",
    default: "2048",
    metavar: "N",
    help: "truncate prompts to N tokens (right; 0 = no truncation)",
  },
  shard_size_gb: { type: "string", default: "1.0", metavar: "GB", help: "target shard size" },
  compress_shards: { type: "boolean", negatable: true, default: true, help: "compress shards (gzip)" },
  upload_to_gcs: { type: "boolean", help: "upload shards and metadata.json to GCS" },
  gcs_bucket: { type: "string", metavar: "NAME", help: "GCS bucket (required with --upload_to_gcs)" },
  gcs_prefix: {
    type: "string",
    default: "activations",
    metavar: "PREFIX",
    help: "object prefix in the bucket",
  },
  delete_local_after_upload: { type: "boolean", help: "delete local shards once verified in GCS" },
  verbose: { type: "boolean", help: "print detailed progress" },
  no_data_parallel: { type: "boolean", help: "use one device only (pjrt)" },
  use_data_parallel: {
    type: "boolean",
    help: "data parallel over all devices (pjrt): the default, accepted as the seed's guide spells it",
  },
  backend: { type: "string", default: "onnx", metavar: "onnx|pjrt|auto", help: "forward-pass backend" },
  pjrt_plugin: {
    type: "string",
    metavar: "PATH",
    path: true,
    help: "PJRT plugin .so (else $PJRT_PLUGIN_LIBRARY_PATH)",
  },
  pjrt_option: {
    type: "string",
    list: true,
    metavar: "NAME=VALUE",
    help: "PJRT client create options, e.g. cpu_device_count=4 (NAME:TYPE=VALUE for unknown names)",
  },
  compute_dtype: {
    type: "string",
    default: "float32",
    metavar: "float32|bfloat16",
    help: "compute precision",
  },
  format: { type: "string", default: FORMATS[0], metavar: FORMATS.join("|"), help: "shard format" },
  codec: {
    type: "string",
    metavar: CODECS.join("|"),
    help: "shard compression (default: gzip, or none with --no_compress_shards)",
  },
  dtype: {
    type: "string",
    default: "float32",
    metavar: ACTIVATION_DTYPES.join("|"),
    help: `stored activation dtype${dtypeRulesNote(ACTIVATION_DTYPES)}`,
  },
  keep_padding: { type: "boolean", help: "store padded batch length like the seed (default: real tokens)" },
  prompt_format: {
    type: "string",
    metavar: "PATH",
    path: true,
    help: "prompt format JSON (default: built-in seed format)",
  },
  augment: { type: "string", default: "default", metavar: "default|none", help: "augmentation of prompts" },
  overwrite: { type: "boolean", help: "replace an existing output made with a different config" },
  dry_run: { type: "boolean", help: "build prompts and token ids only; load no weights" },
  dump_prompts: {
    type: "string",
    metavar: "FILE",
    path: true,
    help: "with --dry_run: write every prompt and its token ids as JSONL",
  },
  num_workers: {
    type: "string",
    metavar: "N",
    help: "workers splitting the run (default $ACTSHARD_NUM_WORKERS or 1)",
  },
  worker_index: { type: "string", metavar: "I", help: "this worker (default $JOB_COMPLETION_INDEX or 0)" },
  ...GCS_NETWORK_FLAGS,
};

const DESCRIPTION =
  "Extract a Qwen2 model's residual-stream activations over ARC tasks into compressed shards " +
  "(local and/or GCS). See docs/prompts.md for prompts and tokens.";

/** Upper bound on a layer index accepted before the model is known (real models have tens of blocks). */
export const MAX_LAYER_INDEX = 10_000;

/** Parse `--layers_to_extract` values: "20,21", "10-23", or a mix ("10-12,20"). Sorted, without duplicates. */
export function parseLayers(raw: string): number[] {
  const out = new Set<number>();
  for (const part of raw.split(/[,\s]+/).filter(Boolean)) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) {
      throw usageError(
        `--layers_to_extract: "${part}" is not a layer index or range`,
        'use e.g. "20 21", "20,21" or "10-23"',
        "--layers_to_extract",
      );
    }
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) {
      throw usageError(`--layers_to_extract: empty range "${part}"`, undefined, "--layers_to_extract");
    }
    // No model has anywhere near this many blocks; refuse before expanding the range (a typo like
    // "0-999999999" would otherwise allocate for minutes instead of failing with one line).
    if (b >= MAX_LAYER_INDEX) {
      throw usageError(
        `--layers_to_extract: layer ${b} is out of range`,
        `layer indices are below ${MAX_LAYER_INDEX}; the model's own count is checked when it loads`,
        "--layers_to_extract",
      );
    }
    for (let i = a; i <= b; i++) out.add(i);
  }
  if (out.size === 0) throw usageError("--layers_to_extract needs at least one layer");
  return [...out].sort((x, y) => x - y);
}

function str(v: string | boolean | undefined): string | null {
  return typeof v === "string" && v !== "" ? v : null;
}

/**
 * Parse extract's argv. Returns `{help}` for --help; throws a usage error (exit 2) on any bad flag.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { parseExtractFlags } from "./extract_flags.ts";
 * const config = parseExtractFlags(["--model_path", "./tiny", "--layers_to_extract", "0", "1", "--codec", "zstd"]);
 * assert(!("help" in config) && config.codec === "zstd" && config.batch_size === 8);
 * assert("help" in parseExtractFlags(["--help"]));
 * try {
 *   parseExtractFlags(["--layer_to_extract", "3"]);
 * } catch (e) {
 *   console.log(String(e)); // unknown flag --layer_to_extract: did you mean --layers_to_extract? (exit 2)
 * }
 * ```
 */
export function parseExtractFlags(args: string[]): ExtractConfig | { help: string } {
  const r = parseFlags("extract", args, EXTRACT_FLAGS, { description: DESCRIPTION, epilog: GCS_HELP });
  if (r.help) return { help: r.help };
  const v = r.values;
  applyGcsNetworkFlags(v); // process-wide, for every GCS connection of the run (lib/cli/gcs_flags.ts)
  const int = (name: string, min: number, raw: string | boolean | undefined = v[name]) =>
    numberFlag(name, raw, { integer: true, min });
  const nTasks = int("n_tasks", 0) ?? 0;
  const compress = v.compress_shards as boolean;
  const format = choiceFlag("format", v.format, FORMATS);
  const dtype = choiceFlag("dtype", v.dtype, ACTIVATION_DTYPES);
  checkFormatDtype(format, dtype); // e.g. pickle cannot hold bfloat16 (the format registry's rule)
  const codec = v.codec === undefined ? (compress ? "gzip" : "none") : choiceFlag("codec", v.codec, CODECS);
  const shardGb = numberFlag("shard_size_gb", v.shard_size_gb, { above: 0 }) as number;
  if (v.dump_prompts !== undefined && !v.dry_run) {
    // A real run writes no prompt dump: say so instead of ignoring the flag.
    throw usageError(
      "--dump_prompts only works with --dry_run",
      "add --dry_run to write the prompts and token ids (no weights are loaded), or drop --dump_prompts",
      "--dump_prompts",
    );
  }
  if (v.use_data_parallel && v.no_data_parallel) {
    throw usageError("--use_data_parallel and --no_data_parallel contradict each other", "give one of them");
  }
  if ((v.output_dir as string).startsWith("gs://")) {
    // it would become a local directory named "gs:"
    throw usageError(
      "--output_dir is a local directory, not gs://",
      "keep a local --output_dir and add --upload_to_gcs --gcs_bucket B --gcs_prefix P",
      "--output_dir",
    );
  }
  const upload = v.upload_to_gcs as boolean;
  const bucket = str(v.gcs_bucket);
  if (upload && bucket === null) {
    throw usageError("--upload_to_gcs needs --gcs_bucket", "name the bucket, e.g. --gcs_bucket my-bucket");
  }
  // One rule for worker identity everywhere (flags override $ACTSHARD_NUM_WORKERS / $JOB_COMPLETION_INDEX).
  const { numWorkers, workerIndex } = resolveWorker({
    num_workers: int("num_workers", 1, v.num_workers),
    worker_index: int("worker_index", 0, v.worker_index),
  });
  const randomSeed = numberFlag("random_seed", v.random_seed, { integer: true }) as number;
  return {
    model_path: v.model_path as string,
    dataset_path: v.dataset_path as string,
    output_dir: v.output_dir as string,
    n_tasks: nTasks > 0 ? nTasks : null,
    batch_size: int("batch_size", 1) as number,
    layers_to_extract: parseLayers(v.layers_to_extract as string),
    predictions_per_task: int("predictions_per_task", 1) as number,
    random_seed: randomSeed,
    max_seq_length: int("max_seq_length", 0) as number,
    shard_size_gb: shardGb,
    compress_shards: compress,
    upload_to_gcs: upload,
    gcs_bucket: bucket,
    gcs_prefix: (v.gcs_prefix as string).replace(/^\/+|\/+$/g, ""),
    delete_local_after_upload: v.delete_local_after_upload as boolean,
    verbose: v.verbose as boolean,
    no_data_parallel: v.no_data_parallel as boolean,
    backend: choiceFlag("backend", v.backend, ["onnx", "pjrt", "auto"] as const),
    pjrt_plugin: str(v.pjrt_plugin),
    pjrt_option: str(v.pjrt_option),
    compute_dtype: choiceFlag("compute_dtype", v.compute_dtype, ["float32", "bfloat16"] as const),
    format,
    codec,
    dtype,
    keep_padding: v.keep_padding as boolean,
    prompt_format: str(v.prompt_format),
    augment: choiceFlag("augment", v.augment, ["default", "none"] as const),
    overwrite: v.overwrite as boolean,
    dry_run: v.dry_run as boolean,
    dump_prompts: str(v.dump_prompts),
    num_workers: numWorkers,
    worker_index: workerIndex,
  };
}
