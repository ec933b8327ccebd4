/**
 * The checks a merge (merge.ts) runs on the set of workers it found, before it writes anything: all N of N
 * present exactly once ({@link checkSet}), every one `status: complete` ({@link checkComplete}), all with the
 * same run config ({@link checkConfigs}), every listed shard there with its recorded size
 * ({@link checkShardsPresent}), and no two workers holding the same samples ({@link checkRanges}). Each throws
 * an {@link ActshardError} naming the offending workers. Also the worker type and path helpers merge.ts shares.
 *
 * @example
 * ```ts
 * import type { BlobStore } from "../storage/types.ts";
 * import { checkSet, type FoundWorker } from "./merge_checks.ts";
 * const worker = (index: number): FoundWorker => ({
 *   name: `worker-0000${index}-of-00003`, index, count: 3, store: {} as BlobStore,
 *   prefix: `worker-0000${index}-of-00003/`, url: `out/worker-0000${index}-of-00003`,
 *   objects: new Map([["metadata.json", { name: "metadata.json", size: 2 }]]),
 * });
 * console.log(checkSet([worker(2), worker(0), worker(1)]).map((w) => w.index)); // [ 0, 1, 2 ]
 * try {
 *   checkSet([worker(0), worker(2)]);
 * } catch (e) {
 *   console.log((e as Error).message); // cannot merge: 1 of 3 workers missing: worker-00001-of-00003
 * }
 * ```
 *
 * @module
 */
import { dirname } from "node:path";
import { ActshardError } from "../errors.ts";
import type { BlobStore, ObjectInfo } from "../storage/types.ts";
import { workerDirName } from "./work_split.ts";
import { diffFingerprints } from "./fingerprint.ts";
import { type DatasetMetadata, METADATA_NAME, type ShardEntry, shardLocation } from "../shard/metadata.ts";

/** Config keys that legitimately differ between the workers of one run. */
export const PER_WORKER_KEYS = ["worker_index", "n_prompts"];

/** A worker found in the sources. */
export interface FoundWorker {
  name: string;
  index: number;
  count: number;
  /** The store holding the worker's files, and the worker's prefix within it ("" or "worker-…/"). */
  store: BlobStore;
  prefix: string;
  /** The worker directory's own location (for messages and copies). */
  url: string;
  /** Objects of the worker, names relative to the worker directory. */
  objects: Map<string, ObjectInfo>;
}

/** All N of N present once, one N. Returns the workers in index order. */
export function checkSet(found: FoundWorker[]): FoundWorker[] {
  const counts = [...new Set(found.map((w) => w.count))];
  if (counts.length > 1) {
    throw new ActshardError(`workers of different runs: worker counts ${counts.join(" and ")}`, {
      where: found.map((w) => w.url).join(", "),
      hint: "merge the workers of one run (one --num_workers) at a time",
    });
  }
  const n = counts[0];
  const byIndex = new Map<number, FoundWorker>();
  for (const w of found) {
    const prev = byIndex.get(w.index);
    if (prev && prev.url !== w.url) {
      throw new ActshardError(`worker ${w.name} was given twice`, {
        where: `${prev.url}, ${w.url}`,
        hint: "give each worker's output once",
      });
    }
    byIndex.set(w.index, w);
  }
  const missing: string[] = [];
  for (let i = 0; i < n; i++) if (!byIndex.has(i)) missing.push(workerDirName(i, n));
  for (const w of found) {
    if (!w.objects.has(METADATA_NAME)) missing.push(`${w.name} (no metadata.json)`);
  }
  if (missing.length) {
    throw new ActshardError(
      `cannot merge: ${missing.length} of ${n} workers missing: ${missing.join(", ")}`,
      {
        where: [...new Set(found.map((w) => parentOf(w.url)))].join(", "),
        hint: "wait for (or rerun) those workers; the merge writes nothing until all are complete",
      },
    );
  }
  return [...byIndex.values()].sort((a, b) => a.index - b.index);
}

/** Every worker says `status: complete`; refuses naming the others with their status and shards so far. */
export function checkComplete(workers: FoundWorker[], metas: DatasetMetadata[]): void {
  const bad = workers.flatMap((w, i) =>
    metas[i].status === "complete"
      ? []
      : [`${w.name} (status ${metas[i].status ?? "unset"}, ${metas[i].shards.length} shards so far)`]
  );
  if (bad.length) {
    throw new ActshardError(
      `cannot merge: ${bad.length} of ${workers.length} workers not complete: ${bad.join(", ")}`,
      {
        where: parentOf(workers[0].url),
        hint: "rerun those workers (same command and worker index) until they finish; then merge again",
      },
    );
  }
}

/** Every worker ran the same config (apart from {@link PER_WORKER_KEYS}) and agrees with its directory name. */
export function checkConfigs(workers: FoundWorker[], metas: DatasetMetadata[]): void {
  const strip = (c: Record<string, unknown>) =>
    Object.fromEntries(Object.entries(c ?? {}).filter(([k]) => !PER_WORKER_KEYS.includes(k)));
  const ref = strip(metas[0].config);
  const problems: string[] = [];
  workers.forEach((w, i) => {
    const c = metas[i].config ?? {};
    if (c.worker_index !== undefined && c.worker_index !== w.index) {
      problems.push(`${w.name} says worker_index ${c.worker_index}`);
    }
    if (c.num_workers !== undefined && c.num_workers !== w.count) {
      problems.push(`${w.name} says num_workers ${c.num_workers}`);
    }
    if (i === 0) return;
    const d = diffFingerprints(ref, strip(c));
    if (d.length) {
      problems.push(`${w.name} differs from ${workers[0].name} in ${d.map((x) => x.key).join(", ")}`);
    }
  });
  if (problems.length) {
    throw new ActshardError(`cannot merge: workers of different runs: ${problems.join("; ")}`, {
      where: parentOf(workers[0].url),
      hint: "every worker must run the same command (only the worker index differs)",
    });
  }
}

/** Every shard a worker's metadata lists is among its objects, with the recorded size. */
export function checkShardsPresent(workers: FoundWorker[], metas: DatasetMetadata[]): void {
  const bad: string[] = [];
  workers.forEach((w, i) => {
    for (const s of metas[i].shards) {
      const loc = shardLocation(s);
      const o = w.objects.get(loc);
      if (!o) bad.push(`${w.name}/${loc} missing`);
      else if (typeof s.bytes === "number" && o.size !== s.bytes) {
        bad.push(`${w.name}/${loc} has ${o.size} bytes, metadata says ${s.bytes}`);
      }
    }
  });
  if (bad.length) {
    throw new ActshardError(
      `cannot merge: shards listed in worker metadata are not there: ${bad.slice(0, 5).join(", ")}${
        bad.length > 5 ? `, … (${bad.length} in all)` : ""
      }`,
      {
        where: parentOf(workers[0].url),
        kind: "data",
        hint: "run `deno task verify` on those workers, then rerun them",
      },
    );
  }
}

/** Worker sample ranges must not overlap (the split is contiguous); overlap would duplicate records. */
export function checkRanges(workers: FoundWorker[], metas: DatasetMetadata[]): void {
  const ranges = workers.map((w, i) => ({ w, ...workerRange(metas[i].shards) }));
  const withData = ranges.filter((r) => r.min !== null).sort((a, b) => a.min! - b.min!);
  for (let i = 1; i < withData.length; i++) {
    if (withData[i].min! <= withData[i - 1].max!) {
      throw new ActshardError(
        `cannot merge: ${withData[i - 1].w.name} and ${withData[i].w.name} both hold samples ` +
          `${withData[i].min}..${Math.min(withData[i].max!, withData[i - 1].max!)}`,
        { where: parentOf(workers[0].url), kind: "data", hint: "the workers did not split one prompt list" },
      );
    }
  }
}

/** The smallest and largest `sample_idx` over a worker's shards (null when it has none). */
export function workerRange(shards: ShardEntry[]): { min: number | null; max: number | null } {
  let min: number | null = null;
  let max: number | null = null;
  for (const s of shards) {
    if (typeof s.sample_idx_min === "number") {
      min = min === null ? s.sample_idx_min : Math.min(min, s.sample_idx_min);
    }
    if (typeof s.sample_idx_max === "number") {
      max = max === null ? s.sample_idx_max : Math.max(max, s.sample_idx_max);
    }
  }
  return { min, max };
}

/** `u` without trailing slashes (a lone "/" stays). */
export function trimSlash(u: string): string {
  return u.length > 1 ? u.replace(/\/+$/, "") : u;
}
/** The parent directory or gs:// prefix of `u` ("" for a bare name). */
export function parentOf(u: string): string {
  const t = trimSlash(u);
  if (t.startsWith("gs://")) return t.slice(0, t.lastIndexOf("/"));
  const i = t.lastIndexOf("/");
  return i < 0 ? "" : dirname(t);
}
