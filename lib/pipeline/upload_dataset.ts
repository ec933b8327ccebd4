/**
 * The `upload` stage (`deno task upload`, scripts/upload.ts): an existing local dataset to
 * `gs://bucket/prefix/`, through the shard uploader (lib/pipeline/shard_uploader.ts). Shards already under the
 * prefix with the same size and CRC-32C are skipped, the rest are uploaded (resumable, verified), the local
 * metadata.json gets the gcs fields, and metadata.json is uploaded last, listing only shards verified under
 * this prefix. Idempotent; a killed run resumes by rerunning.
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { uploadDataset } from "./upload_dataset.ts";
 * import { readMetadata } from "../shard/metadata.ts";
 * import { ShardWriter } from "../shard/writer.ts";
 * import { LocalStore } from "../storage/local.ts";
 * import { startGcsEmulator } from "../storage/gcs_emulator/server.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "gzip", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p", activation: new Float32Array(4), shape: [1, 4] }]);
 * await w.close();
 * // The built-in emulator stands in for GCS here; without apiEndpoint this is the real bucket (ADC auth).
 * const emu = await startGcsEmulator({ autoCreateBuckets: true });
 * const lines: string[] = [];
 * const report = await uploadDataset({
 *   outputDir: dir, bucket: "my-bucket", prefix: "arc_v1", apiEndpoint: emu.url, onProgress: (m) => lines.push(m),
 * });
 * assert(report.uploaded === 1 && report.alreadyThere === 0 && lines.length === 1);
 * const local = await readMetadata(new LocalStore(dir)); // the local metadata.json now records the upload
 * assert(local.gcs_bucket === "my-bucket" && local.shards.every((s) => s.gcs_verified === true));
 * await emu.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import { ActshardError } from "../errors.ts";
import {
  type DatasetMetadata,
  METADATA_NAME,
  readMetadata,
  type ShardEntry,
  shardLocation,
  writeMetadataAtomic,
} from "../shard/metadata.ts";
import { LocalStore } from "../storage/local.ts";
import type { RetryPolicy } from "../storage/gcs.ts";
import type { ObjectInfo } from "../storage/types.ts";
import { ShardUploader, type ShardUploaderOptions } from "./shard_uploader.ts";
import { isFile } from "../util/is_file.ts";

/** What {@link uploadDataset} did. */
export interface UploadReport {
  /** Shards sent in this call. */
  uploaded: number;
  /** Shards already under the prefix with the same size and CRC-32C (skipped). */
  alreadyThere: number;
  /** `gs://bucket/prefix/metadata.json`. */
  metadataUrl: string;
}

/** Options of {@link uploadDataset}. */
export interface UploadDatasetOptions {
  /** The local dataset directory (holding metadata.json). */
  outputDir: string;
  /** Destination bucket. */
  bucket: string;
  /** Destination prefix ("" = the bucket's root). */
  prefix: string;
  /** Shards uploaded at once (default 2). */
  concurrency?: number;
  /** Delete each local shard once metadata.json on GCS lists it (default false). */
  deleteLocalAfterUpload?: boolean;
  /** GCS endpoint (default `STORAGE_EMULATOR_HOST`, else Google's). */
  apiEndpoint?: string;
  /** Backoff and deadline of each operation (default: 600 s deadline, backoff to 64 s). */
  retry?: RetryPolicy;
  /** Resumable upload chunk size in bytes (a multiple of 256 KiB; default 16 MiB). */
  chunkSize?: number;
  /** Abort a request that makes no progress for this long (default 60 000 ms). */
  stallTimeoutMs?: number;
  /** Hears one line per step ("3 shard(s) already in …"). */
  onProgress?: (msg: string) => void;
  /**
   * Given the local dataset: refuse (or clear) another dataset at the prefix (lib/pipeline/gcs_prefix_guard.ts).
   *
   * @ignore
   */
  guard?: (local: DatasetMetadata) => ShardUploaderOptions["checkRemote"];
}

/**
 * Upload an existing local dataset (the `upload` stage): shards whose object already exists under this prefix
 * with the same size and CRC-32C are skipped, the rest are uploaded (resumable, verified), the local
 * metadata.json gets the gcs fields, and metadata.json is uploaded last, listing only shards verified under
 * this prefix. A shard that is neither on disk (deleted after an upload elsewhere) nor under this prefix is
 * refused before anything is sent, naming where it went. Idempotent; a killed run resumes by rerunning.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { uploadDataset } from "./upload_dataset.ts";
 * import { ShardWriter } from "../shard/writer.ts";
 * import { startGcsEmulator } from "../storage/gcs_emulator/server.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "gzip", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p", activation: new Float32Array(4), shape: [1, 4] }]);
 * await w.close();
 * // The built-in emulator stands in for GCS here; without apiEndpoint this is the real bucket (ADC auth).
 * const emu = await startGcsEmulator({ autoCreateBuckets: true });
 * const report = await uploadDataset({ outputDir: dir, bucket: "my-bucket", prefix: "arc_v1", apiEndpoint: emu.url });
 * assert(report.uploaded === 1 && report.metadataUrl === "gs://my-bucket/arc_v1/metadata.json");
 * assert((await uploadDataset({ outputDir: dir, bucket: "my-bucket", prefix: "arc_v1", apiEndpoint: emu.url })).alreadyThere === 1);
 * await emu.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function uploadDataset(opts: UploadDatasetOptions): Promise<UploadReport> {
  const meta = await readMetadata(new LocalStore(opts.outputDir));
  const up = await ShardUploader.create({
    ...opts,
    // Local copies go only after metadata.json (published once, last) lists them: see below.
    deleteLocalAfterUpload: false,
    localDir: opts.outputDir,
    onVerified: (e, remote) => {
      markVerified(e, up.gcsPath(e), remote);
      return Promise.resolve();
    },
    getMetadata: () => meta,
    publishEach: false, // metadata.json goes up once, last
    checkRemote: opts.guard?.(meta),
  });
  try {
    const remote = new Map((await up.store.list()).map((o) => [o.name, o]));
    const there = (e: ShardEntry) => {
      const r = remote.get(shardLocation(e));
      return r && r.size === e.bytes && r.crc32c === (e.crc32c >>> 0) ? r : undefined;
    };
    await refuseMissingShards(meta, there, opts.outputDir, up.store.url);
    const { uploaded, already } = enqueueAbsent(meta, there, up);
    opts.onProgress?.(`${already} shard(s) already in ${up.store.url}, uploading ${uploaded}`);
    try {
      await up.drain();
    } finally {
      meta.upload_to_gcs = true;
      meta.gcs_bucket = opts.bucket;
      meta.gcs_prefix = opts.prefix;
      await writeMetadataAtomic(opts.outputDir, meta);
    }
    await up.publishMetadata();
    if (opts.deleteLocalAfterUpload) {
      for (const e of meta.shards) {
        if (e.gcs_verified) await Deno.remove(join(opts.outputDir, shardLocation(e))).catch(() => {});
      }
    }
    return { uploaded, alreadyThere: already, metadataUrl: up.store.objectUrl(METADATA_NAME) };
  } finally {
    await up.release();
  }
}

/** Record in a shard entry that its object at `gcsPath` is confirmed (generation `remote.generation`). */
function markVerified(e: ShardEntry, gcsPath: string, remote: ObjectInfo): void {
  e.gcs_path = gcsPath;
  e.gcs_generation = remote.generation;
  e.gcs_verified = true;
}

/** Refuse, before anything is sent, shards neither on disk nor (same size and CRC-32C) under the prefix. */
async function refuseMissingShards(
  meta: DatasetMetadata,
  there: (e: ShardEntry) => ObjectInfo | undefined,
  outputDir: string,
  url: string,
): Promise<void> {
  const missing: ShardEntry[] = [];
  for (const e of meta.shards) {
    if (!there(e) && !(await isFile(join(outputDir, shardLocation(e))))) {
      missing.push(e);
    }
  }
  if (missing.length === 0) return;
  const e = missing[0];
  const elsewhere = e.gcs_verified && e.gcs_path ? ` (uploaded to ${e.gcs_path})` : "";
  throw new ActshardError(
    `shard file to upload is missing: ${missing.length} shard(s) are neither on disk nor in ${url}: ${
      shardLocation(e)
    }${elsewhere}` +
      (missing.length > 1 ? ` and ${missing.length - 1} more` : ""),
    {
      where: join(outputDir, shardLocation(e)),
      kind: "input",
      hint: elsewhere
        ? `nothing was uploaded; upload to where they are (--gcs_bucket/--gcs_prefix of ${e.gcs_path}), ` +
          `or copy those objects into ${url} first`
        : "nothing was uploaded; restore the files or rerun the extraction",
    },
  );
}

/** Shards already under the prefix count as verified there; the rest are queued for upload. */
function enqueueAbsent(
  meta: DatasetMetadata,
  there: (e: ShardEntry) => ObjectInfo | undefined,
  up: ShardUploader,
): { uploaded: number; already: number } {
  let uploaded = 0, already = 0;
  for (const e of meta.shards) {
    const r = there(e);
    if (r) {
      markVerified(e, up.gcsPath(e), r);
      already++;
      continue;
    }
    e.gcs_verified = false;
    up.enqueue(e);
    uploaded++;
  }
  return { uploaded, already };
}
