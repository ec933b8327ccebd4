/**
 * What the prompt plan of an extract run needs, loaded from its flags: the ARC tasks (`--dataset_path`,
 * `--n_tasks`), the prompt format (`--prompt_format`), the tokenizer of a model directory (no weights), and the
 * plan's own settings. One place for extract's preparation and `--dry_run`, so both build the same plan.
 *
 * @example
 * ```ts
 * import { loadPromptPlanOptions } from "./plan_inputs.ts";
 * import { buildPromptPlan } from "../prompts/plan.ts";
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
 * const plan = buildPromptPlan(await loadPromptPlanOptions(config, `${dir}/model`));
 * console.log(plan.length); // one prompt per test input with --predictions_per_task 1
 * await Deno.remove(dir, { recursive: true });
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
