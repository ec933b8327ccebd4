/**
 * `extract --dry_run`: everything up to token ids, nothing after. Loads the dataset, the prompt format and the
 * tokenizer files of `--model_path` (no weights), builds the prompt plan, optionally writes it as JSONL
 * (`--dump_prompts FILE`: one `{task_id, test_index, sample_idx, augmentation, prompt, input_ids}` per line,
 * streamed), and returns counts.
 *
 * @example
 * ```ts
 * import { dryRun } from "./dry_run.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 24 }); // the default layers 10-23 exist
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const c = parseExtractFlags([
 *   "--dry_run", "--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`,
 *   "--dump_prompts", `${dir}/p.jsonl`,
 * ]);
 * if (!("help" in c)) console.log(await dryRun(c)); // { tasks, prompts, tokens, truncated, maxTokens }
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type { ExtractConfig } from "./config.ts";
import { ActshardError } from "../errors.ts";
import { writeAll } from "../util/write_all.ts";
import { promptDumpLine, promptPlanItems } from "../prompts/plan.ts";
import { loadPromptPlanOptions } from "./plan_inputs.ts";

/** What a prompt plan holds: the summary printed before a run, dry or real. */
export interface PlanCounts {
  tasks: number;
  /** Test inputs over all tasks (each gives `--predictions_per_task` prompts). */
  testInputs: number;
  prompts: number;
  /** Tokens after truncation. */
  tokens: number;
  /** Prompts longer than --max_seq_length (cut). */
  truncated: number;
  /** Longest prompt in tokens, after truncation. */
  maxTokens: number;
}

/** Counts of a dry run. */
export interface DryRunSummary extends PlanCounts {
  /** Where the JSONL went, or null. */
  dumpPath: string | null;
}

/** A new count over `tasks` (add prompts with {@link countPrompt}). */
export function emptyPlanCounts(tasks: readonly { test: readonly unknown[] }[]): PlanCounts {
  return {
    tasks: tasks.length,
    testInputs: tasks.reduce((s, t) => s + t.test.length, 0),
    prompts: 0,
    tokens: 0,
    truncated: 0,
    maxTokens: 0,
  };
}

/** Add one prompt (its token count after truncation, and before) to `c`. */
export function countPrompt(c: PlanCounts, tokens: number, untruncated: number): void {
  c.prompts++;
  c.tokens += tokens;
  if (untruncated > tokens) c.truncated++;
  c.maxTokens = Math.max(c.maxTokens, tokens);
}

/**
 * "4 tasks, 5 test inputs, 40 prompts, 51,200 tokens (longest 2048), 3 truncated at --max_seq_length 2048":
 * what a user checks before hours of compute (a truncated prompt loses its test input's end).
 */
export function formatPlanCounts(c: PlanCounts, maxSeqLength: number): string {
  const n = (x: number) => x.toLocaleString("en-US");
  const cut = maxSeqLength > 0
    ? `${n(c.truncated)} truncated at --max_seq_length ${maxSeqLength}`
    : "0 truncated (--max_seq_length 0: no limit)";
  return `${n(c.tasks)} tasks, ${n(c.testInputs)} test inputs, ${n(c.prompts)} prompts, ` +
    `${n(c.tokens)} tokens (longest ${n(c.maxTokens)}), ${cut}`;
}

/** Check that `path` is a local model directory (hub ids are not resolved in a dry run). */
async function requireModelDir(path: string): Promise<void> {
  let isDir = false;
  try {
    isDir = (await Deno.stat(path)).isDirectory;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (!isDir) {
    throw new ActshardError("--dry_run needs --model_path to be a local model directory", {
      kind: "usage",
      where: path,
      hint: "point it at a directory with tokenizer.json, or vocab.json + merges.txt",
    });
  }
}

/** Build (and optionally dump) the prompt plan of `config` without loading any weights. */
export async function dryRun(config: ExtractConfig): Promise<DryRunSummary> {
  await requireModelDir(config.model_path);
  const planOptions = await loadPromptPlanOptions(config, config.model_path);
  const summary: DryRunSummary = { ...emptyPlanCounts(planOptions.tasks), dumpPath: config.dump_prompts };
  const items = promptPlanItems(planOptions);
  const file = config.dump_prompts === null ? null : await Deno.open(config.dump_prompts, {
    write: true,
    create: true,
    truncate: true,
  });
  const enc = new TextEncoder();
  let pending: string[] = [];
  const flush = async () => {
    if (file && pending.length) {
      await writeAll(file, enc.encode(pending.join("")));
    }
    pending = [];
  };
  try {
    for (const item of items) {
      countPrompt(summary, item.input_ids.length, item.untruncated_length);
      if (file) {
        pending.push(promptDumpLine(item) + "\n");
        if (pending.length >= 256) await flush();
      }
    }
    await flush();
  } finally {
    file?.close();
  }
  return summary;
}
