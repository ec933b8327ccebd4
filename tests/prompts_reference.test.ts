import { assert, assertEquals } from "./_assert.ts";
import { REPO_ROOT, sharedPath, sharedTest, tempDir } from "./_shared.ts";
import { join } from "node:path";
import { extractMain } from "../scripts/extract.ts";
import { DEFAULT_PROMPT_FORMAT } from "../lib/prompts/default_format.ts";
import { loadPromptFormat } from "../lib/prompts/format.ts";

const SEED_FORMAT = () => sharedPath("data", "seed", "prompt_format_output-from-examples-v0.json");
const REFERENCES: [string, string][] = [
  ["data/arc/training_challenges.json", "data/arc/reference_prompts_training_first20.json"],
  ["data/seed/test_data_small.json", "data/seed/reference_prompts_test_data_small.json"],
  ["data/arc/training", "data/arc/reference_prompts_training_first20.json"],
];

/** A model dir holding the shared Qwen2 vocab/merges/added tokens/config (symlinked, not copied). */
async function sharedTokenizerDir(dir: string): Promise<string> {
  const model = join(dir, "model");
  await Deno.mkdir(model);
  for (const f of ["vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json"]) {
    await Deno.symlink(sharedPath("data", "qwen2-tokenizer", f), join(model, f));
  }
  return model;
}

/** `--dry_run` flags that dump the plain prompts (no augmentation, no truncation) of `dataset` to `out`. */
function plainDumpArgs(model: string, dataset: string, out: string): string[] {
  return [
    ...["--dry_run", "--model_path", model, "--dataset_path", dataset],
    ...["--augment", "none", "--max_seq_length", "0", "--dump_prompts", out],
  ];
}

async function readDump(path: string): Promise<Record<string, unknown>[]> {
  return (await Deno.readTextFile(path)).split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

interface RefPrompt {
  task_id: string;
  test_index: number;
  prompt: string;
  input_ids: number[];
}

function compare(dump: Record<string, unknown>[], refs: RefPrompt[], label: string): void {
  assert(dump.length >= refs.length, `${label}: ${dump.length} prompts < ${refs.length}`);
  refs.forEach((r, i) => {
    const d = dump[i];
    assertEquals([d.task_id, d.test_index, d.sample_idx], [r.task_id, r.test_index, i], label);
    assertEquals(d.prompt, r.prompt, `${label} ${r.task_id}: prompt`);
    assertEquals(d.input_ids, r.input_ids, `${label} ${r.task_id}: input_ids`);
  });
}

sharedTest("prompts: the built-in default format is the seed's format", async () => {
  const seed = JSON.parse(await Deno.readTextFile(SEED_FORMAT()));
  for (const k of ["system_prompt", "user_template", "assistant_template", "grid_encoder"] as const) {
    assertEquals(DEFAULT_PROMPT_FORMAT[k], seed[k], k);
  }
  const a = await loadPromptFormat(null);
  const b = await loadPromptFormat(SEED_FORMAT());
  assertEquals(a.encoder.spec, b.encoder.spec);
  assertEquals(a.assistantOutput, b.assistantOutput);
});

sharedTest("prompts: --dry_run --dump_prompts reproduces every reference prompt and its ids", async () => {
  await using tmp = await tempDir();
  const model = await sharedTokenizerDir(tmp.path);
  for (const [dataset, ref] of REFERENCES) {
    const refs: RefPrompt[] = JSON.parse(await Deno.readTextFile(sharedPath(...ref.split("/")))).prompts;
    for (const format of [SEED_FORMAT(), null]) {
      const out = join(tmp.path, "dump.jsonl");
      const args = [
        ...plainDumpArgs(model, sharedPath(...dataset.split("/")), out),
        ...["--n_tasks", String(refs.length)],
        ...(format ? ["--prompt_format", format] : []),
      ];
      assertEquals(await extractMain(args), 0);
      const dump = await readDump(out);
      compare(dump, refs, `${dataset} format=${format ? "seed" : "built-in"}`);
      assertEquals(dump.length, refs.length);
      for (const d of dump) {
        assertEquals(d.augmentation, { ...(d.augmentation as object), hflip: false, rot90: 0 });
      }
    }
  }
});

sharedTest("prompts: the extract CLI (subprocess) dumps the seed's two reference prompts", async () => {
  await using tmp = await tempDir();
  const model = await sharedTokenizerDir(tmp.path);
  const out = join(tmp.path, "p.jsonl");
  const r = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "scripts/extract.ts",
      ...plainDumpArgs(model, sharedPath("data", "seed", "test_data_small.json"), out),
      ...["--prompt_format", SEED_FORMAT()],
    ],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(r.stdout);
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
  assert(/2 prompts/.test(stdout) && /0 truncated/.test(stdout), stdout);
  const refs =
    JSON.parse(await Deno.readTextFile(sharedPath("data", "seed", "reference_prompts_test_data_small.json")))
      .prompts;
  compare(await readDump(out), refs, "cli");
});
