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
  /** False when the dataset is not a finished run (in progress, interrupted, no shards, no metadata.json). */
  complete: boolean;
  /** Why it is incomplete (empty when complete). */
  incomplete: string[];
  issues: VerifyIssue[];
}

/** Options for {@link verifyDataset}. */
export interface VerifyOptions {
  /** Always stream, re-hash and decode, even when the store reports a crc32c. */
  deep?: boolean;
  /** Shard files metadata.json does not list are a warning, not an error. */
  allowExtra?: boolean;
}

interface Hashes {
  size: number;
  crc32c: number;
  sha256: string;
}

/**
 * The raw bytes of one object, hashed as they pass to the decoder, whatever the decoder does: it may stop at the
 * pickle's STOP opcode or fail half-way, and {@link HashedObject.finish} still reads and hashes the rest, so size,
 * crc32c and sha256 always cover every byte of the object (one read, no second download).
 */
interface HashedObject {
  /** The bytes for the decoder; cancelling it does not stop the hashing. */
  stream: ReadableStream<Uint8Array>;
  /** Read whatever the decoder left, then the hashes of the whole object. */
  finish(): Promise<Hashes>;
}

function hashObject(raw: ReadableStream<Uint8Array>): HashedObject {
  const reader = raw.getReader();
  const crc = new Crc32c();
  const sha = createHash("sha256");
  let size = 0;
  let ended = false;
  let inflight: Promise<unknown> = Promise.resolve();
  const next = async (): Promise<Uint8Array | null> => {
    const r = await reader.read();
    if (r.done) {
      ended = true;
      return null;
    }
    crc.update(r.value);
    sha.update(r.value);
    size += r.value.length;
    return r.value;
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      const p = next();
      inflight = p.catch(() => {});
      const chunk = await p;
      try {
        if (chunk) ctl.enqueue(chunk);
        else ctl.close();
      } catch { /* the decoder cancelled meanwhile: the chunk is hashed all the same */ }
    },
    cancel() {/* keep the object open: finish() hashes the rest */},
  }, { highWaterMark: 0 });
  return {
    stream,
    async finish() {
      await inflight;
      while (!ended) await next();
      return { size, crc32c: crc.value(), sha256: sha.digest("hex") };
    },
  };
}

/** A store view whose `openRead` of `name` is the hashed object's stream. */
function tappedStore(store: BlobStore, name: string, obj: HashedObject): BlobStore {
  return {
    url: store.url,
    list: () => store.list(),
    stat: (n) => store.stat(n),
    read: (n) => store.read(n),
    readRange: (n, a, b) => store.readRange(n, a, b),
    openRead: (n) => n === name ? Promise.resolve(obj.stream) : store.openRead(n),
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
    complete: true,
    incomplete: [],
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
  // Clean but incomplete is its own outcome (exit 3 in the CLI): CI must not read a partial run as a pass.
  const incomplete = (why: string) => {
    report.complete = false;
    report.incomplete.push(why);
  };
  if (!meta) incomplete("no metadata.json: nothing says the run finished");
  else if (meta.status !== undefined && meta.status !== "complete") {
    incomplete(
      store.url.startsWith("gs://")
        ? `status is ${meta.status}: not every upload finished (or the run is still going)`
        : `status is ${meta.status}: the run was interrupted (or is still running)`,
    );
  }
  if (meta && meta.shards.length === 0) incomplete("metadata.json lists no shards");
  // An actshard metadata.json always carries checksums: one without them was edited, so nothing would be hashed.
  const ours = typeof meta?.tool === "string" && meta.tool.startsWith("actshard");

  const listed = new Set(entries.map((e) => shardLocation(e)));
  for (const o of objects) {
    if (SHARD_FILE_RE.test(o.name.split("/").pop()!) && !listed.has(o.name)) {
      // A glob-based reader (the seed's scripts) would read its records as well: an error unless allowed.
      issue(
        opts.allowExtra ? "warning" : "error",
        `shard file not listed in metadata.json (partial or stray)${
          opts.allowExtra ? "" : ": remove it, or pass --allow_extra"
        }`,
        o.name,
      );
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
    if (
      ours && (typeof e.bytes !== "number" || typeof e.crc32c !== "number" || typeof e.sha256 !== "string")
    ) {
      err("metadata.json has no bytes/crc32c/sha256 for this shard (actshard always writes them): edited?");
    }
    if (typeof e.bytes === "number" && info.size !== e.bytes) {
      err(`size ${info.size} ≠ ${e.bytes} in metadata (truncated?)`);
    }
    if (!opts.deep && info.crc32c !== undefined && typeof e.crc32c === "number") {
      check.method = "object-info";
      if (info.crc32c !== e.crc32c >>> 0) err(`crc32c ${info.crc32c} ≠ ${e.crc32c} in metadata`);
      check.records = e.n_records ?? e.total_samples_in_shard ?? 0;
      report.records += check.records;
      check.ok = !bad;
      continue;
    }
    check.method = "streamed";
    const perLayer = new Map<number, number>();
    let decodeError: string | null = null;
    let hashed: HashedObject | null = null;
    try {
      hashed = hashObject(await store.openRead(name));
      for await (const r of readShard(tappedStore(store, name, hashed), name, undefined, e)) {
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
    // Every byte is hashed, however far the decoder read: a flipped byte after the last record the decoder
    // needed (or inside a zstd frame that still decodes) is caught here.
    let h: Hashes | null = null;
    try {
      h = hashed ? await hashed.finish() : null;
    } catch (x) {
      if (decodeError === null) err(`cannot read: ${decodeLine(x, name)}`);
    }
    if (h && h.size !== info.size) {
      err(`read ${h.size} bytes, the store lists ${info.size} (changed while reading, or a short download)`);
    }
    if (h && typeof e.crc32c === "number" && h.crc32c !== e.crc32c >>> 0) {
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
