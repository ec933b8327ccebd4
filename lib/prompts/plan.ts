/**
 * The prompt plan: every prompt a run processes, in order, with its token ids. For each task (file order),
 * augmentation k = 0..predictions_per_task−1 (geometric combination k mod 8, colour map, train order; drawn
 * from a stream seeded by `${randomSeed}/${task.id}`, so counted per task), then each test input of the
 * augmented task. With `augment: "none"` there is one plain prompt per test input. `sample_idx` is the global
 * position in the plan.
 *
 * @example
 * ```ts
 * import { buildPromptPlan } from "./plan.ts";
 * import { loadPromptFormat } from "./format.ts";
 * import { loadArcDataset } from "../arc/dataset.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * import { Tokenizer } from "../tokenizer/bpe.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 1, vocab: 1000 });
 * const plan = buildPromptPlan({
 *   tasks: await loadArcDataset(`${dir}/tasks.json`), format: await loadPromptFormat(null),
 *   tokenizer: await Tokenizer.fromModelDir(`${dir}/model`), predictionsPerTask: 8, augment: "default",
 *   randomSeed: 42, maxSeqLength: 2048,
 * });
 * console.log(plan.length, plan[0].input_ids.length); // 16 prompts (2 tasks × 8, one test input each)
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import type { ArcTask } from "../arc/dataset.ts";
import {
  applyAugmentation,
  type Augmentation,
  drawAugmentation,
  identityAugmentation,
} from "../arc/augment.ts";
import { Rng } from "../arc/rng.ts";
import { ActshardError } from "../errors.ts";
import type { Tokenizer } from "../tokenizer/bpe.ts";
import { ChatRenderer, cutAssistantEnding } from "./chat.ts";
import type { PromptFormat } from "./format.ts";

export { loadPromptFormat, type PromptFormat } from "./format.ts";

/** One prompt of the plan. */
export interface PromptItem {
  /** The ARC task the prompt is for. */
  task_id: string;
  /** Which of the task's test inputs it asks about. */
  test_index: number;
  /** Global index in the plan. */
  sample_idx: number;
  /** JSON-serializable description: hflip, rot90, color_map, train_order. */
  augmentation: Record<string, unknown>;
  /** The full prompt text (chat template applied). */
  prompt: string;
  /** Token ids, truncated (right) to maxSeqLength when > 0. */
  input_ids: Int32Array;
  /** Number of tokens before truncation. */
  untruncated_length: number;
}

/** Inputs of {@link buildPromptPlan}. */
export interface PromptPlanOptions {
  /** The tasks, in file order. */
  tasks: ArcTask[];
  /** How a task becomes prompt text. */
  format: PromptFormat;
  /** Tokenizes the prompts (and supplies the chat template). */
  tokenizer: Tokenizer;
  /** Augmented copies per task (`--predictions_per_task`). */
  predictionsPerTask: number;
  /** `none`: one plain prompt per test input, whatever `predictionsPerTask`. */
  augment: "default" | "none";
  /** Seeds the per-task augmentation streams (`--random_seed`). */
  randomSeed: number;
  /** Truncate token ids to this many (0 = no limit). */
  maxSeqLength: number;
}

/** Render the prompt text of each test input of `task` (already augmented). Errors name the task. */
export function renderTaskPrompts(task: ArcTask, format: PromptFormat, chat: ChatRenderer): string[] {
  try {
    const enc = format.encoder;
    const train_samples = task.train.map((s) => ({
      input: enc.toText(s.input),
      output: enc.toText(s.output),
    }));
    const assistant = format.assistant.render({ output: format.assistantOutput });
    return task.test.map((t) => {
      const user = format.user.render({ train_samples, test_input: enc.toText(t.input) });
      const text = chat.render([
        { role: "system", content: format.data.system_prompt },
        { role: "user", content: user },
        { role: "assistant", content: assistant },
      ]);
      return cutAssistantEnding(text);
    });
  } catch (e) {
    if (e instanceof ActshardError) {
      throw new ActshardError(`task ${task.id}: ${e.message}`, { where: format.source, hint: e.hint });
    }
    throw e;
  }
}

/** The chat renderer for a tokenizer: its chat template, else ChatML. */
export function chatRendererFor(tokenizer: Tokenizer): ChatRenderer {
  const tok = (id: number | null) => (id === null || id < 0 ? null : tokenizer.decode([id]));
  return new ChatRenderer(tokenizer.chatTemplate, {
    bos_token: tok(tokenizer.bosId),
    eos_token: tok(tokenizer.eosId),
    pad_token: tok(tokenizer.padId),
  });
}

/** The plan as a lazy sequence (same items and order as {@link buildPromptPlan}). */
export function* promptPlanItems(opts: PromptPlanOptions): Generator<PromptItem> {
  const chat = chatRendererFor(opts.tokenizer);
  let sampleIdx = 0;
  for (const task of opts.tasks) {
    const augs: Augmentation[] = [];
    if (opts.augment === "none") augs.push(identityAugmentation(task.train.length));
    else {
      const rng = Rng.fromKey(`${opts.randomSeed}/${task.id}`);
      for (let k = 0; k < opts.predictionsPerTask; k++) {
        augs.push(drawAugmentation(k, task.train.length, rng));
      }
    }
    for (const aug of augs) {
      const prompts = renderTaskPrompts(applyAugmentation(task, aug), opts.format, chat);
      for (let t = 0; t < prompts.length; t++) {
        const ids = opts.tokenizer.encode(prompts[t]);
        const max = opts.maxSeqLength;
        yield {
          task_id: task.id,
          test_index: t,
          sample_idx: sampleIdx++,
          augmentation: { ...aug },
          prompt: prompts[t],
          input_ids: max > 0 && ids.length > max ? ids.slice(0, max) : ids,
          untruncated_length: ids.length,
        };
      }
    }
  }
}

/**
 * Every prompt of the run, in order.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { buildPromptPlan, loadPromptFormat } from "./plan.ts";
 * import { loadArcDataset } from "../arc/dataset.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * import { Tokenizer } from "../tokenizer/bpe.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 3 })));
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 1, vocab: 1000 });
 * const plan = buildPromptPlan({
 *   tasks: await loadArcDataset(`${dir}/tasks.json`), format: await loadPromptFormat(null),
 *   tokenizer: await Tokenizer.fromModelDir(`${dir}/model`), predictionsPerTask: 1, augment: "none",
 *   randomSeed: 0, maxSeqLength: 0,
 * });
 * assert.deepStrictEqual(plan.map((p) => p.sample_idx), [0, 1, 2]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function buildPromptPlan(opts: PromptPlanOptions): PromptItem[] {
  return Array.from(promptPlanItems(opts));
}

/** The JSONL line written by `--dump_prompts` for one item. */
export function promptDumpLine(item: PromptItem): string {
  return JSON.stringify({
    task_id: item.task_id,
    test_index: item.test_index,
    sample_idx: item.sample_idx,
    augmentation: item.augmentation,
    prompt: item.prompt,
    input_ids: Array.from(item.input_ids),
  });
}
