/**
 * `deno task upload --output_dir DIR --gcs_bucket B [--gcs_prefix P]`: upload an existing local dataset to
 * `gs://B/P/` — verified (size + CRC-32C), idempotent (objects already there unchanged are skipped) and
 * resumable (rerun after a kill). metadata.json is uploaded last. A prefix holding another dataset is refused
 * (`--overwrite` replaces it); `--clear_prefix` deletes the dataset at a prefix. See docs/gcs.md.
 */
import { runCli } from "../lib/cli/run.ts";
import { GCS_HELP, numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { applyGcsNetworkFlags, GCS_NETWORK_FLAGS } from "../lib/cli/gcs_flags.ts";
import { usageError } from "../lib/errors.ts";
import { uploadDataset } from "../lib/pipeline/upload_dataset.ts";
import { clearPrefix, prefixGuard } from "../lib/pipeline/gcs_prefix_guard.ts";
import { lockOutputDir } from "../lib/pipeline/lock.ts";

/** Run the upload stage; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const r = parseFlags("upload", args, {
    output_dir: {
      type: "string",
      help: "the local dataset (holds metadata.json)",
      metavar: "DIR",
      path: true,
    },
    gcs_bucket: { type: "string", help: "destination bucket (required)", metavar: "BUCKET" },
    gcs_prefix: { type: "string", default: "activations", help: "object prefix in the bucket", metavar: "P" },
    concurrency: { type: "string", default: "2", help: "uploads in flight", metavar: "N" },
    delete_local_after_upload: {
      type: "boolean",
      default: false,
      help: "remove each local shard once its upload is confirmed (metadata.json is kept)",
    },
    overwrite: {
      type: "boolean",
      default: false,
      help: "replace another dataset found at the prefix (its objects are deleted first)",
    },
    clear_prefix: {
      type: "boolean",
      default: false,
      help:
        "delete the dataset at the prefix (metadata.json first, then its shards) and exit; no --output_dir",
    },
    ...GCS_NETWORK_FLAGS,
  }, {
    description: "Upload an existing local dataset to GCS (verified, idempotent, resumable).",
    epilog: GCS_HELP,
  });
  if (r.help) {
    console.log(r.help);
    return 0;
  }
  applyGcsNetworkFlags(r.values);
  const bucket = r.values.gcs_bucket as string | undefined;
  if (!bucket) throw usageError("--gcs_bucket is required", "e.g. --gcs_bucket my-bucket", "--gcs_bucket");
  const prefix = String(r.values.gcs_prefix).replace(/^\/+|\/+$/g, "");
  if (r.values.clear_prefix) {
    const rep = await clearPrefix(bucket, prefix);
    console.log(
      `cleared gs://${bucket}/${prefix}: deleted ${rep.deleted} object(s)` +
        (rep.left.length ? `; left ${rep.left.length} that are not a dataset's (e.g. ${rep.left[0]})` : ""),
    );
    return 0;
  }
  const dir = r.values.output_dir as string | undefined;
  if (!dir) throw usageError("--output_dir is required", "give the dataset directory", "--output_dir");
  const concurrency = numberFlag("concurrency", r.values.concurrency, { integer: true, min: 1 });
  // The dataset's writer lock, held across the upload, the metadata.json rewrite and any local deletions: an
  // extract still writing there (or another upload) refuses this one instead of losing shards.
  const lock = await lockOutputDir(dir, { create: false });
  const rep = await uploadDataset({
    outputDir: dir,
    bucket,
    prefix,
    concurrency,
    deleteLocalAfterUpload: r.values.delete_local_after_upload === true,
    onProgress: (m) => console.error(m),
    guard: (local) =>
      prefixGuard(local.config as Record<string, unknown> | undefined, {
        overwrite: r.values.overwrite === true,
        log: (l) => console.error(l),
      }),
  }).finally(() => lock.release());
  console.log(`uploaded ${rep.uploaded} shard(s), ${rep.alreadyThere} already there; ${rep.metadataUrl}`);
  return 0;
}

if (import.meta.main) runCli("upload", main);
