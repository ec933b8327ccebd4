/**
 * The extract job's link to GCS: every shard the writer commits is enqueued for a verified upload (bounded
 * concurrency, overlapping the next forwards); each verified upload is recorded in metadata.json
 * (`gcs_path`, `gcs_generation`, `gcs_verified`); at the end, metadata.json itself is published, after the shards
 * it lists. On resume, committed shards not verified under *this* prefix are enqueued again (a rerun with another
 * --gcs_prefix or bucket uploads them there first; one whose local file is gone is refused, naming where it is).
 * The prefix must hold no other dataset (gcs_prefix_guard.ts) and no other live writer (the uploader's lease);
 * the first upload that fails for good stops the run ({@link UploadSession.check}).
 *
 * @example
 * ```ts
 * import { openUploader } from "./extract_upload.ts";
 * import { prepareRun } from "./prepare.ts";
 * import { ShardWriter } from "../shard/writer.ts";
 * import { startGcsEmulator } from "../storage/gcs_emulator/server.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import type { ExtractConfig } from "../pipeline/config.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 }); // the real vocab: prompts use all of it
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags([
 *   "--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`, "--output_dir", `${dir}/out`,
 *   "--layers_to_extract", "0", "1", "--predictions_per_task", "1",
 * ]) as ExtractConfig;
 * const emu = await startGcsEmulator({ autoCreateBuckets: true }); // stands in for GCS
 * const run = await prepareRun({ ...config, upload_to_gcs: true, gcs_bucket: "my-bucket", gcs_prefix: "arc_v1" });
 * const writer = await ShardWriter.open({
 *   dir: run.outDir, format: "pickle", codec: "gzip", dtype: "float32", shardSizeBytes: 1 << 20, base: {},
 *   onShardCommitted: (entry) => up.enqueue(entry),
 * });
 * const up = await openUploader(run.config, run, () => writer, emu.url, console.error);
 * await writer.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p", activation: new Float32Array(4), shape: [1, 4] }]);
 * await writer.close();
 * await up.finish();
 * await emu.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import { type ExtractConfig, gcsPrefixFor, gcsUrlFor } from "./config.ts";
import { ActshardError } from "../errors.ts";
import type { ShardEntry } from "../shard/metadata.ts";
import type { ShardWriter } from "../shard/writer.ts";
import { shardLocation } from "../shard/metadata.ts";
import { ShardUploader } from "./shard_uploader.ts";
import { retryLine } from "../storage/gcs.ts";
import type { ObjectInfo } from "../storage/types.ts";
import { prefixGuard } from "./gcs_prefix_guard.ts";
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
  /**
   * Enqueue committed shards of a previous run that are not verified under this prefix; refuses (before any
   * upload) a shard verified elsewhere whose local file is gone.
   */
  resumePending(shards: ShardEntry[]): Promise<void>;
  /** Throws once an upload failed for good (or the writer lease was lost): the run stops, resumable. */
  check(): void;
  /** Wait for every upload, then publish metadata.json and release the prefix. */
  finish(): Promise<void>;
  abort(): Promise<void>;
}

async function exists(p: string): Promise<boolean> {
  try {
    return (await Deno.stat(p)).isFile;
  } catch {
    return false;
  }
}

/** Uploads in flight at once. */
const CONCURRENCY = 2;

/**
 * Start uploading to `--gcs_bucket`/`--gcs_prefix` (plus the worker's sub-prefix). `onVerified` hears each
 * shard once its upload is confirmed and recorded in the local metadata.json (the extract's observer hook).
 */
export async function openUploader(
  config: ExtractConfig,
  run: Pick<PreparedRun, "outDir" | "workerDir" | "fingerprint">,
  writer: () => ShardWriter,
  apiEndpoint: string | undefined,
  log: (line: string) => void,
  onVerified?: (entry: ShardEntry) => void,
): Promise<UploadSession> {
  if (!config.gcs_bucket) {
    throw new ActshardError("--upload_to_gcs needs --gcs_bucket", { kind: "usage", where: "--gcs_bucket" });
  }
  const prefix = gcsPrefixFor(config, run);
  const url = gcsUrlFor(config, run);
  const uploader = await createUploader(config, run, prefix, writer, apiEndpoint, log, onVerified);
  return {
    url,
    async enqueue(entry) {
      uploader.throwIfFailed();
      if (config.verbose) log(`  ⬆ Uploading to ${url}/${entry.filename}...`);
      uploader.enqueue(entry);
      // Shards leave the disk only once uploaded: the free-disk check counted on a few at a time.
      if (config.delete_local_after_upload) await uploader.waitForRoom(CONCURRENCY);
    },
    async resumePending(shards) {
      const todo = shards.filter((s) => !(s.gcs_verified && s.gcs_path === uploader.gcsPath(s)));
      for (const s of todo) await refuseIfGone(s, run.outDir, url);
      for (const s of todo) uploader.enqueue(s);
    },
    check() {
      uploader.throwIfFailed();
    },
    async finish() {
      try {
        await uploader.drain();
        await uploader.publishMetadata();
      } finally {
        await uploader.release();
      }
    },
    async abort() {
      await uploader.drain().catch(() => {});
      await uploader.release();
    },
  };
}

/**
 * The shard uploader of an extract run: each verified upload is recorded in metadata.json through the writer
 * (then `onVerified` hears of it), metadata.json comes from the writer, and the prefix is guarded.
 */
async function createUploader(
  config: ExtractConfig,
  run: Pick<PreparedRun, "outDir" | "fingerprint">,
  prefix: string,
  writer: () => ShardWriter,
  apiEndpoint: string | undefined,
  log: (line: string) => void,
  onVerified: ((entry: ShardEntry) => void) | undefined,
): Promise<ShardUploader> {
  const uploader: ShardUploader = await ShardUploader.create({
    bucket: config.gcs_bucket!,
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
      onVerified?.(entry);
      if (config.verbose) log(`  ✓ Uploaded to GCS: ${gcsPath}`);
    },
    getMetadata: () => writer().metadata,
    onRetry: (n) => log(retryLine(n)), // through the run's log: progress says when it waits on retries
    checkRemote: prefixGuard(run.fingerprint as unknown as Record<string, unknown>, {
      overwrite: config.overwrite,
      log,
    }),
  });
  return uploader;
}

/** A committed shard to upload again must still be on disk: refused (before any upload), naming where it went. */
async function refuseIfGone(s: ShardEntry, outDir: string, url: string): Promise<void> {
  if (await exists(join(outDir, shardLocation(s)))) return; // never metadata's local_path
  throw new ActshardError(
    `${shardLocation(s)} is not on disk and not in ${url}` +
      (s.gcs_path ? ` (it was uploaded to ${s.gcs_path}; --gcs_bucket/--gcs_prefix changed)` : ""),
    {
      where: join(outDir, shardLocation(s)),
      kind: "input",
      hint: s.gcs_path
        ? `nothing was published; rerun with the --gcs_bucket/--gcs_prefix of ${s.gcs_path}, ` +
          `or copy its objects into ${url} first`
        : "restore the file, or rerun with --overwrite to extract again",
    },
  );
}
