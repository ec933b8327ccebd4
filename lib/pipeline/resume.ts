/**
 * Resume rules for the extract job. A run writes `metadata.json` (status `in_progress`, its fingerprint in
 * `config`) before its first shard and after each durable one; a rerun reads it back and decides:
 *
 * - no metadata.json and no shard files: a fresh run;
 * - the same fingerprint, `in_progress`: resume after the last durable shard (records are written in sample
 *   order, so the durable shards cover a prefix of the prompt list; the partial shard is discarded by the writer);
 * - the same fingerprint, `complete`: nothing to extract (pending uploads are still finished);
 * - a different fingerprint, or shard files without metadata: refused, naming the differing settings, unless
 *   `--overwrite` — and nothing in the directory is touched by a refusal.
 *
 * @example
 * ```ts
 * import { decideResume } from "./resume.ts";
 * import { prepareRun } from "./prepare.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import type { ExtractConfig } from "../pipeline/config.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 }); // the real vocab: prompts use all of it
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags([
 *   "--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`, "--output_dir", `${dir}/out`,
 *   "--layers_to_extract", "0", "1", "--predictions_per_task", "1",
 * ]) as ExtractConfig;
 * const run = await prepareRun(config); // its fingerprint: what the records depend on
 * const sampleIdx = run.items.map((p) => p.sample_idx);
 * const d = await decideResume(run.outDir, run.fingerprint, { overwrite: false, sampleIdx, layers: 2 });
 * console.log(d.mode); // "fresh": nothing written yet ("resume" after a killed run)
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import { ActshardError } from "../errors.ts";
import { type DatasetMetadata, METADATA_NAME, readMetadata } from "../shard/metadata.ts";
import { isShardFileName } from "../shard/formats/mod.ts";
import { LocalStore } from "../storage/local.ts";
import { describeDiffs, diffFingerprints, type RunFingerprint } from "./fingerprint.ts";

/** What to do with an output dir. */
export interface ResumeDecision {
  mode: "fresh" | "resume" | "complete" | "overwrite";
  /** The stored metadata (resume/complete). */
  existing: DatasetMetadata | null;
  /** Prompts (a prefix of this worker's list) whose records are all durable. */
  durablePrompts: number;
  /**
   * Records of the next prompt already durable (its first layers): a prompt larger than a shard is split
   * across shards, and a kill can fall between them.
   */
  durableRecordsOfNext: number;
}

/**
 * Files an extract run writes into its output dir (the only ones `--overwrite` removes): metadata.json and shard
 * files (names from the format and codec registries), and their dot-temp files.
 */
export const OUTPUT_FILE: { test(name: string): boolean } = {
  test: (name) =>
    /^\.?metadata\.json(\.tmp)?$/.test(name) ||
    isShardFileName(name.replace(/^\./, "").replace(/(\.body)?(\.tmp)?$/, "")),
};

async function listDir(dir: string): Promise<string[] | null> {
  try {
    const names: string[] = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    return names;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/**
 * Decide how a run with `fingerprint` treats `dir`. Reads only. `sampleIdx` is this worker's prompt list
 * (ascending sample_idx) and `layers` the number of records per prompt. Records are written prompt by prompt,
 * layers ascending, so the committed record count says exactly where the durable prefix ends.
 */
export async function decideResume(
  dir: string,
  fingerprint: RunFingerprint,
  opts: { overwrite: boolean; sampleIdx: readonly number[]; layers: number },
): Promise<ResumeDecision> {
  const names = await listDir(dir);
  const fresh: ResumeDecision = { mode: "fresh", existing: null, durablePrompts: 0, durableRecordsOfNext: 0 };
  if (names === null) return fresh;
  const ours = names.filter((n) => OUTPUT_FILE.test(n));
  if (opts.overwrite) {
    return { ...fresh, mode: ours.length ? "overwrite" : "fresh" };
  }
  if (!names.includes(METADATA_NAME)) {
    // Temp files of a run killed before its first metadata write are fine: the writer removes them.
    if (!ours.some((n) => /^shard_/.test(n))) return fresh;
    throw new ActshardError("output dir holds shard files but no metadata.json", {
      where: dir,
      hint: "use another --output_dir, or --overwrite to replace them",
    });
  }
  const existing = await readMetadata(new LocalStore(dir));
  return decideFromMetadata(existing, fingerprint, opts, {
    where: dir,
    hint: "use another --output_dir, rerun with the same settings, or pass --overwrite",
  });
}

/**
 * The resume decision for a run with `fingerprint` given a previous run's metadata (read from the output dir,
 * or from GCS): refused when the settings differ (`refusal` says where and what to do), else resume after its
 * durable records, or complete. `existing.shards` must be the durable shards, in order.
 */
export function decideFromMetadata(
  existing: DatasetMetadata,
  fingerprint: RunFingerprint,
  opts: { sampleIdx: readonly number[]; layers: number },
  refusal: { where: string; hint: string; what?: string },
): ResumeDecision {
  const diffs = diffFingerprints(existing.config ?? {}, fingerprint as unknown as Record<string, unknown>);
  if (diffs.length) {
    throw new ActshardError(
      `${refusal.what ?? "output dir"} holds a run with different settings: ${describeDiffs(diffs)}`,
      { where: refusal.where, hint: refusal.hint },
    );
  }
  const records = existing.shards.reduce((s, e) => s + (e.n_records ?? e.total_samples_in_shard), 0);
  const durablePrompts = Math.floor(records / opts.layers);
  const maxIdx = Math.max(-1, ...existing.shards.map((e) => e.sample_idx_max ?? -1));
  const consistent = durablePrompts <= opts.sampleIdx.length &&
    (durablePrompts === 0 || opts.sampleIdx[durablePrompts - 1] <= maxIdx) &&
    (records === 0 || opts.sampleIdx[Math.ceil(records / opts.layers) - 1] === maxIdx);
  if (!consistent) {
    throw new ActshardError(
      `metadata.json lists ${records} records (up to sample ${maxIdx}), which is not a prefix of this run`,
      {
        where: refusal.where,
        kind: "data",
        hint: "the output was edited or written by another tool; use --overwrite",
      },
    );
  }
  return {
    mode: existing.status === "complete" ? "complete" : "resume",
    existing,
    durablePrompts,
    durableRecordsOfNext: records % opts.layers,
  };
}

/** Remove the files a previous run wrote in `dir` (only those: metadata.json, shard files, their temps). */
export async function clearOutputDir(dir: string): Promise<number> {
  let n = 0;
  for (const name of (await listDir(dir)) ?? []) {
    if (!OUTPUT_FILE.test(name)) continue;
    await Deno.remove(join(dir, name));
    n++;
  }
  return n;
}
