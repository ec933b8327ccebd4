/**
 * Dataset verification over any {@link BlobStore}: every shard listed in metadata.json is checked for presence,
 * size, CRC-32C and SHA-256 (re-hashed while streaming), then decoded record by record: per-layer counts against
 * metadata, shapes, dtype, NaN/Inf, duplicate records and sample_idx coverage across layers. When the store
 * reports a CRC-32C (GCS) and `deep` is off, size + crc32c come from object info without downloading.
 * Seed-written datasets (no checksums) are decoded and counted, with a note saying so.
 *
 * @example
 * ```ts
 * import { verifyDataset } from "./verify.ts";
 * import { LocalStore } from "../storage/local.ts";
 * const report = await verifyDataset(new LocalStore("activations_arc"));
 * console.log(report.ok, report.issues.length);
 * ```
 */
import { createHash } from "node:crypto";
import type { BlobStore, ObjectInfo } from "../storage/types.ts";
import { ActshardError, errorLine } from "../errors.ts";
import { Crc32c } from "../util/crc32c.ts";
import {
  type DatasetMetadata,
  METADATA_NAME,
  readMetadata,
  type ShardEntry,
  shardLocation,
} from "./metadata.ts";
import { readShard } from "./reader.ts";
import { SHARD_FILE_RE } from "./writer.ts";

/** One finding. Errors make the dataset fail verification. */
export interface VerifyIssue {
  level: "error" | "warning" | "note";
  shard?: string;
  message: string;
}

/** What was checked for one shard. */
export interface ShardCheck {
  name: string;
  /** "object-info": size + crc32c from the store only; "streamed": re-hashed and decoded. */
  method: "object-info" | "streamed" | "missing";
  bytes: number;
  records: number;
  ok: boolean;
}

/** The result of {@link verifyDataset}. */
export interface VerifyReport {
  ok: boolean;
  root: string;
  hasMetadata: boolean;
  hasChecksums: boolean;
  shards: ShardCheck[];
  records: number;
  bytes: number;
  layers: Record<
    string,
    { records: number; samples: number; sample_idx_min: number; sample_idx_max: number }
  >;
  dtypes: string[];
  hidden: number[];
  nonFinite: number;
  issues: VerifyIssue[];
}

/** Options for {@link verifyDataset}. */
export interface VerifyOptions {
  /** Always stream, re-hash and decode, even when the store reports a crc32c. */
  deep?: boolean;
}

interface Hashes {
  size: number;
  crc32c: number;
  sha256: string;
}

function hashingStream(
  src: ReadableStream<Uint8Array>,
  done: (h: Hashes) => void,
): ReadableStream<Uint8Array> {
  const crc = new Crc32c();
  const sha = createHash("sha256");
  let size = 0;
  return src.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        crc.update(chunk);
        sha.update(chunk);
        size += chunk.length;
        ctl.enqueue(chunk);
      },
      flush() {
        done({ size, crc32c: crc.value(), sha256: sha.digest("hex") });
      },
    }),
  );
}

async function hashObject(store: BlobStore, name: string): Promise<Hashes> {
  let h: Hashes | null = null;
  const s = hashingStream(await store.openRead(name), (x) => (h = x));
  for await (const _ of s) { /* drain */ }
  return h!;
}

/** A store view whose `openRead` of one name also hashes the bytes. */
function hashingStore(store: BlobStore, name: string, done: (h: Hashes) => void): BlobStore {
  return {
    url: store.url,
    list: () => store.list(),
    stat: (n) => store.stat(n),
    read: (n) => store.read(n),
    readRange: (n, a, b) => store.readRange(n, a, b),
    openRead: async (n) => n === name ? hashingStream(await store.openRead(n), done) : store.openRead(n),
  };
}

/** Verify the dataset at `store`. Never throws for data problems (they become issues); throws for bad input. */
export async function verifyDataset(store: BlobStore, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const objects = await store.list();
  const byName = new Map<string, ObjectInfo>(objects.map((o) => [o.name, o]));
  let meta: DatasetMetadata | null = null;
  if (byName.has(METADATA_NAME)) meta = await readMetadata(store);
  const report: VerifyReport = {
    ok: true,
    root: store.url,
    hasMetadata: !!meta,
    hasChecksums: !!meta && meta.shards.length > 0 && meta.shards.every((s) => typeof s.sha256 === "string"),
    shards: [],
    records: 0,
    bytes: 0,
    layers: {},
    dtypes: [],
    hidden: [],
    nonFinite: 0,
    issues: [],
  };
  const issue = (level: VerifyIssue["level"], message: string, shard?: string) => {
    report.issues.push({ level, message, ...(shard ? { shard } : {}) });
    if (level === "error") report.ok = false;
  };

  let entries: (Partial<ShardEntry> & { filename: string })[];
  if (meta) entries = meta.shards;
  else {
    entries = objects.filter((o) => SHARD_FILE_RE.test(o.name.split("/").pop()!)).map((o) => ({
      filename: o.name,
    }));
    if (entries.length === 0) {
      throw new ActshardError("not a dataset: no metadata.json and no shard_NNNN files", {
        where: store.url,
        kind: "input",
        hint: "give the directory a run wrote",
      });
    }
    issue("warning", "no metadata.json: shards decoded and counted only");
  }
  if (meta && !report.hasChecksums && meta.shards.length) {
    issue(
      "note",
      "metadata has no checksums (seed-written?): size/crc32c/sha256 not checked; shards decoded and counted",
    );
  }
  if (meta?.status === "in_progress") {
    issue("warning", "status is in_progress: the run did not finish (or is running)");
  }

  const listed = new Set(entries.map((e) => shardLocation(e)));
  for (const o of objects) {
    if (SHARD_FILE_RE.test(o.name.split("/").pop()!) && !listed.has(o.name)) {
      issue("warning", "shard file not listed in metadata.json (partial or stray)", o.name);
    }
  }

  const seen = new Map<number, Set<number>>();
  const dtypes = new Set<string>();
  const hidden = new Set<number>();
  let dup = 0;
  let uploadedAway: string | null = null;
  for (const e of entries) {
    const name = shardLocation(e);
    const info = byName.get(name);
    const check: ShardCheck = { name, method: "missing", bytes: info?.size ?? 0, records: 0, ok: false };
    report.shards.push(check);
    if (!info) {
      // --delete_local_after_upload removes a shard once its GCS copy is confirmed: say so, and where to look
      if (e.gcs_verified && e.gcs_path && !store.url.startsWith("gs://")) {
        issue("error", `not on local disk: deleted after its verified upload to ${e.gcs_path}`, name);
        uploadedAway = e.gcs_path.slice(0, e.gcs_path.lastIndexOf("/"));
      } else issue("error", "shard listed in metadata.json is missing", name);
      continue;
    }
    report.bytes += info.size;
    let bad = false;
    const err = (m: string) => {
      bad = true;
      issue("error", m, name);
    };
    if (typeof e.bytes === "number" && info.size !== e.bytes) {
      err(`size ${info.size} ≠ ${e.bytes} in metadata (truncated?)`);
    }
    if (!opts.deep && info.crc32c !== undefined && typeof e.crc32c === "number") {
      check.method = "object-info";
      if (info.crc32c !== e.crc32c) err(`crc32c ${info.crc32c} ≠ ${e.crc32c} in metadata`);
      check.records = e.n_records ?? e.total_samples_in_shard ?? 0;
      report.records += check.records;
      check.ok = !bad;
      continue;
    }
    check.method = "streamed";
    let hashes: Hashes | null = null;
    const perLayer = new Map<number, number>();
    let decodeError: string | null = null;
    try {
      for await (const r of readShard(hashingStore(store, name, (h) => (hashes = h)), name)) {
        check.records++;
        perLayer.set(r.layer, (perLayer.get(r.layer) ?? 0) + 1);
        dtypes.add(r.dtype);
        hidden.add(r.shape[1]);
        if (e.dtype && r.dtype !== e.dtype) err(`record dtype ${r.dtype} ≠ ${e.dtype} in metadata`);
        let nf = 0;
        for (let i = 0; i < r.activation.length; i++) if (!Number.isFinite(r.activation[i])) nf++;
        if (nf) {
          report.nonFinite += nf;
          err(`layer ${r.layer} sample ${r.sample_idx}: ${nf} NaN/Inf values`);
        }
        if (
          typeof e.sample_idx_min === "number" && typeof e.sample_idx_max === "number" &&
          (r.sample_idx < e.sample_idx_min || r.sample_idx > e.sample_idx_max)
        ) err(`sample_idx ${r.sample_idx} outside ${e.sample_idx_min}..${e.sample_idx_max} in metadata`);
        const s = seen.get(r.layer) ?? new Set<number>();
        seen.set(r.layer, s);
        if (s.has(r.sample_idx)) dup++;
        s.add(r.sample_idx);
        const L = (report.layers[r.layer] ??= {
          records: 0,
          samples: 0,
          sample_idx_min: Infinity,
          sample_idx_max: -Infinity,
        });
        L.records++;
        L.sample_idx_min = Math.min(L.sample_idx_min, r.sample_idx);
        L.sample_idx_max = Math.max(L.sample_idx_max, r.sample_idx);
      }
    } catch (x) {
      decodeError = decodeLine(x, name);
    }
    if (decodeError !== null) {
      hashes = null;
      try {
        hashes = await hashObject(store, name);
      } catch { /* unreadable: the decode error says enough */ }
    }
    const h = hashes as Hashes | null;
    if (h && typeof e.crc32c === "number" && h.crc32c !== e.crc32c) {
      err(`crc32c mismatch (file changed or corrupt)`);
    }
    if (h && typeof e.sha256 === "string" && h.sha256 !== e.sha256) {
      err(`sha256 mismatch (file changed or corrupt)`);
    }
    if (decodeError !== null) {
      err(/^cannot decode\b/.test(decodeError) ? decodeError : `cannot decode: ${decodeError}`);
    } else {
      if (e.samples_per_layer) {
        for (const [l, n] of Object.entries(e.samples_per_layer)) {
          const got = perLayer.get(Number(l)) ?? 0;
          if (got !== n) err(`layer ${l}: ${got} records, metadata says ${n}`);
        }
        for (const l of perLayer.keys()) {
          if (!(String(l) in e.samples_per_layer)) err(`layer ${l} present but not in metadata`);
        }
      }
      const expect = e.n_records ?? e.total_samples_in_shard;
      if (typeof expect === "number" && expect !== check.records) {
        err(`${check.records} records, metadata says ${expect}`);
      }
    }
    report.records += check.records;
    check.ok = !bad;
  }

  if (meta) {
    if (meta.total_shards !== meta.shards.length) {
      issue("error", `total_shards ${meta.total_shards} ≠ ${meta.shards.length} shards listed`);
    }
    const counted = meta.shards.reduce((s, e) => s + (e.total_samples_in_shard ?? 0), 0);
    if (meta.total_samples !== counted) {
      issue("error", `total_samples ${meta.total_samples} ≠ ${counted} (sum over shards)`);
    }
    // A complete run holds one record per (prompt, layer): without this, a dataset that lost its last shards
    // (and whose metadata lost them too) would pass.
    const nPrompts = meta.config?.n_prompts, runLayers = meta.config?.layers_to_extract;
    if (meta.status === "complete" && typeof nPrompts === "number" && Array.isArray(runLayers)) {
      for (const l of runLayers) {
        const got = meta.shards.reduce((s, e) => s + (e.samples_per_layer?.[String(l)] ?? 0), 0);
        if (got !== nPrompts) {
          issue("error", `layer ${l}: ${got} records listed, but the complete run had ${nPrompts} prompts`);
        }
      }
    }
  }
  if (uploadedAway) {
    issue("note", `shards deleted locally after upload: run verify ${uploadedAway} to check them`);
  }
  if (dup) issue("error", `${dup} duplicate (layer, sample_idx) records`);
  const layers = [...seen.keys()].sort((a, b) => a - b);
  let union = new Set<number>();
  for (const l of layers) union = new Set([...union, ...seen.get(l)!]);
  for (const l of layers) {
    const s = seen.get(l)!;
    report.layers[l].samples = s.size;
    if (s.size !== union.size) {
      issue("error", `layer ${l} has ${s.size} samples, other layers cover ${union.size}`);
    }
  }
  if (union.size) {
    const max = Math.max(...union), min = Math.min(...union);
    const gaps = max - min + 1 - union.size;
    if (gaps) {
      issue("note", `sample_idx ${min}..${max} has ${gaps} gaps (normal for one worker of a split run)`);
    }
  }
  if (hidden.size > 1) issue("error", `records have different hidden sizes: ${[...hidden].join(", ")}`);
  report.dtypes = [...dtypes];
  report.hidden = [...hidden];
  return report;
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
