/**
 * The extract job's link to GCS: every shard the writer commits is enqueued for a verified upload (bounded
 * concurrency, overlapping the next forwards); each verified upload is recorded in metadata.json
 * (`gcs_path`, `gcs_generation`, `gcs_verified`); at the end, metadata.json itself is published, after the shards
 * it lists. On resume, committed shards that were not verified yet are enqueued again.
 *
 * @example
 * ```ts
 * import { openUploader } from "./upload.ts";
 * const up = await openUploader(config, run, () => writer, undefined, console.error);
 * up.enqueue(entry); await up.finish();
 * ```
 */
import type { ExtractConfig } from "../cli/extract_flags.ts";
import { ActshardError } from "../errors.ts";
import type { ShardEntry } from "../shard/metadata.ts";
import type { ShardWriter } from "../shard/writer.ts";
import { ShardUploader } from "../storage/shard_uploader.ts";
import type { ObjectInfo } from "../storage/types.ts";
import { killPoint } from "./kill_point.ts";
import type { PreparedRun } from "./prepare.ts";

/** An open upload session. */
export interface UploadSession {
  /** gs://bucket/prefix */
  url: string;
  /**
   * Queue a committed shard. With `--delete_local_after_upload` the promise waits until the uploads have
   * caught up (at most {@link CONCURRENCY} shards pending), so only a few shards are ever on disk.
   */
  enqueue(entry: ShardEntry): Promise<void>;
  /** Enqueue committed shards of a previous run that were not verified on GCS. */
  resumePending(shards: ShardEntry[]): void;
  /** Wait for every upload, then publish metadata.json. */
  finish(): Promise<void>;
  abort(): Promise<void>;
}

/** Uploads in flight at once. */
const CONCURRENCY = 2;

/** Start uploading to `--gcs_bucket`/`--gcs_prefix` (plus the worker's sub-prefix). */
export async function openUploader(
  config: ExtractConfig,
  run: Pick<PreparedRun, "outDir" | "workerDir">,
  writer: () => ShardWriter,
  apiEndpoint: string | undefined,
  log: (line: string) => void,
): Promise<UploadSession> {
  if (!config.gcs_bucket) {
    throw new ActshardError("--upload_to_gcs needs --gcs_bucket", { kind: "usage", where: "--gcs_bucket" });
  }
  const p = config.gcs_prefix.replace(/^\/+|\/+$/g, "");
  const prefix = run.workerDir ? (p ? `${p}/${run.workerDir}` : run.workerDir) : p;
  const url = `gs://${config.gcs_bucket}/${prefix}`;
  const uploader: ShardUploader = await ShardUploader.create({
    bucket: config.gcs_bucket,
    prefix,
    localDir: run.outDir,
    concurrency: CONCURRENCY,
    deleteLocalAfterUpload: config.delete_local_after_upload,
    apiEndpoint,
    onVerified: async (entry: ShardEntry, remote: ObjectInfo) => {
      const gcsPath = uploader.gcsPath(entry);
      await writer().updateShard(entry.shard_id, {
        gcs_path: gcsPath,
        gcs_generation: remote.generation,
        gcs_verified: true,
      });
      killPoint("verified", entry.shard_id);
      if (config.verbose) log(`  ✓ Uploaded to GCS: ${gcsPath}`);
    },
    getMetadata: () => writer().metadata,
  });
  return {
    url,
    async enqueue(entry) {
      if (config.verbose) log(`  ⬆ Uploading to ${url}/${entry.filename}...`);
      uploader.enqueue(entry);
      // Shards leave the disk only once uploaded: the free-disk check counted on a few at a time.
      if (config.delete_local_after_upload) await uploader.waitForRoom(CONCURRENCY);
    },
    resumePending(shards) {
      for (const s of shards) if (!s.gcs_verified) uploader.enqueue(s);
    },
    async finish() {
      await uploader.drain();
      await uploader.publishMetadata();
    },
    async abort() {
      await uploader.drain().catch(() => {});
    },
  };
}
