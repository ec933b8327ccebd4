/**
 * `deno task shard --input DIR --output DIR [--shard_size_gb G] [--format F] [--codec C] [--dtype D]`: re-shard
 * or convert an existing dataset as a stream (one record in memory), keeping every record, with fresh metadata.
 *
 * `deno task shard --merge SRC... --output DST`: join the outputs of an N-worker run (`worker-*-of-*`
 * directories, or their parent; local or gs://) into one dataset: a root metadata.json, no shard bytes copied
 * when DST is the workers' parent (see docs/scale-out.md).
 */
import { runCli } from "../lib/cli/run.ts";
import { choiceFlag, GCS_HELP, numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { applyGcsNetworkFlags, GCS_NETWORK_FLAGS } from "../lib/cli/gcs_flags.ts";
import { resolveUserPath } from "../lib/cli/paths.ts";
import { usageError } from "../lib/errors.ts";
import { resolve } from "node:path";
import { checkFormatDtype, FORMATS } from "../lib/shard/formats/mod.ts";
import { type Codec, CODECS } from "../lib/shard/codecs.ts";
import { ACTIVATION_DTYPES } from "../lib/util/dtype.ts";
import { mergeDatasets } from "../lib/pipeline/merge.ts";
import { lockOutputDir } from "../lib/pipeline/lock.ts";
import { reshardDataset } from "../lib/shard/reshard.ts";
import { crc32cEngineNote } from "../lib/util/crc32c_isal.ts";

/** Run shard; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("shard", args, {
    input: {
      type: "string",
      help: "dataset to read (directory or gs://BUCKET/PREFIX)",
      metavar: "DIR",
      path: true,
    },
    output: {
      type: "string",
      help: "directory to write (must not hold a dataset unless --overwrite)",
      metavar: "DIR",
      path: true,
    },
    shard_size_gb: {
      type: "string",
      help: "max uncompressed payload per shard, GB",
      default: "1.0",
      metavar: "G",
    },
    format: { type: "string", help: FORMATS.join(" | "), default: FORMATS[0], metavar: "F" },
    codec: {
      type: "string",
      help: `${CODECS.join(" | ")} (default: gzip, none with --no_compress_shards)`,
      metavar: "C",
    },
    compress_shards: { type: "boolean", help: "gzip shards (seed flag)", default: true, negatable: true },
    dtype: { type: "string", help: "float32 | float16 | bfloat16", default: "float32", metavar: "D" },
    overwrite: { type: "boolean", help: "replace a dataset already in --output" },
    allow_incomplete: {
      type: "boolean",
      help: "convert a run that did not finish (the output then stays status in_progress)",
    },
    merge: {
      type: "string",
      list: true,
      metavar: "SRC",
      help:
        "merge the workers of a --num_workers run (their parent dir/gs:// prefix, or worker dirs) into --output",
    },
    ...GCS_NETWORK_FLAGS,
  }, {
    description: "Re-shard or convert a dataset, or merge the outputs of N workers into one.",
    epilog: GCS_HELP,
  });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  applyGcsNetworkFlags(f.values);
  if (f.values.merge !== undefined) {
    return await merge(String(f.values.merge).split(",").map(resolveUserPath), f.values.output);
  }
  const input = f.values.input as string | undefined;
  const output = f.values.output as string | undefined;
  if (!input || !output) throw usageError("--input and --output are required", "see --help");
  if (output.startsWith("gs://")) {
    // the writer writes files; without this a gs:// --output became a local directory named "gs:"
    throw usageError(
      "a conversion writes to a local directory, not gs://",
      "write it to a local --output, then `deno task upload --output_dir DIR --gcs_bucket B --gcs_prefix P`",
      "--output",
    );
  }
  if (resolve(input) === resolve(output)) {
    throw usageError("--output must differ from --input", undefined, "--output");
  }
  const sizeGb = numberFlag("shard_size_gb", f.values.shard_size_gb, { above: 0 })!;
  const format = choiceFlag("format", f.values.format, FORMATS);
  const codec: Codec = f.values.codec !== undefined
    ? choiceFlag("codec", f.values.codec, CODECS)
    : f.values.compress_shards
    ? "gzip"
    : "none";
  const dtype = choiceFlag("dtype", f.values.dtype, ACTIVATION_DTYPES);
  checkFormatDtype(format, dtype); // e.g. pickle cannot hold bfloat16 (the format registry's rule)
  const r = await reshardDataset({
    input,
    output,
    format,
    codec,
    dtype,
    shardSizeGb: sizeGb,
    overwrite: f.values.overwrite === true,
    allowIncomplete: f.values.allow_incomplete === true,
    lockOutput: (dir) => lockOutputDir(dir),
  });
  console.log(
    `shard: ${r.records} records → ${r.shards} shards in ${output} (${format}, ${codec}, ${dtype})${
      r.incomplete ? "; status in_progress, as its input" : ""
    }`,
  );
  // After the result, not before it: a refused or failed run stays one line.
  const note = crc32cEngineNote();
  if (note) console.error(`shard: note: ${note}`);
  return 0;
}

// --- scale-out: --merge (lib/pipeline/merge.ts) ---

async function merge(sources: string[], output: string | boolean | undefined): Promise<number> {
  if (typeof output !== "string" || !output) {
    throw usageError(
      "--merge needs --output",
      "usually the workers' parent: --merge OUT --output OUT",
      "--output",
    );
  }
  // A local destination is written (root metadata.json, copied workers) under its lock, like any other writer.
  const lock = output.startsWith("gs://") ? null : await lockOutputDir(output);
  let meta;
  try {
    meta = await mergeDatasets(sources, output);
  } finally {
    lock?.release();
  }
  const workers = (meta.workers as unknown[]).length;
  console.log(
    `shard: merged ${workers} workers → ${meta.total_shards} shards, ${meta.total_samples} records in ${output}`,
  );
  return 0;
}

if (import.meta.main) await runCli("shard", main);
