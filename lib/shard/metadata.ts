/**
 * metadata.json: the seed's schema (every field kept, so seed users' scripts still work) plus additive
 * extensions: `status`, `tool`, timestamps, the run's `config`, and per shard `bytes`, `crc32c`, `sha256`,
 * sample index range, record count, format/codec/dtype. Written atomically (temp file, fsync, rename).
 *
 * @example
 * ```ts
 * import { newMetadata, readMetadata, writeMetadataAtomic } from "./metadata.ts";
 * import { LocalStore } from "../storage/local.ts";
 * const dir = await Deno.makeTempDir();
 * await writeMetadataAtomic(dir, newMetadata({ shard_size_gb: 1 }));
 * const meta = await readMetadata(new LocalStore(dir));
 * console.log(meta.total_shards, meta.status); // 0 in_progress
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { join } from "node:path";
import type { ActivationDType } from "../types.ts";
import type { BlobStore } from "../storage/types.ts";
import { ActshardError } from "../errors.ts";
import { writeAll } from "../util/write_all.ts";
import { checkMetadataEntries } from "./metadata_check.ts";
import type { Codec } from "./codecs.ts";
import type { ShardFormat } from "./formats/mod.ts";

/** The tool string written into metadata. */
export const TOOL_VERSION = "actshard 0.1.0";
/** The index's file name in a dataset root. */
export const METADATA_NAME = "metadata.json";
/**
 * The version of the metadata.json contract this code writes. A reader refuses a newer *major* version (its
 * meaning changed); a newer minor version only adds fields, which readers ignore. No field (the seed's files,
 * actshard before 1.0) reads as 1.0.
 */
export const SCHEMA_VERSION = "1.0";

/** One shard in metadata.json: the seed's fields plus extensions. */
export interface ShardEntry {
  /** 1-based shard number (`shard_0001` is 1). */
  shard_id: number;
  /** File name, e.g. `shard_0001.pkl.gz`. */
  filename: string;
  /** Where the writer put it (the seed's field; readers use `filename`/`path`). */
  local_path: string;
  /** `gs://bucket/prefix/filename` once uploaded, else null. */
  gcs_path: string | null;
  /** File size in MB (the seed's field). */
  file_size_mb: number;
  /** Uncompressed payload size in MB (the seed's field). */
  buffer_size_mb: number;
  /** Layers stored in the shard, ascending. */
  layers: number[];
  /** Records per layer (keys are layer numbers as strings). */
  samples_per_layer: Record<string, number>;
  /** Records in the shard, all layers (the seed's field). */
  total_samples_in_shard: number;
  /** File size in bytes. */
  bytes: number;
  /** CRC-32C of the file, unsigned. */
  crc32c: number;
  /** SHA-256 of the file, hex. */
  sha256: string;
  /** Smallest `sample_idx` in the shard. */
  sample_idx_min: number;
  /** Largest `sample_idx` in the shard. */
  sample_idx_max: number;
  /** Records in the shard (equals `total_samples_in_shard`). */
  n_records: number;
  /** Payload format (the format registry's name; readers dispatch on it). Absent in the seed's entries. */
  format: ShardFormat;
  /** Compression around the payload (the codec table's name; readers dispatch on it). Absent in the seed's. */
  codec: Codec;
  /** Stored activation dtype. */
  dtype: ActivationDType;
  /** Location relative to the dataset root when not `filename` (merged roots). */
  path?: string;
  /** GCS generation of the uploaded object. */
  gcs_generation?: string;
  /** True once the remote size and CRC-32C matched this entry. */
  gcs_verified?: boolean;
}

/** metadata.json. `total_samples` counts records (as the seed did). */
export interface DatasetMetadata {
  /** Number of entries in `shards`. */
  total_shards: number;
  /** Records over all shards and layers. */
  total_samples: number;
  /** The size bound shards were cut at (`--shard_size_gb`). */
  shard_size_gb: number;
  /** Whether the run uploaded to GCS. */
  upload_to_gcs: boolean;
  /** The bucket uploaded to, or null. */
  gcs_bucket: string | null;
  /** The prefix uploaded under, or null. */
  gcs_prefix: string | null;
  /** Every durable shard, in order. */
  shards: ShardEntry[];
  /** `complete` once the run finished; `in_progress` while running or after an interruption. */
  status: "in_progress" | "complete";
  /** The writer, e.g. {@link TOOL_VERSION}. */
  tool: string;
  /** {@link SCHEMA_VERSION} of the writer ("MAJOR.MINOR"); absent in the seed's files. */
  schema_version?: string;
  /** ISO 8601 time the dataset was started. */
  created_at: string;
  /** ISO 8601 time of the last rewrite. */
  updated_at: string;
  /** The run's configuration (the extract flags, snake_case), used to refuse a mismatched resume. */
  config: Record<string, unknown>;
  /** Fields this version does not know (kept, ignored). */
  [k: string]: unknown;
}

/** Where a shard lives, relative to the dataset root. */
export function shardLocation(e: Pick<ShardEntry, "path" | "filename">): string {
  return e.path ?? e.filename;
}

/**
 * Read and check metadata.json (clear error when absent or corrupt). Every shard name, path, local_path,
 * gcs_path and worker directory in it is validated (lib/shard/metadata_check.ts) before any stage uses it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { readMetadata } from "./metadata.ts";
 * import { openStore } from "../storage/open.ts";
 * const dir = await Deno.makeTempDir();
 * // Not a dataset yet: one line naming the file and what to give instead.
 * await readMetadata(await openStore(dir)).catch((e) => console.log(e.line()));
 * await Deno.writeTextFile(`${dir}/metadata.json`, JSON.stringify({ shards: [], status: "complete" }));
 * assert((await readMetadata(await openStore(dir))).status === "complete");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readMetadata(store: BlobStore): Promise<DatasetMetadata> {
  const where = `${store.url.replace(/\/$/, "")}/${METADATA_NAME}`;
  if (!(await store.stat(METADATA_NAME))) {
    throw new ActshardError("not a dataset: metadata.json is missing", {
      where,
      kind: "input",
      hint: "give the directory a run wrote (it holds metadata.json and shard_NNNN files)",
    });
  }
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder().decode(await store.read(METADATA_NAME)));
  } catch (e) {
    if (e instanceof ActshardError) throw e;
    throw new ActshardError("metadata.json is not valid JSON", {
      where,
      kind: "data",
      hint: "restore it from a backup or GCS, or rerun with --overwrite",
      cause: e,
    });
  }
  const m = meta as DatasetMetadata;
  if (typeof m !== "object" || m === null || !Array.isArray(m.shards)) {
    throw new ActshardError("metadata.json has no shards list", {
      where,
      kind: "data",
      hint: "this is not an actshard/seed metadata file",
    });
  }
  for (const s of m.shards) {
    if (typeof s !== "object" || s === null || typeof s.filename !== "string") {
      throw new ActshardError("metadata.json has a shard entry without a filename", { where, kind: "data" });
    }
  }
  checkSchemaVersion(m.schema_version, where);
  // Untrusted input: every name a stage will open, upload or delete is checked here, once, for all stages.
  const bucket = /^gs:\/\/([^/]+)/.exec(store.url)?.[1];
  checkMetadataEntries(m, { where, ...(bucket ? { bucket } : {}) });
  return m;
}

/** Refuse a metadata.json of a newer major schema version than {@link SCHEMA_VERSION} (or a malformed one). */
export function checkSchemaVersion(v: unknown, where: string): void {
  if (v === undefined) return;
  const m = typeof v === "string" ? /^(\d+)\.(\d+)$/.exec(v) : null;
  if (!m) {
    throw new ActshardError(`metadata.json has a malformed schema_version (${JSON.stringify(v)})`, {
      where,
      kind: "data",
      hint: 'it must be "MAJOR.MINOR"; restore metadata.json from a backup or GCS',
    });
  }
  const mine = Number(SCHEMA_VERSION.split(".")[0]);
  if (Number(m[1]) > mine) {
    throw new ActshardError(
      `metadata.json has schema_version ${v}, newer than this actshard reads (${SCHEMA_VERSION})`,
      { where, kind: "data", hint: "upgrade actshard to read this dataset" },
    );
  }
}

/** Write metadata.json atomically: temp file in the same dir, fsync, rename. */
export async function writeMetadataAtomic(dir: string, meta: DatasetMetadata): Promise<void> {
  const tmp = join(dir, `.${METADATA_NAME}.tmp`);
  const f = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    await writeAll(f, new TextEncoder().encode(JSON.stringify(meta, null, 2) + "\n"));
    await f.sync();
  } catch (e) {
    // e.g. disk full: no half-written temp file left behind; the previous metadata.json stays as it was
    f.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  f.close();
  await Deno.rename(tmp, join(dir, METADATA_NAME));
  await syncDir(dir);
}

/**
 * fsync a directory so the renames in it (the shard's and metadata.json's) survive a host crash, not only a
 * killed process. Best effort: some filesystems refuse to sync a directory handle.
 */
async function syncDir(dir: string): Promise<void> {
  let d: Deno.FsFile | undefined;
  try {
    d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // not supported here: the file data itself was already fsynced
  } finally {
    d?.close();
  }
}

/** Fresh metadata from the writer's base fields. */
export function newMetadata(base: Partial<DatasetMetadata>): DatasetMetadata {
  const now = new Date().toISOString();
  return {
    total_shards: 0,
    total_samples: 0,
    shard_size_gb: 1.0,
    upload_to_gcs: false,
    gcs_bucket: null,
    gcs_prefix: null,
    ...base,
    shards: [],
    status: "in_progress",
    tool: TOOL_VERSION,
    schema_version: SCHEMA_VERSION,
    created_at: base.created_at ?? now,
    updated_at: now,
    config: base.config ?? {},
  };
}
