/**
 * `deno task upload --output_dir DIR --gcs_bucket B [--gcs_prefix P]`: upload an existing local dataset to
 * `gs://B/P/` — verified (size + CRC-32C), idempotent (objects already there unchanged are skipped) and
 * resumable (rerun after a kill). metadata.json is uploaded last. See docs/gcs.md.
 */
import { runCli } from "../lib/cli/run.ts";
import { numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { usageError } from "../lib/errors.ts";
import { uploadDataset } from "../lib/storage/shard_uploader.ts";
import { lockOutputDir } from "../lib/pipeline/lock.ts";

/** Run the upload stage; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const r = parseFlags("upload", args, {
    output_dir: { type: "string", help: "the local dataset (holds metadata.json)", metavar: "DIR" },
    gcs_bucket: { type: "string", help: "destination bucket (required)", metavar: "BUCKET" },
    gcs_prefix: { type: "string", default: "activations", help: "object prefix in the bucket", metavar: "P" },
    concurrency: { type: "string", default: "2", help: "uploads in flight", metavar: "N" },
    delete_local_after_upload: {
      type: "boolean",
      default: false,
      help: "remove each local shard once its upload is confirmed (metadata.json is kept)",
    },
  }, { description: "Upload an existing local dataset to GCS (verified, idempotent, resumable)." });
  if (r.help) {
    console.log(r.help);
    return 0;
  }
  const dir = r.values.output_dir as string | undefined;
  if (!dir) throw usageError("--output_dir is required", "give the dataset directory", "--output_dir");
  const bucket = r.values.gcs_bucket as string | undefined;
  if (!bucket) throw usageError("--gcs_bucket is required", "e.g. --gcs_bucket my-bucket", "--gcs_bucket");
  const concurrency = numberFlag("concurrency", r.values.concurrency, { integer: true, min: 1 });
  // The dataset's writer lock, held across the upload, the metadata.json rewrite and any local deletions: an
  // extract still writing there (or another upload) refuses this one instead of losing shards.
  const lock = await lockOutputDir(dir, { create: false });
  const rep = await uploadDataset({
    outputDir: dir,
    bucket,
    prefix: String(r.values.gcs_prefix).replace(/^\/+|\/+$/g, ""),
    concurrency,
    deleteLocalAfterUpload: r.values.delete_local_after_upload === true,
    onProgress: (m) => console.error(m),
  }).finally(() => lock.release());
  console.log(`uploaded ${rep.uploaded} shard(s), ${rep.alreadyThere} already there; ${rep.metadataUrl}`);
  return 0;
}

if (import.meta.main) runCli("upload", main);
