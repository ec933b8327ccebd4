/**
 * Background upload of finished shards to `gs://bucket/prefix/`, as the extract pipeline (and `upload`) uses
 * it: bounded concurrency, each shard confirmed by the remote size + CRC-32C before it counts, then
 * `onVerified` (the caller records gcs_path/generation/verified in its metadata), then metadata.json is
 * published listing only verified shards, then — if asked — the local shard file is removed. The local
 * metadata.json is never touched here. A failure that survives the retries keeps the local shard and makes
 * {@link ShardUploader.drain} reject with a clear error.
 *
 * @example
 * ```ts
 * import { ShardUploader } from "./shard_uploader.ts";
 * const up = await ShardUploader.create({
 *   bucket: "b", prefix: "activations", localDir: "out",
 *   onVerified: async (e, remote) => { writer.updateShard(e.shard_id, { gcs_verified: true }); },
 *   getMetadata: () => writer.metadata,
 * });
 * up.enqueue(entry);        // as each shard is closed
 * await up.drain();         // at the end: throws if any upload failed
 * await up.publishMetadata();
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
import { LocalStore } from "./local.ts";
import { GcsStore, type RetryPolicy } from "./gcs.ts";
import type { ObjectInfo } from "./types.ts";

/** Options for {@link ShardUploader.create}. */
export interface ShardUploaderOptions {
  bucket: string;
  prefix: string;
  /** The local dataset root (shard paths are relative to it; `local_path` is never used). */
  localDir: string;
  /** Uploads in flight at once (default 2). */
  concurrency?: number;
  deleteLocalAfterUpload?: boolean;
  apiEndpoint?: string;
  /** Called once a shard's remote size + CRC-32C are confirmed, before metadata is published. */
  onVerified: (entry: ShardEntry, remote: ObjectInfo) => Promise<void>;
  /** The current metadata (status, shards with their gcs_verified flags). */
  getMetadata: () => DatasetMetadata;
  /** Retry policy and chunk size for the uploads (tests shorten these). */
  retry?: RetryPolicy;
  chunkSize?: number;
  /** Publish metadata.json after each verified shard (default true; `upload` publishes once, at the end). */
  publishEach?: boolean;
}

/**
 * Metadata as published to GCS: only verified shards, totals recomputed for them. `complete` only once every
 * shard is verified: the writer marks itself complete at close while its last uploads are still running.
 */
export function publishedMetadata(m: DatasetMetadata): DatasetMetadata {
  const shards = m.shards.filter((s) => s.gcs_verified === true);
  return {
    ...m,
    status: m.status === "complete" && shards.length === m.shards.length ? "complete" : "in_progress",
    shards,
    total_shards: shards.length,
    total_samples: shards.reduce((s, e) => s + (e.total_samples_in_shard ?? 0), 0),
  };
}

/** Uploads shards in the background and publishes metadata.json. */
export class ShardUploader {
  readonly #store: GcsStore;
  readonly #opts: ShardUploaderOptions;
  readonly #limit: number;
  #running = 0;
  #queue: ShardEntry[] = [];
  #inflight = new Set<Promise<void>>();
  #failures: ActshardError[] = [];
  #publishChain: Promise<unknown> = Promise.resolve();
  #roomWaiters: (() => void)[] = [];
  /** Shards confirmed so far (ids). */
  readonly verified = new Set<number>();

  private constructor(store: GcsStore, opts: ShardUploaderOptions) {
    this.#store = store;
    this.#opts = opts;
    this.#limit = Math.max(1, opts.concurrency ?? 2);
  }

  /** Open the bucket (checks credentials and access up front: a clear error before any work is done). */
  static async create(opts: ShardUploaderOptions): Promise<ShardUploader> {
    const store = await GcsStore.open(opts.bucket, opts.prefix, {
      apiEndpoint: opts.apiEndpoint,
      retry: opts.retry,
      chunkSize: opts.chunkSize,
    });
    return new ShardUploader(store, opts);
  }

  /** The store uploads go to. */
  get store(): GcsStore {
    return this.#store;
  }

  /** `gs://bucket/prefix/<name>` for a shard entry. */
  gcsPath(entry: ShardEntry): string {
    return this.#store.objectUrl(shardLocation(entry));
  }

  /** Queue a closed shard for upload (returns at once). */
  enqueue(entry: ShardEntry): void {
    this.#queue.push(entry);
    this.#pump();
  }

  /** Shards queued or uploading. */
  get pending(): number {
    return this.#queue.length + this.#running;
  }

  /**
   * Resolves once at most `max` shards are queued or uploading: a writer that awaits this after each commit
   * keeps the local shards bounded when uploads are slower than extraction (`--delete_local_after_upload`).
   */
  async waitForRoom(max: number): Promise<void> {
    while (this.pending > Math.max(0, max)) await new Promise<void>((r) => this.#roomWaiters.push(r));
  }

  #pump(): void {
    while (this.#running < this.#limit && this.#queue.length > 0) {
      const entry = this.#queue.shift()!;
      this.#running++;
      const p = this.#uploadOne(entry)
        .catch((e) => {
          this.#failures.push(
            e instanceof ActshardError
              ? e
              : new ActshardError(`upload failed: ${(e as Error)?.message ?? e}`, {
                where: this.gcsPath(entry),
                kind: "remote",
                cause: e,
              }),
          );
        })
        .finally(() => {
          this.#running--;
          this.#inflight.delete(p);
          this.#pump();
          for (const wake of this.#roomWaiters.splice(0)) wake();
        });
      this.#inflight.add(p);
    }
  }

  async #uploadOne(entry: ShardEntry): Promise<void> {
    const localPath = await this.#localPath(entry);
    const local = typeof entry.bytes === "number" && typeof entry.crc32c === "number"
      ? { size: entry.bytes, crc32c: entry.crc32c >>> 0 }
      : undefined;
    const remote = await this.#store.uploadFile(localPath, shardLocation(entry), { local });
    await this.#opts.onVerified(entry, remote);
    this.verified.add(entry.shard_id);
    if (this.#opts.publishEach ?? true) await this.publishMetadata();
    if (this.#opts.deleteLocalAfterUpload) await Deno.remove(localPath).catch(() => {});
  }

  async #localPath(entry: ShardEntry): Promise<string> {
    const rel = join(this.#opts.localDir, shardLocation(entry));
    // Only inside the dataset root: metadata's local_path is informational, never opened (nor deleted).
    for (const p of [rel]) {
      if (!p) continue;
      try {
        if ((await Deno.stat(p)).isFile) return p;
      } catch { /* try the next */ }
    }
    throw new ActshardError("shard file to upload is missing", {
      where: rel,
      kind: "input",
      hint: "it was deleted before its upload was confirmed; rerun extraction for it",
    });
  }

  /** Upload metadata.json = getMetadata() with only verified shards listed (serialized with other publishes). */
  publishMetadata(): Promise<void> {
    const run = this.#publishChain.catch(() => {}).then(async () => {
      const m = publishedMetadata(this.#opts.getMetadata());
      m.upload_to_gcs = true;
      m.gcs_bucket = this.#opts.bucket;
      m.gcs_prefix = this.#opts.prefix;
      const data = new TextEncoder().encode(JSON.stringify(m, null, 2) + "\n");
      await this.#store.writeSmall(METADATA_NAME, data);
    });
    this.#publishChain = run;
    return run;
  }

  /** Wait for every queued upload; rejects with a clear error if any failed (their local shards are kept). */
  async drain(): Promise<void> {
    while (this.#inflight.size > 0 || this.#queue.length > 0) {
      await Promise.all([...this.#inflight]);
    }
    await this.#publishChain.catch(() => {});
    if (this.#failures.length > 0) {
      const first = this.#failures[0];
      const n = this.#failures.length;
      throw new ActshardError(
        n === 1 ? first.message : `${n} shard uploads failed; first: ${first.message}`,
        {
          where: first.where,
          kind: "remote",
          // the failure's own remedy first: for a different object already at that name, rerunning cannot help
          hint: first.hint ??
            "local shards were kept; rerun the same command (or `deno task upload`) to finish the upload",
          cause: first,
        },
      );
    }
  }
}

/** What {@link uploadDataset} did. */
export interface UploadReport {
  uploaded: number;
  alreadyThere: number;
  metadataUrl: string;
}

/**
 * Upload an existing local dataset (the `upload` stage): shards whose object already exists with the same size
 * and CRC-32C are skipped, the rest are uploaded (resumable, verified), the local metadata.json gets the gcs
 * fields, and metadata.json is uploaded last, listing only verified shards. Idempotent; a killed run resumes by
 * rerunning (objects only appear when complete, so nothing is duplicated).
 */
export async function uploadDataset(opts: {
  outputDir: string;
  bucket: string;
  prefix: string;
  concurrency?: number;
  deleteLocalAfterUpload?: boolean;
  apiEndpoint?: string;
  retry?: RetryPolicy;
  chunkSize?: number;
  onProgress?: (msg: string) => void;
}): Promise<UploadReport> {
  const meta = await readMetadata(new LocalStore(opts.outputDir));
  for (const s of meta.shards) s.gcs_verified = false;
  let uploaded = 0;
  const up = await ShardUploader.create({
    ...opts,
    // Local copies go only after metadata.json (published once, last) lists them: see below.
    deleteLocalAfterUpload: false,
    localDir: opts.outputDir,
    onVerified: (e, remote) => {
      e.gcs_path = up.gcsPath(e);
      e.gcs_generation = remote.generation;
      e.gcs_verified = true;
      return Promise.resolve();
    },
    getMetadata: () => meta,
    publishEach: false, // metadata.json goes up once, last
  });
  const remote = new Map((await up.store.list()).map((o) => [o.name, o]));
  let already = 0;
  for (const e of meta.shards) {
    const r = remote.get(shardLocation(e));
    if (r && r.size === e.bytes && r.crc32c === (e.crc32c >>> 0)) {
      e.gcs_path = up.gcsPath(e);
      e.gcs_generation = r.generation;
      e.gcs_verified = true;
      already++;
      continue;
    }
    up.enqueue(e);
    uploaded++;
  }
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
}
