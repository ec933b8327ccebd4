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
 * const c = parseExtractFlags(["--dry_run", "--model_path", "model", "--dump_prompts", "p.jsonl"]);
 * if (!("help" in c)) console.log(await dryRun(c)); // { tasks, prompts, tokens, truncated, maxTokens }
 * ```
 */
import type { ExtractConfig } from "../cli/extract_flags.ts";
import { ActshardError } from "../errors.ts";
import { promptDumpLine, promptPlanItems } from "./plan.ts";
import { loadPromptPlanOptions } from "./plan_inputs.ts";

/** Counts of a dry run. */
export interface DryRunSummary {
  tasks: number;
  prompts: number;
  /** Tokens after truncation. */
  tokens: number;
  /** Prompts longer than --max_seq_length (cut). */
  truncated: number;
  /** Longest prompt in tokens, after truncation. */
  maxTokens: number;
  /** Where the JSONL went, or null. */
  dumpPath: string | null;
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
  const summary: DryRunSummary = {
    tasks: planOptions.tasks.length,
    prompts: 0,
    tokens: 0,
    truncated: 0,
    maxTokens: 0,
    dumpPath: config.dump_prompts,
  };
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
      const bytes = enc.encode(pending.join(""));
      for (let off = 0; off < bytes.length;) off += await file.write(bytes.subarray(off));
    }
    pending = [];
  };
  try {
    for (const item of items) {
      summary.prompts++;
      summary.tokens += item.input_ids.length;
      if (item.untruncated_length > item.input_ids.length) summary.truncated++;
      summary.maxTokens = Math.max(summary.maxTokens, item.input_ids.length);
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
