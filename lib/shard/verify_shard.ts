/**
 * The checks of one listed shard, for `verifyDataset` (verify.ts): present, size and listed facts, then
 * either size + crc32c from the store's object info, or every byte hashed as its records are decoded and
 * tallied (dtype, NaN/Inf, sample_idx range, per-layer counts against metadata.json).
 *
 * @example
 * ```ts
 * import { checkShard } from "./verify_shard.ts";
 * import { Verification } from "./verify_state.ts";
 * import { readMetadata, shardLocation } from "./metadata.ts";
 * import { ShardWriter } from "./writer.ts";
 * import { LocalStore } from "../storage/local.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "gzip", dtype: "float32",
 *   shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 0, prompt: "p",
 *   activation: new Float32Array(4), shape: [1, 4] }]);
 * await w.close();
 * const store = new LocalStore(dir);
 * const meta = await readMetadata(store);
 * const v = new Verification(store.url, meta);
 * const [entry] = meta.shards;
 * const info = (await store.list()).find((o) => o.name === shardLocation(entry));
 * await checkShard(v, store, entry, info, true);
 * console.log(v.report.shards[0].method, v.report.shards[0].records, v.report.ok); // streamed 1 true
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import type { BlobStore, ObjectInfo } from "../storage/types.ts";
import { ActshardError, errorLine } from "../errors.ts";
import { type HashedObject, type Hashes, hashObject, tappedStore } from "./hashed_object.ts";
import { shardLocation } from "./metadata.ts";
import { type ReadRecord, readShard } from "./reader.ts";
import type { ListedShard, ShardCheck, Verification } from "./verify_state.ts";

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
export async function checkShard(
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
