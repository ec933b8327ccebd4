/**
 * What the prompt plan of an extract run needs, loaded from its flags: the ARC tasks (`--dataset_path`,
 * `--n_tasks`), the prompt format (`--prompt_format`), the tokenizer of a model directory (no weights), and the
 * plan's own settings. One place for extract's preparation and `--dry_run`, so both build the same plan.
 *
 * @example
 * ```ts
 * import { loadPromptPlanOptions } from "./plan_inputs.ts";
 * import { buildPromptPlan } from "../prompts/plan.ts";
 * declare const config: Parameters<typeof loadPromptPlanOptions>[0];
 * const plan = buildPromptPlan(await loadPromptPlanOptions(config, "model"));
 * ```
 */
import type { ExtractConfig } from "./config.ts";
import { loadArcDataset } from "../arc/dataset.ts";
import { Tokenizer } from "../tokenizer/bpe.ts";
import { loadPromptFormat } from "../prompts/format.ts";
import type { PromptPlanOptions } from "../prompts/plan.ts";

/** The extract flags that shape the prompt plan. */
export type PromptPlanFlags = Pick<
  ExtractConfig,
  | "dataset_path"
  | "n_tasks"
  | "prompt_format"
  | "predictions_per_task"
  | "augment"
  | "random_seed"
  | "max_seq_length"
>;

/**
 * Load the dataset, the prompt format and the tokenizer of `modelDir` (in that order, so the first bad input
 * is the one reported) and return the options of `buildPromptPlan` / `promptPlanItems`.
 */
export async function loadPromptPlanOptions(
  config: PromptPlanFlags,
  modelDir: string,
): Promise<PromptPlanOptions> {
  const tasks = await loadArcDataset(config.dataset_path, { nTasks: config.n_tasks });
  const format = await loadPromptFormat(config.prompt_format);
  const tokenizer = await Tokenizer.fromModelDir(modelDir);
  return {
    tasks,
    format,
    tokenizer,
    predictionsPerTask: config.predictions_per_task,
    augment: config.augment,
    randomSeed: config.random_seed,
    maxSeqLength: config.max_seq_length,
  };
}
