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
 * console.log(meta.total_shards, meta.status, meta.schema_version); // 0 "in_progress" "1.0"
 * await Deno.remove(dir, { recursive: true });
 * ```
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
export const METADATA_NAME = "metadata.json";
/**
 * The version of the metadata.json contract this code writes. A reader refuses a newer *major* version (its
 * meaning changed); a newer minor version only adds fields, which readers ignore. No field (the seed's files,
 * actshard before 1.0) reads as 1.0.
 */
export const SCHEMA_VERSION = "1.0";

/** One shard in metadata.json: the seed's fields plus extensions. */
export interface ShardEntry {
  shard_id: number;
  filename: string;
  local_path: string;
  gcs_path: string | null;
  file_size_mb: number;
  buffer_size_mb: number;
  layers: number[];
  samples_per_layer: Record<string, number>;
  total_samples_in_shard: number;
  bytes: number;
  /** CRC-32C of the file, unsigned. */
  crc32c: number;
  /** SHA-256 of the file, hex. */
  sha256: string;
  sample_idx_min: number;
  sample_idx_max: number;
  n_records: number;
  /** The shard's format (the registry's name; readers dispatch on it). Absent in the seed's entries. */
  format: ShardFormat;
  /** The shard's codec (the codec table's name; readers dispatch on it). Absent in the seed's entries. */
  codec: Codec;
  dtype: ActivationDType;
  /** Location relative to the dataset root when not `filename` (merged roots). */
  path?: string;
  gcs_generation?: string;
  gcs_verified?: boolean;
}

/** metadata.json. `total_samples` counts records (as the seed did). */
export interface DatasetMetadata {
  total_shards: number;
  total_samples: number;
  shard_size_gb: number;
  upload_to_gcs: boolean;
  gcs_bucket: string | null;
  gcs_prefix: string | null;
  shards: ShardEntry[];
  status: "in_progress" | "complete";
  tool: string;
  /** {@link SCHEMA_VERSION} of the writer ("MAJOR.MINOR"); absent in the seed's files. */
  schema_version?: string;
  created_at: string;
  updated_at: string;
  config: Record<string, unknown>;
  [k: string]: unknown;
}

/** Where a shard lives, relative to the dataset root. */
export function shardLocation(e: Pick<ShardEntry, "path" | "filename">): string {
  return e.path ?? e.filename;
}

/**
 * Read and check metadata.json (clear error when absent or corrupt). Every shard name, path, local_path,
 * gcs_path and worker directory in it is validated (lib/shard/metadata_check.ts) before any stage uses it.
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
