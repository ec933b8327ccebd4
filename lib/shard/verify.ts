/**
 * Dataset verification over any {@link BlobStore}: every shard listed in metadata.json is checked for presence,
 * size, CRC-32C and SHA-256 over every byte of the object (hashed as it streams, and to its end however far the
 * decoder reads), then decoded record by record: per-layer counts against metadata, shapes, dtype, NaN/Inf,
 * duplicate records, sample_idx coverage across layers, no bytes after the payload. When the store reports a
 * CRC-32C (GCS) and `deep` is off, size + crc32c come from object info without downloading. Shard files that
 * metadata.json does not list are errors (`allowExtra`: warnings); a run that did not finish is reported as
 * incomplete (`complete: false`), separately from errors. Seed-written datasets (no checksums) are decoded and
 * counted, with a note saying so.
 *
 * @example
 * ```ts
 * import { verifyDataset } from "./verify.ts";
 * import { ShardWriter } from "./writer.ts";
 * import { LocalStore } from "../storage/local.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "gzip", dtype: "float32",
 *   shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p",
 *   activation: new Float32Array(4), shape: [1, 4] }]);
 * await w.close();
 * const report = await verifyDataset(new LocalStore(dir));
 * console.log(report.ok, report.issues.length); // true 0
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type { BlobStore, ObjectInfo } from "../storage/types.ts";
import { ActshardError, errorLine } from "../errors.ts";
import { type HashedObject, type Hashes, hashObject, tappedStore } from "./hashed_object.ts";
import {
  type DatasetMetadata,
  METADATA_NAME,
  readMetadata,
  type ShardEntry,
  shardLocation,
} from "./metadata.ts";
import { type ReadRecord, readShard } from "./reader.ts";
import { SHARD_FILE_RE } from "./writer.ts";

/** One finding. Errors make the dataset fail verification. */
export interface VerifyIssue {
  /** error: fails verification; warning/note: reported only. */
  level: "error" | "warning" | "note";
  /** The shard it is about, if any. */
  shard?: string;
  /** One line saying what is wrong. */
  message: string;
}

/** What was checked for one shard. */
export interface ShardCheck {
  /** Shard location relative to the root. */
  name: string;
  /** "object-info": size + crc32c from the store only; "streamed": re-hashed and decoded. */
  method: "object-info" | "streamed" | "missing";
  /** Bytes checked. */
  bytes: number;
  /** Records decoded (0 for object-info). */
  records: number;
  /** Whether every check of this shard passed. */
  ok: boolean;
}

/** The result of {@link verifyDataset}. */
export interface VerifyReport {
  /** No error-level issue. */
  ok: boolean;
  /** The store's URL. */
  root: string;
  /** metadata.json was found. */
  hasMetadata: boolean;
  /** metadata.json lists sha256/crc32c (actshard-written; the seed's files have none). */
  hasChecksums: boolean;
  /** Per-shard results. */
  shards: ShardCheck[];
  /** Records over all shards. */
  records: number;
  /** Shard bytes over all shards. */
  bytes: number;
  /** Per layer: records, prompts, sample range. */
  layers: Record<
    string,
    { records: number; samples: number; sample_idx_min: number; sample_idx_max: number }
  >;
  /** Stored dtypes seen. */
  dtypes: string[];
  /** Hidden sizes seen (one, in a consistent dataset). */
  hidden: number[];
  /** NaN/Inf values found in decoded activations. */
  nonFinite: number;
  /** False when the dataset is not a finished run (in progress, interrupted, no shards, no metadata.json). */
  complete: boolean;
  /** Why it is incomplete (empty when complete). */
  incomplete: string[];
  /** Every finding, in order. */
  issues: VerifyIssue[];
}

/** Options for {@link verifyDataset}. */
export interface VerifyOptions {
  /** Always stream, re-hash and decode, even when the store reports a crc32c. */
  deep?: boolean;
  /** Shard files metadata.json does not list are a warning, not an error. */
  allowExtra?: boolean;
}

/**
 * Verify the dataset at `store`. Never throws for data problems (they become issues); throws for bad input.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { verifyDataset } from "./verify.ts";
 * import { ShardWriter } from "./writer.ts";
 * import { openStore } from "../storage/open.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "zstd", dtype: "float16",
 *   shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p",
 *   activation: new Float32Array(4), shape: [1, 4] }]);
 * await w.close();
 * const report = await verifyDataset(await openStore(dir), { deep: true });
 * assert(report.ok && report.complete && report.records === 1);
 * await Deno.writeFile(`${dir}/shard_0001.pkl.zst`, new Uint8Array(3)); // corrupt it
 * assert(!(await verifyDataset(await openStore(dir))).ok);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function verifyDataset(store: BlobStore, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const objects = await store.list();
  const byName = new Map<string, ObjectInfo>(objects.map((o) => [o.name, o]));
  const meta = byName.has(METADATA_NAME) ? await readMetadata(store) : null;
  const v = new Verification(store.url, meta);
  const entries = listedShards(v, meta, objects);
  checkUnlisted(v, objects, entries, opts.allowExtra === true);
  for (const e of entries) await checkShard(v, store, e, byName.get(shardLocation(e)), opts.deep === true);
  if (meta) checkTotals(v, meta);
  checkCompleteness(v, meta);
  checkAcrossShards(v);
  return v.result();
}

/** A shard entry: metadata.json's, or (a dataset without one) just a listed file's name. */
type ListedShard = Partial<ShardEntry> & { filename: string };

/** A verification in progress: the report being built, and what is tallied across shards. */
class Verification {
  readonly report: VerifyReport;
  /** An actshard metadata.json always carries checksums: one without them was edited (nothing would be hashed). */
  readonly ours: boolean;
  /** The sample_idx values seen per layer (duplicates, coverage across layers). */
  readonly seen = new Map<number, Set<number>>();
  readonly dtypes = new Set<string>();
  readonly hidden = new Set<number>();
  duplicates = 0;
  /** Where shards deleted after their verified upload went (gs://bucket/prefix), for the closing note. */
  uploadedAway: string | null = null;

  constructor(readonly root: string, meta: DatasetMetadata | null) {
    this.ours = typeof meta?.tool === "string" && meta.tool.startsWith("actshard");
    this.report = {
      ok: true,
      root,
      hasMetadata: !!meta,
      hasChecksums: !!meta && meta.shards.length > 0 &&
        meta.shards.every((s) => typeof s.sha256 === "string"),
      shards: [],
      records: 0,
      bytes: 0,
      layers: {},
      dtypes: [],
      hidden: [],
      nonFinite: 0,
      complete: true,
      incomplete: [],
      issues: [],
    };
  }

  /** Record a finding; an error fails the dataset. */
  issue(level: VerifyIssue["level"], message: string, shard?: string): void {
    this.report.issues.push({ level, message, ...(shard ? { shard } : {}) });
    if (level === "error") this.report.ok = false;
  }

  /** Record why the dataset is not a finished run (clean but incomplete: exit 3 in the CLI). */
  incomplete(why: string): void {
    this.report.complete = false;
    this.report.incomplete.push(why);
  }

  /** The finished report. */
  result(): VerifyReport {
    this.report.dtypes = [...this.dtypes];
    this.report.hidden = [...this.hidden];
    return this.report;
  }
}

/** The shards to check: metadata.json's list, or (no metadata.json) the shard files found, with a warning. */
function listedShards(v: Verification, meta: DatasetMetadata | null, objects: ObjectInfo[]): ListedShard[] {
  let entries: ListedShard[];
  if (meta) entries = meta.shards;
  else {
    entries = objects.filter((o) => SHARD_FILE_RE.test(o.name.split("/").pop()!)).map((o) => ({
      filename: o.name,
    }));
    if (entries.length === 0) {
      throw new ActshardError("not a dataset: no metadata.json and no shard_NNNN files", {
        where: v.root,
        kind: "input",
        hint: "give the directory a run wrote",
      });
    }
    v.issue("warning", "no metadata.json: shards decoded and counted only");
  }
  if (meta && !v.report.hasChecksums && meta.shards.length) {
    v.issue(
      "note",
      "metadata has no checksums (seed-written?): size/crc32c/sha256 not checked; shards decoded and counted",
    );
  }
  return entries;
}

/** Shard files in the listing that metadata.json does not list: errors, or warnings with `allowExtra`. */
function checkUnlisted(
  v: Verification,
  objects: ObjectInfo[],
  entries: ListedShard[],
  allowExtra: boolean,
): void {
  const listed = new Set(entries.map((e) => shardLocation(e)));
  for (const o of objects) {
    if (SHARD_FILE_RE.test(o.name.split("/").pop()!) && !listed.has(o.name)) {
      // A glob-based reader (the seed's scripts) would read its records as well: an error unless allowed.
      v.issue(
        allowExtra ? "warning" : "error",
        `shard file not listed in metadata.json (partial or stray)${
          allowExtra ? "" : ": remove it, or pass --allow_extra"
        }`,
        o.name,
      );
    }
  }
}

/** One shard's errors: each is an issue naming the shard, and any fails its check. */
class ShardErrors {
  count = 0;
  constructor(readonly v: Verification, readonly name: string) {}
  add(message: string): void {
    this.count++;
    this.v.issue("error", message, this.name);
  }
}

/**
 * Check one listed shard: present, its size and listed facts, then either size + crc32c from the store's
 * object info (no download), or every byte hashed as its records are decoded and counted.
 */
async function checkShard(
  v: Verification,
  store: BlobStore,
  e: ListedShard,
  info: ObjectInfo | undefined,
  deep: boolean,
): Promise<void> {
  const name = shardLocation(e);
  const check: ShardCheck = { name, method: "missing", bytes: info?.size ?? 0, records: 0, ok: false };
  v.report.shards.push(check);
  if (!info) return missingShard(v, e, name);
  v.report.bytes += info.size;
  const err = new ShardErrors(v, name);
  if (
    v.ours && (typeof e.bytes !== "number" || typeof e.crc32c !== "number" || typeof e.sha256 !== "string")
  ) {
    err.add("metadata.json has no bytes/crc32c/sha256 for this shard (actshard always writes them): edited?");
  }
  if (typeof e.bytes === "number" && info.size !== e.bytes) {
    err.add(`size ${info.size} ≠ ${e.bytes} in metadata (truncated?)`);
  }
  if (!deep && info.crc32c !== undefined && typeof e.crc32c === "number") {
    check.method = "object-info";
    if (info.crc32c !== e.crc32c >>> 0) err.add(`crc32c ${info.crc32c} ≠ ${e.crc32c} in metadata`);
    check.records = e.n_records ?? e.total_samples_in_shard ?? 0;
  } else {
    check.method = "streamed";
    const { perLayer, decodeError, hashes } = await streamShard(v, store, name, e, check, err);
    if (hashes) checkHashes(hashes, info, e, err);
    if (decodeError !== null) {
      err.add(/^cannot decode\b/.test(decodeError) ? decodeError : `cannot decode: ${decodeError}`);
    } else checkCounts(e, perLayer, check.records, err);
  }
  v.report.records += check.records;
  check.ok = err.count === 0;
}

/** A listed shard the store does not have (deleted after its verified upload: say so, and where to look). */
function missingShard(v: Verification, e: ListedShard, name: string): void {
  if (e.gcs_verified && e.gcs_path && !v.root.startsWith("gs://")) {
    v.issue("error", `not on local disk: deleted after its verified upload to ${e.gcs_path}`, name);
    v.uploadedAway = e.gcs_path.slice(0, e.gcs_path.lastIndexOf("/"));
  } else v.issue("error", "shard listed in metadata.json is missing", name);
}

/**
 * Read shard `name` once: decode and tally every record while hashing every byte, however far the decoder
 * read (a flipped byte after the last record it needed, or inside a zstd frame that still decodes, is caught).
 */
async function streamShard(
  v: Verification,
  store: BlobStore,
  name: string,
  e: ListedShard,
  check: ShardCheck,
  err: ShardErrors,
): Promise<{ perLayer: Map<number, number>; decodeError: string | null; hashes: Hashes | null }> {
  const perLayer = new Map<number, number>();
  let decodeError: string | null = null;
  let hashed: HashedObject | null = null;
  try {
    hashed = hashObject(await store.openRead(name));
    for await (const r of decodeShard(store, name, e, hashed)) {
      check.records++;
      perLayer.set(r.layer, (perLayer.get(r.layer) ?? 0) + 1);
      tallyRecord(v, r, e, err);
    }
  } catch (x) {
    decodeError = decodeLine(x, name);
  }
  let hashes: Hashes | null = null;
  try {
    hashes = hashed ? await hashed.finish() : null;
  } catch (x) {
    if (decodeError === null) err.add(`cannot read: ${decodeLine(x, name)}`);
  }
  return { perLayer, decodeError, hashes };
}

/**
 * The records of shard `name`, decoded from the hashed object's bytes: verify's one call into a decoder, which
 * the shard's metadata.json entry (`format`, `codec`; the file name for seed entries) picks.
 */
function decodeShard(
  store: BlobStore,
  name: string,
  e: ListedShard,
  hashed: HashedObject,
): AsyncIterable<ReadRecord> {
  return readShard(tappedStore(store, name, hashed), name, undefined, e);
}

/** One decoded record: its dtype, NaN/Inf, sample_idx range and duplicates, and the per-layer tallies. */
function tallyRecord(v: Verification, r: ReadRecord, e: ListedShard, err: ShardErrors): void {
  v.dtypes.add(r.dtype);
  v.hidden.add(r.shape[1]);
  if (e.dtype && r.dtype !== e.dtype) err.add(`record dtype ${r.dtype} ≠ ${e.dtype} in metadata`);
  let nf = 0;
  for (let i = 0; i < r.activation.length; i++) if (!Number.isFinite(r.activation[i])) nf++;
  if (nf) {
    v.report.nonFinite += nf;
    err.add(`layer ${r.layer} sample ${r.sample_idx}: ${nf} NaN/Inf values`);
  }
  if (
    typeof e.sample_idx_min === "number" && typeof e.sample_idx_max === "number" &&
    (r.sample_idx < e.sample_idx_min || r.sample_idx > e.sample_idx_max)
  ) err.add(`sample_idx ${r.sample_idx} outside ${e.sample_idx_min}..${e.sample_idx_max} in metadata`);
  const s = v.seen.get(r.layer) ?? new Set<number>();
  v.seen.set(r.layer, s);
  if (s.has(r.sample_idx)) v.duplicates++;
  s.add(r.sample_idx);
  const L = (v.report.layers[r.layer] ??= {
    records: 0,
    samples: 0,
    sample_idx_min: Infinity,
    sample_idx_max: -Infinity,
  });
  L.records++;
  L.sample_idx_min = Math.min(L.sample_idx_min, r.sample_idx);
  L.sample_idx_max = Math.max(L.sample_idx_max, r.sample_idx);
}

/** The bytes read against the store's listing and metadata.json's crc32c and sha256. */
function checkHashes(h: Hashes, info: ObjectInfo, e: ListedShard, err: ShardErrors): void {
  if (h.size !== info.size) {
    err.add(
      `read ${h.size} bytes, the store lists ${info.size} (changed while reading, or a short download)`,
    );
  }
  if (typeof e.crc32c === "number" && h.crc32c !== e.crc32c >>> 0) {
    err.add(`crc32c mismatch (file changed or corrupt)`);
  }
  if (typeof e.sha256 === "string" && h.sha256 !== e.sha256) {
    err.add(`sha256 mismatch (file changed or corrupt)`);
  }
}

/** The records decoded against metadata.json's per-layer and per-shard counts. */
function checkCounts(e: ListedShard, perLayer: Map<number, number>, records: number, err: ShardErrors): void {
  if (e.samples_per_layer) {
    for (const [l, n] of Object.entries(e.samples_per_layer)) {
      const got = perLayer.get(Number(l)) ?? 0;
      if (got !== n) err.add(`layer ${l}: ${got} records, metadata says ${n}`);
    }
    for (const l of perLayer.keys()) {
      if (!(String(l) in e.samples_per_layer)) err.add(`layer ${l} present but not in metadata`);
    }
  }
  const expect = e.n_records ?? e.total_samples_in_shard;
  if (typeof expect === "number" && expect !== records) {
    err.add(`${records} records, metadata says ${expect}`);
  }
}

/** metadata.json's totals against its own shard list. */
function checkTotals(v: Verification, meta: DatasetMetadata): void {
  if (meta.total_shards !== meta.shards.length) {
    v.issue("error", `total_shards ${meta.total_shards} ≠ ${meta.shards.length} shards listed`);
  }
  const counted = meta.shards.reduce((s, e) => s + (e.total_samples_in_shard ?? 0), 0);
  if (meta.total_samples !== counted) {
    v.issue("error", `total_samples ${meta.total_samples} ≠ ${counted} (sum over shards)`);
  }
}

/**
 * Whether the dataset is a finished run (an unfinished one is clean but incomplete, its own outcome: CI must
 * not read a partial run as a pass), and whether a complete one holds one record per (prompt, layer).
 */
function checkCompleteness(v: Verification, meta: DatasetMetadata | null): void {
  if (!meta) v.incomplete("no metadata.json: nothing says the run finished");
  else if (meta.status !== undefined && meta.status !== "complete") {
    v.incomplete(
      v.root.startsWith("gs://")
        ? `status is ${meta.status}: not every upload finished (or the run is still going)`
        : `status is ${meta.status}: the run was interrupted (or is still running)`,
    );
  }
  if (!meta) return;
  if (meta.shards.length === 0) v.incomplete("metadata.json lists no shards");
  // Without this, a dataset that lost its last shards (and whose metadata lost them too) would pass.
  const nPrompts = meta.config?.n_prompts, runLayers = meta.config?.layers_to_extract;
  if (meta.status === "complete" && typeof nPrompts === "number" && Array.isArray(runLayers)) {
    for (const l of runLayers) {
      const got = meta.shards.reduce((s, e) => s + (e.samples_per_layer?.[String(l)] ?? 0), 0);
      if (got !== nPrompts) {
        v.issue("error", `layer ${l}: ${got} records listed, but the complete run had ${nPrompts} prompts`);
      }
    }
  }
}

/** What only the shards together show: duplicates, layers covering different samples, gaps, hidden sizes. */
function checkAcrossShards(v: Verification): void {
  if (v.uploadedAway) {
    v.issue("note", `shards deleted locally after upload: run verify ${v.uploadedAway} to check them`);
  }
  if (v.duplicates) v.issue("error", `${v.duplicates} duplicate (layer, sample_idx) records`);
  const layers = [...v.seen.keys()].sort((a, b) => a - b);
  let union = new Set<number>();
  for (const l of layers) union = new Set([...union, ...v.seen.get(l)!]);
  for (const l of layers) {
    const s = v.seen.get(l)!;
    v.report.layers[l].samples = s.size;
    if (s.size !== union.size) {
      v.issue("error", `layer ${l} has ${s.size} samples, other layers cover ${union.size}`);
    }
  }
  if (union.size) {
    const max = Math.max(...union), min = Math.min(...union);
    const gaps = max - min + 1 - union.size;
    if (gaps) {
      v.issue("note", `sample_idx ${min}..${max} has ${gaps} gaps (normal for one worker of a split run)`);
    }
  }
  if (v.hidden.size > 1) v.issue("error", `records have different hidden sizes: ${[...v.hidden].join(", ")}`);
}

/**
 * A decode failure as one line for a report whose lines already start with the shard's name: the error's own
 * `(where)` is dropped when it is just that shard's path.
 */
function decodeLine(x: unknown, name: string): string {
  if (x instanceof ActshardError && x.where?.endsWith(name)) {
    return `${x.message.replace(/\s*\n\s*/g, " ")}${x.hint ? `: ${x.hint}` : ""}`;
  }
  return errorLine(x);
}
