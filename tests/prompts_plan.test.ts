import { assert, assertEquals, assertNotEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { writeTinyTokenizer } from "./_tokenizer_fixture.ts";
import { join } from "node:path";
import type { ArcTask } from "../lib/arc/dataset.ts";
import { applyAugmentation, type Augmentation, GEOMETRIC_AUGMENTATIONS } from "../lib/arc/augment.ts";
import { compilePromptFormat, loadPromptFormat } from "../lib/prompts/format.ts";
import {
  buildPromptPlan,
  chatRendererFor,
  type PromptPlanOptions,
  renderTaskPrompts,
} from "../lib/prompts/plan.ts";
import { Tokenizer } from "../lib/tokenizer/bpe.ts";
import { DEFAULT_PROMPT_FORMAT } from "../lib/prompts/default_format.ts";
import { ActshardError } from "../lib/errors.ts";

const TASKS: ArcTask[] = [
  {
    id: "aaa",
    train: [
      { input: [[1, 2, 0]], output: [[2, 1, 0]] },
      { input: [[3, 4]], output: [[4, 3]] },
      { input: [[5]], output: [[5]] },
    ],
    test: [{ input: [[6, 7], [8, 9]] }, { input: [[1, 0, 1]] }],
  },
  {
    id: "bbb",
    train: [{ input: [[0, 1]], output: [[1, 0]] }],
    test: [{ input: [[2, 3, 4]], output: [[4, 3, 2]] }],
  },
];

async function setup(chatTemplate?: string) {
  const tmp = await tempDir();
  await writeTinyTokenizer(tmp.path, chatTemplate);
  const tokenizer = await Tokenizer.fromModelDir(tmp.path);
  const base: PromptPlanOptions = {
    tasks: TASKS,
    format: await loadPromptFormat(null),
    tokenizer,
    predictionsPerTask: 8,
    augment: "default",
    randomSeed: 42,
    maxSeqLength: 0,
  };
  return { tmp, tokenizer, base };
}

Deno.test("prompts: 8 augmented prompts per test input, seeded, in the seed's geometric order", async () => {
  const { tmp, base } = await setup();
  await using _ = tmp;
  const plan = buildPromptPlan(base);
  assertEquals(plan.length, 8 * 2 + 8 * 1);
  assertEquals(plan.map((p) => p.sample_idx), plan.map((_, i) => i));
  const a = plan.filter((p) => p.task_id === "aaa");
  // Augmentation k covers both test inputs; k cycles the 8 flips/rotations.
  for (let k = 0; k < 8; k++) {
    const [t0, t1] = [a[2 * k], a[2 * k + 1]];
    assertEquals([t0.test_index, t1.test_index], [0, 1]);
    assertEquals(t0.augmentation, t1.augmentation);
    const aug = t0.augmentation as unknown as Augmentation;
    assertEquals({ hflip: aug.hflip, rot90: aug.rot90 }, GEOMETRIC_AUGMENTATIONS[k]);
    assertEquals([...aug.train_order].sort(), [0, 1, 2]);
    if (aug.color_map[0] === 0) assertEquals([...aug.color_map].slice(1).sort(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // The prompt is exactly the format applied to the augmented task.
    const expect = renderTaskPrompts(
      applyAugmentation(TASKS[0], aug),
      base.format,
      chatRendererFor(base.tokenizer),
    );
    assertEquals([t0.prompt, t1.prompt], expect);
    assertEquals(Array.from(t0.input_ids), Array.from(base.tokenizer.encode(t0.prompt)));
  }
  // Colour maps and train orders vary between augmentations.
  assert(new Set(a.map((p) => JSON.stringify(p.augmentation))).size > 4);
  // Same seed → same plan; another seed → another plan.
  assertEquals(buildPromptPlan(base).map((p) => p.prompt), plan.map((p) => p.prompt));
  assertNotEquals(
    buildPromptPlan({ ...base, randomSeed: 43 }).map((p) => p.prompt),
    plan.map((p) => p.prompt),
  );
  // Counted per task: task bbb's prompts do not depend on task aaa being there.
  const onlyB = buildPromptPlan({ ...base, tasks: [TASKS[1]] });
  assertEquals(onlyB.map((p) => p.prompt), plan.filter((p) => p.task_id === "bbb").map((p) => p.prompt));
  // predictions_per_task 10 cycles back to the first geometric combination.
  const ten = buildPromptPlan({ ...base, tasks: [TASKS[1]], predictionsPerTask: 10 });
  assertEquals(ten.length, 10);
  assertEquals((ten[8].augmentation as unknown as Augmentation).rot90, 0);
  assertEquals((ten[9].augmentation as unknown as Augmentation).rot90, 1);
});

Deno.test("prompts: --augment none gives one plain prompt per test input; truncation is on the right", async () => {
  const { tmp, base } = await setup();
  await using _ = tmp;
  const plain = buildPromptPlan({ ...base, augment: "none" });
  assertEquals(plain.map((p) => [p.task_id, p.test_index, p.sample_idx]), [["aaa", 0, 0], ["aaa", 1, 1], [
    "bbb",
    0,
    2,
  ]]);
  const p = plain[2].prompt;
  assert(p.startsWith("<|im_start|>system\nYou are a helpful AI assistant."), p.slice(0, 80));
  assert(p.includes("<|im_start|>user\nLet's see if you can solve this simple ARC task."));
  assert(
    p.includes(
      "## Example 1\n\n### Input\n\n```grid shape: 1x2\n1 01\n```\n\n### Output\n\n```grid shape: 1x2\n1 10\n```",
    ),
  );
  assert(
    p.endsWith(
      "### Input\n\n```grid shape: 1x3\n1 234\n```<|im_end|>\n<|im_start|>assistant\n### Output\n\n```grid",
    ),
  );
  const cut = buildPromptPlan({ ...base, augment: "none", maxSeqLength: 50 });
  for (let i = 0; i < plain.length; i++) {
    assertEquals(Array.from(cut[i].input_ids), Array.from(plain[i].input_ids.slice(0, 50)));
    assertEquals(cut[i].untruncated_length, plain[i].input_ids.length);
  }
});

Deno.test("prompts: the model's chat template is used when its tokenizer_config has one", async () => {
  // Qwen2.5's template, shortened to the branch used here (system message given).
  const qwen25 = "{%- for message in messages %}\n" +
    "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n" +
    "{%- endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";
  const { tmp, base } = await setup(qwen25);
  await using _ = tmp;
  assert(base.tokenizer.chatTemplate !== null);
  const withTemplate = buildPromptPlan({ ...base, augment: "none" });
  const { tmp: tmp2, base: chatml } = await setup();
  await using _2 = tmp2;
  assertEquals(
    withTemplate.map((p) => p.prompt),
    buildPromptPlan({ ...chatml, augment: "none" }).map((p) => p.prompt),
  );
  // A different template really changes the prompt.
  const { tmp: tmp3, base: other } = await setup(
    "{% for m in messages %}[{{ m.role }}]{{ m.content }}<|im_end|>{% endfor %}{{ eos_token }}",
  );
  await using _3 = tmp3;
  const o = buildPromptPlan({ ...other, augment: "none" })[0].prompt;
  assert(o.startsWith("[system]You are") && o.endsWith("[assistant]### Output\n\n```grid"), o.slice(-60));
});

Deno.test("prompts: formats from files; a template that fails to render names the task", async () => {
  const { tmp, base } = await setup();
  await using _ = tmp;
  const f = join(tmp.path, "fmt.json");
  await Deno.writeTextFile(
    f,
    JSON.stringify({ ...DEFAULT_PROMPT_FORMAT, grid_encoder: "GridCodeBlockEncoder(MinimalGridEncoder())" }),
  );
  const fmt = await loadPromptFormat(f);
  const p = buildPromptPlan({ ...base, format: fmt, augment: "none" })[2].prompt;
  assert(p.includes("```grid\n234\n```<|im_end|>"), p.slice(-80));

  const failing = compilePromptFormat({
    ...DEFAULT_PROMPT_FORMAT,
    user_template: "{{ raise_exception('no') }}",
  }, f);
  try {
    buildPromptPlan({ ...base, format: failing });
    throw new Error("expected a failure");
  } catch (e) {
    assert(e instanceof ActshardError);
    assert(/task aaa: template user_template failed to render: no/.test(e.line()), e.line());
    assert(e.line().includes(f));
  }
  for (
    const [bad, re] of [
      [{ ...DEFAULT_PROMPT_FORMAT, grid_encoder: "NopeEncoder()" }, /unknown encoder NopeEncoder/],
      [{ ...DEFAULT_PROMPT_FORMAT, user_template: "{% for x in %}" }, /user_template does not parse/],
      [{ system_prompt: "x" }, /"user_template" is missing/],
    ] as const
  ) {
    try {
      compilePromptFormat(bad, f);
      throw new Error("expected a failure");
    } catch (e) {
      assert(e instanceof ActshardError && re.test(e.line()) && e.line().includes(f), String(e));
    }
  }
});
