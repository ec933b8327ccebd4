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
import { ActshardError } from "../errors.ts";
import { type DatasetMetadata, METADATA_NAME, readMetadata, shardLocation } from "./metadata.ts";
import { SHARD_FILE_RE } from "./writer.ts";
import { checkShard } from "./verify_shard.ts";
import { type ListedShard, Verification, type VerifyReport } from "./verify_state.ts";

// The report types live with the state that builds them (verify_state.ts), which both check modules import.
export type { ShardCheck, VerifyIssue, VerifyReport } from "./verify_state.ts";

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
