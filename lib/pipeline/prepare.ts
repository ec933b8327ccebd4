/**
 * Everything an extract run decides before touching the output dir: the model (resolved, config read, layers
 * checked), the dataset and its fingerprint, the prompt plan and this worker's part of it, the batch plan (the
 * whole run's, cut to the batches holding this worker's prompts), and the size estimate. Pure with respect to the output: a bad flag, a missing file or an out-of-range layer fails
 * here, before any work and before anything is written.
 *
 * @example
 * ```ts
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
 * const run = await prepareRun(config);
 * console.log(run.items.length, run.outDir, run.estimateBytes);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { join } from "node:path";
import type { ExtractConfig } from "./config.ts";
import { loadModelConfig, type Qwen2Config } from "../model/config.ts";
import { validateLayers } from "../model/qwen2.ts";
import { buildPromptPlan, type PromptItem } from "../prompts/plan.ts";
import { countPrompt, emptyPlanCounts, formatPlanCounts, type PlanCounts } from "./dry_run.ts";
import { loadPromptPlanOptions } from "./plan_inputs.ts";
import { batchesTouching, type PartnerCost, partnerCost, planBatches } from "./batching.ts";
import { ActshardError } from "../errors.ts";
import { type DiskCheck, estimateOutputBytes } from "./disk.ts";
import { datasetSha256, modelSha256, promptsSha256, type RunFingerprint, sha256File } from "./fingerprint.ts";
import type { PromptTokens } from "./overlap.ts";
import { splitWork, workerDirName } from "./work_split.ts";

/**
 * Batches per length-sorting window (see planBatches); 1 under --keep_padding, the seed's batching. Part of the
 * run fingerprint (`batch_window`): changing it changes the batch plan, hence the records' last bits.
 */
export const SORT_WINDOW = 4;

/** The outcome of {@link prepareRun}. */
export interface PreparedRun {
  config: ExtractConfig;
  modelDir: string;
  modelConfig: Qwen2Config;
  /** Requested layers, validated, ascending. */
  layers: number[];
  /** This worker's prompts in sample_idx order (sample_idx stays global): `allItems[first, first + length)`. */
  items: PromptTokens[];
  /** The whole run's prompts (all workers), in sample_idx order: the list `plan` positions index. */
  allItems: PromptTokens[];
  /** Position of this worker's first prompt in `allItems`. */
  first: number;
  /** Prompts in the whole run (all workers). */
  totalPrompts: number;
  /**
   * This worker's batches: those of the whole run's plan (the same for every worker and for a single-host run)
   * that hold at least one of its prompts, as positions in `allItems`, in run order. Positions outside
   * `[first, first + items.length)` are batch partners, computed but written by their own worker.
   */
  plan: number[][];
  /** The extra compute of the partner rows (zero for a single worker). */
  partners: PartnerCost;
  padId: number;
  /** Where this worker's shards and metadata.json go. */
  outDir: string;
  /** Sub-prefix of this worker under the run's root ("" for a single worker). */
  workerDir: string;
  fingerprint: RunFingerprint;
  /** Tokens stored (padded lengths under --keep_padding). */
  storedTokens: number;
  /** Estimated bytes of all shards of this worker. */
  estimateBytes: number;
  /** The whole run's tasks, test inputs, prompts, tokens and truncations (the pre-run summary). */
  counts: PlanCounts;
}

/** Resolve, load and plan; throws an ActshardError on anything a user can get wrong. */
export async function prepareRun(config: ExtractConfig): Promise<PreparedRun> {
  const modelDir = await resolveModel(config.model_path);
  const modelConfig = await loadModelConfig(modelDir);
  const layers = validateLayers(modelConfig, config.layers_to_extract);
  const planOptions = await loadPromptPlanOptions(config, modelDir);
  const all = buildPromptPlan(planOptions);
  const counts = emptyPlanCounts(planOptions.tasks);
  for (const p of all) countPrompt(counts, p.input_ids.length, p.untruncated_length);

  // The whole run's list in sample_idx order; the batch plan is computed over it, by every worker alike.
  const allItems = [...all].sort((a, b) => a.sample_idx - b.sample_idx);
  const { first, end, workerDir } = workerRange(config, allItems);
  const items = allItems.slice(first, end);
  const lengths = allItems.map((p) => p.input_ids.length);
  const { plan, batchWindow, storedTokens } = workerBatchPlan(config, lengths, first, end);
  const fingerprint = await runFingerprint(config, modelDir, layers, batchWindow, items.length, all);

  return {
    config,
    modelDir,
    modelConfig,
    layers,
    items,
    allItems,
    first,
    totalPrompts: all.length,
    plan,
    partners: partnerCost(plan, first, end, lengths),
    padId: planOptions.tokenizer.padId,
    outDir: workerDir ? join(config.output_dir, workerDir) : config.output_dir,
    workerDir,
    fingerprint,
    storedTokens,
    counts,
    estimateBytes: estimateOutputBytes({
      tokens: storedTokens,
      hidden: modelConfig.hidden_size,
      layers: layers.length,
      dtype: config.dtype,
      prompts: items.length,
    }),
  };
}

/** This worker's prompts, `allItems[first, end)` (all of them for a single host), and its sub-directory. */
function workerRange(
  config: ExtractConfig,
  allItems: PromptTokens[],
): { first: number; end: number; workerDir: string } {
  if (config.num_workers <= 1) return { first: 0, end: allItems.length, workerDir: "" };
  const mine = splitWork(
    allItems.map((p) => ({ sample_idx: p.sample_idx, n_tokens: p.input_ids.length })),
    config.num_workers,
    config.worker_index,
  );
  // The split is contiguous in sample_idx order: this worker's prompts are one range of the list.
  const first = mine.length ? allItems.findIndex((p) => p.sample_idx === mine[0]) : 0;
  if (mine.some((idx, i) => allItems[first + i]?.sample_idx !== idx)) {
    throw new ActshardError("work split: a worker's prompts are not one contiguous range", {
      kind: "internal",
    });
  }
  return {
    first,
    end: first + mine.length,
    workerDir: workerDirName(config.worker_index, config.num_workers),
  };
}

/**
 * The whole run's batch plan cut to the batches holding this worker's prompts `[first, end)`, its sort window,
 * and the tokens this worker stores (padded lengths under --keep_padding).
 */
function workerBatchPlan(
  config: ExtractConfig,
  lengths: number[],
  first: number,
  end: number,
): { plan: number[][]; batchWindow: number; storedTokens: number } {
  const batchWindow = config.keep_padding ? 1 : SORT_WINDOW;
  const plan = batchesTouching(
    planBatches(lengths, { batchSize: config.batch_size, window: batchWindow }),
    first,
    end,
  );
  let storedTokens = 0;
  for (const b of plan) {
    const own = b.filter((p) => p >= first && p < end);
    storedTokens += config.keep_padding
      ? own.length * Math.max(...b.map((p) => lengths[p]))
      : own.reduce((s, p) => s + lengths[p], 0);
  }
  return { plan, batchWindow, storedTokens };
}

/** What makes a run this run (settings, model, data, prompts): a resume or a shared GCS prefix must match it. */
async function runFingerprint(
  config: ExtractConfig,
  modelDir: string,
  layers: number[],
  batchWindow: number,
  nPrompts: number,
  all: PromptItem[],
): Promise<RunFingerprint> {
  return {
    model_path: config.model_path,
    model_sha256: await modelSha256(modelDir),
    dataset_path: config.dataset_path,
    dataset_sha256: await datasetSha256(config.dataset_path),
    n_tasks: config.n_tasks,
    layers_to_extract: layers,
    prompt_format: config.prompt_format ? await sha256File(config.prompt_format) : "default",
    random_seed: config.random_seed,
    predictions_per_task: config.predictions_per_task,
    max_seq_length: config.max_seq_length,
    augment: config.augment,
    dtype: config.dtype,
    format: config.format,
    codec: config.codec,
    shard_size_gb: config.shard_size_gb,
    keep_padding: config.keep_padding,
    batch_size: config.batch_size,
    batch_window: batchWindow,
    num_workers: config.num_workers,
    worker_index: config.worker_index,
    n_prompts: nPrompts,
    prompts_sha256: promptsSha256(all),
  };
}

/**
 * The summary printed before any compute: what will be read, what the plan holds (truncations included), and
 * what it will write against the free disk; paths absolute, as resolved.
 */
export function runSummaryLines(run: PreparedRun, disk: DiskCheck, remainingPrompts: number): string[] {
  const c = run.config;
  const m = run.modelConfig;
  const lines = [
    `model ${run.modelDir}${run.modelDir === c.model_path ? "" : ` (${c.model_path})`}: ` +
    `${m.num_hidden_layers} layers, hidden ${m.hidden_size}; dataset ${c.dataset_path}`,
    `${formatPlanCounts(run.counts, c.max_seq_length)}` +
    (run.workerDir
      ? `; this worker (${c.worker_index + 1} of ${c.num_workers}): ${run.items.length} prompts`
      : ""),
    `layers ${fmtLayers(run.layers)} → ~${diskSize(run.estimateBytes)} of ` +
    `${c.format}/${c.codec}/${c.dtype} in ${run.outDir}` +
    (remainingPrompts < run.items.length ? ` (~${diskSize(disk.needBytes)} still to write)` : "") +
    `; ${diskSize(disk.freeBytes)} free there`,
  ];
  return lines;
}

/** Bytes in the units of checkFreeDisk's refusal (decimal: "226.22 GB", "6.8 MB"), so both lines agree. */
function diskSize(b: number): string {
  return b < 1e9 ? `${(b / 1e6).toFixed(1)} MB` : `${(b / 1e9).toFixed(2)} GB`;
}

/** "10-23" for a contiguous run of 3+, else "20,22". */
export function fmtLayers(layers: number[]): string {
  const contiguous = layers.every((l, i) => i === 0 || l === layers[i - 1] + 1);
  return contiguous && layers.length > 2 ? `${layers[0]}-${layers[layers.length - 1]}` : layers.join(",");
}

/** A model directory as given, else a Hub id resolved through the local HF cache. */
async function resolveModel(pathOrId: string): Promise<string> {
  const isDir = await Deno.stat(pathOrId).then((s) => s.isDirectory, () => false);
  if (isDir) return pathOrId;
  const { resolveModelDir } = await import("../model/hub.ts");
  return await resolveModelDir(pathOrId);
}
