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
 * import { ShardWriter } from "../shard/writer.ts";
 * import { startGcsEmulator } from "../storage/gcs_emulator/server.ts";
 * const emu = await startGcsEmulator({ autoCreateBuckets: true }); // stands in for GCS here
 * const dir = await Deno.makeTempDir();
 * const writer = await ShardWriter.open({
 *   dir, format: "pickle", codec: "gzip", dtype: "float32", shardSizeBytes: 1 << 20, base: {},
 *   onShardCommitted: (entry) => up.enqueue(entry), // as each shard is closed
 * });
 * const up: ShardUploader = await ShardUploader.create({
 *   bucket: "my-bucket", prefix: "activations", localDir: dir, apiEndpoint: emu.url,
 *   onVerified: async (e, remote) => {
 *     await writer.updateShard(e.shard_id, { gcs_path: up.gcsPath(e), gcs_generation: remote.generation, gcs_verified: true });
 *   },
 *   getMetadata: () => writer.metadata,
 * });
 * await writer.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p", activation: new Float32Array(4), shape: [1, 4] }]);
 * await writer.close();
 * await up.drain();         // at the end: throws if any upload failed
 * await up.publishMetadata();
 * await up.release();       // the prefix's writer lease
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
} from "../shard/metadata.ts";
import { GcsStore, type GcsStoreOptions, type RetryPolicy } from "../storage/gcs.ts";
import { PrefixLease } from "../storage/gcs_lease.ts";
import type { ObjectInfo } from "../storage/types.ts";

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
  /** Stall timeout per request (default $ACTSHARD_GCS_STALL_TIMEOUT_S or 60 s). */
  stallTimeoutMs?: number;
  /** Told about retry waits (default: a line on stderr). */
  onRetry?: GcsStoreOptions["onRetry"];
  /**
   * Called at open with the prefix's metadata.json (null when there is none), after the writer lease is held:
   * throws to refuse a prefix that holds another dataset. Default: accept.
   */
  checkRemote?: (remote: DatasetMetadata | null, store: GcsStore) => Promise<void>;
  /** Hold the prefix's writer lease while open (default true). */
  lease?: boolean;
  /** Least time between two writes of metadata.json (GCS allows about one write per second per object). */
  publishIntervalMs?: number;
}

/**
 * Metadata as published to GCS: only verified shards, totals recomputed for them. `complete` only once every
 * shard is verified: the writer marks itself complete at close while its last uploads are still running.
 */
export function publishedMetadata(m: DatasetMetadata, root?: string): DatasetMetadata {
  // Verified under *this* prefix: a run resumed with another --gcs_prefix has entries verified elsewhere.
  const shards = m.shards.filter((s) =>
    s.gcs_verified === true && (root === undefined || s.gcs_path === `${root}/${shardLocation(s)}`)
  );
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
  #postVerify = 0;
  #queue: ShardEntry[] = [];
  #inflight = new Set<Promise<void>>();
  #failures: ActshardError[] = [];
  #publishChain: Promise<unknown> = Promise.resolve();
  #queuedPublish: Promise<void> | null = null;
  #lastPublishAt = 0;
  #metaGeneration: string;
  #roomWaiters: (() => void)[] = [];
  #lease: PrefixLease | null;
  /** Shards confirmed so far (ids). */
  readonly verified = new Set<number>();

  private constructor(
    store: GcsStore,
    opts: ShardUploaderOptions,
    lease: PrefixLease | null,
    metaGeneration: string,
  ) {
    this.#store = store;
    this.#opts = opts;
    this.#limit = Math.max(1, opts.concurrency ?? 2);
    this.#lease = lease;
    this.#metaGeneration = metaGeneration;
  }

  /**
   * Open the prefix for writing, before any work is done: credentials and access (one list), a write probe
   * (a tiny object created with ifGenerationMatch=0, then deleted: a read-only account fails here), the
   * writer lease (a second writer is refused, naming the holder), then `checkRemote` on its metadata.json.
   */
  static async create(opts: ShardUploaderOptions): Promise<ShardUploader> {
    const store = await GcsStore.open(opts.bucket, opts.prefix, {
      apiEndpoint: opts.apiEndpoint,
      retry: opts.retry,
      chunkSize: opts.chunkSize,
      stallTimeoutMs: opts.stallTimeoutMs,
      onRetry: opts.onRetry,
    });
    await store.probeWrite();
    const lease = opts.lease === false
      ? null
      : await PrefixLease.acquire(store, { outputDir: opts.localDir });
    try {
      const info = await store.stat(METADATA_NAME);
      const remote = info ? await readMetadata(store) : null;
      await opts.checkRemote?.(remote, store);
      // checkRemote may have cleared the prefix (--overwrite): the generation to write over is what is there now.
      const now = remote ? await store.stat(METADATA_NAME) : null;
      return new ShardUploader(store, opts, lease, now?.generation ?? "0");
    } catch (e) {
      await lease?.release();
      throw e;
    }
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

  /** Shards queued, uploading, or failed (a failed shard stays on disk: it counts toward the local bound). */
  get pending(): number {
    return this.#queue.length + this.#postVerify + this.#failures.length;
  }

  /** The first upload failure (retries exhausted or permanent), if any. */
  get failure(): ActshardError | null {
    return this.#failures[0] ?? null;
  }

  /**
   * Throws when an upload failed for good or the writer lease was lost: the caller stops producing shards
   * (those already durable stay, and a rerun resumes) instead of extracting on while nothing reaches GCS.
   */
  throwIfFailed(): void {
    this.#lease?.check();
    const f = this.failure;
    if (f) {
      throw new ActshardError(f.message, {
        where: f.where,
        kind: "remote",
        hint: f.hint ?? "local shards were kept; rerun the same command to resume and finish the upload",
        cause: f,
      });
    }
  }

  /** Stop renewing and drop the writer lease (after the last publish). */
  async release(): Promise<void> {
    await this.#lease?.release();
    this.#lease = null;
  }

  /**
   * Resolves once at most `max` shards are queued or uploading: a writer that awaits this after each commit
   * keeps the local shards bounded when uploads are slower than extraction (`--delete_local_after_upload`).
   */
  async waitForRoom(max: number): Promise<void> {
    while (this.pending > Math.max(0, max)) {
      this.throwIfFailed(); // failed shards never leave the disk: waiting would be forever
      await new Promise<void>((r) => this.#roomWaiters.push(r));
    }
  }

  #pump(): void {
    while (this.#running < this.#limit && this.#queue.length > 0) {
      const entry = this.#queue.shift()!;
      this.#running++;
      this.#postVerify++; // until its publish (and local delete) is done: the shard is still on disk
      const fail = (e: unknown) => {
        this.#failures.push(
          e instanceof ActshardError ? e : new ActshardError(`upload failed: ${(e as Error)?.message ?? e}`, {
            where: this.gcsPath(entry),
            kind: "remote",
            cause: e,
          }),
        );
      };
      // The upload slot is freed once the object is verified: waiting for metadata.json (at most one write a
      // second) must not hold back the next upload.
      let after: Promise<void> | null = null;
      const p = this.#uploadOne(entry)
        .then((localPath) => {
          after = this.#afterVerified(localPath).catch(fail).finally(() => {
            this.#postVerify--;
            this.#inflight.delete(after!);
            for (const wake of this.#roomWaiters.splice(0)) wake();
          });
          this.#inflight.add(after);
        }, (e) => {
          this.#postVerify--;
          fail(e);
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

  /** Upload and verify one shard; resolves with its local path once `onVerified` ran. */
  async #uploadOne(entry: ShardEntry): Promise<string> {
    const localPath = await this.#localPath(entry);
    const local = typeof entry.bytes === "number" && typeof entry.crc32c === "number"
      ? { size: entry.bytes, crc32c: entry.crc32c >>> 0 }
      : undefined;
    const remote = await this.#store.uploadFile(localPath, shardLocation(entry), { local });
    await this.#opts.onVerified(entry, remote);
    this.verified.add(entry.shard_id);
    return localPath;
  }

  /** metadata.json listing the shard, then (if asked) the local file goes. */
  async #afterVerified(localPath: string): Promise<void> {
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

  /**
   * Upload metadata.json = getMetadata() with only the shards verified under this prefix. Publishes are
   * serialized and coalesced (a call while one is queued joins it: the queued one reads the metadata when it
   * starts), at most one per `publishIntervalMs`, and conditional on the generation this writer last wrote:
   * anyone else's write in between is refused, not overwritten.
   */
  publishMetadata(): Promise<void> {
    if (this.#queuedPublish) return this.#queuedPublish;
    const run = this.#publishChain.catch(() => {}).then(async () => {
      this.#queuedPublish = null;
      this.#lease?.check();
      const wait = this.#lastPublishAt + (this.#opts.publishIntervalMs ?? 1000) - Date.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      this.#lastPublishAt = Date.now();
      const m = publishedMetadata(this.#opts.getMetadata(), this.#store.url);
      m.upload_to_gcs = true;
      m.gcs_bucket = this.#opts.bucket;
      m.gcs_prefix = this.#opts.prefix;
      const data = new TextEncoder().encode(JSON.stringify(m, null, 2) + "\n");
      const info = await this.#store.writeSmall(METADATA_NAME, data, "application/json", {
        ifGenerationMatch: this.#metaGeneration,
      });
      this.#metaGeneration = info.generation ?? this.#metaGeneration;
    });
    this.#queuedPublish = run;
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
