import { assert, assertEquals } from "./_assert.ts";
import { sharedPath, sharedTest, tempDir } from "./_shared.ts";
import { join } from "node:path";
import { type ArcTask, loadArcDataset } from "../lib/arc/dataset.ts";
import { ActshardError } from "../lib/errors.ts";

const TASK_A = {
  train: [{ input: [[1, 0]], output: [[0, 1]] }],
  test: [{ input: [[2, 0]], output: [[0, 2]] }],
};
const TASK_B = {
  train: [{ input: [[3]], output: [[4]] }, { input: [[5]], output: [[6]] }],
  test: [{ input: [[7]] }],
};

async function errorLine(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    assert(e instanceof ActshardError, `not an ActshardError: ${e}`);
    return e.line();
  }
  throw new Error("expected a failure");
}

Deno.test("arc: dict, directory and JSONL datasets load the same tasks in file order", async () => {
  await using dir = await tempDir();
  // "12345678" is integer-like: JS objects would list it first; file order must win.
  const dict = { zz01: TASK_A, "12345678": TASK_B, aa02: TASK_A };
  // Written by hand: JSON.stringify would also put the integer-like key first.
  const text = `{"zz01": ${JSON.stringify(TASK_A)},\n "12345678": ${JSON.stringify(TASK_B)},\n "aa02": ${
    JSON.stringify(TASK_A)
  }}`;
  await Deno.writeTextFile(join(dir.path, "d.json"), text);
  const fromDict = await loadArcDataset(join(dir.path, "d.json"));
  assertEquals(fromDict.map((t) => t.id), ["zz01", "12345678", "aa02"]);
  assertEquals(fromDict[1].test[0].output, undefined);
  assertEquals(fromDict[0].test[0].output, [[0, 2]]);

  await Deno.mkdir(join(dir.path, "tasks"));
  for (const [id, t] of Object.entries(dict)) {
    await Deno.writeTextFile(join(dir.path, "tasks", `${id}.json`), JSON.stringify(t));
  }
  await Deno.writeTextFile(join(dir.path, "tasks", "README.md"), "not a task");
  const fromDir = await loadArcDataset(join(dir.path, "tasks"));
  assertEquals(fromDir.map((t) => t.id), ["12345678", "aa02", "zz01"]); // sorted by name

  const lines =
    ["zz01", "12345678", "aa02"].map((id) => [id, dict[id as keyof typeof dict]] as const).map(([id, t]) =>
      JSON.stringify({ id, ...t })
    ).join("\n") + "\n\n";
  await Deno.writeTextFile(join(dir.path, "t.jsonl"), lines);
  const fromJsonl = await loadArcDataset(join(dir.path, "t.jsonl"));
  assertEquals(fromJsonl, fromDict);

  assertEquals((await loadArcDataset(join(dir.path, "d.json"), { nTasks: 2 })).map((t) => t.id), [
    "zz01",
    "12345678",
  ]);
  assertEquals((await loadArcDataset(join(dir.path, "tasks"), { nTasks: 1 })).length, 1);
  assertEquals((await loadArcDataset(join(dir.path, "t.jsonl"), { nTasks: 1 })).map((t) => t.id), ["zz01"]);
  // A single task file: id = file name.
  const single = await loadArcDataset(join(dir.path, "tasks", "aa02.json"));
  assertEquals(single.map((t: ArcTask) => t.id), ["aa02"]);
});

Deno.test("arc: bad tasks fail with one line naming the task", async () => {
  await using dir = await tempDir();
  const cases: [string, unknown, RegExp][] = [
    ["missing train", { t1: { test: TASK_A.test } }, /task t1: missing "train"/],
    ["missing test", { t2: { train: TASK_A.train } }, /task t2: missing "test"/],
    [
      "ragged",
      { t3: { ...TASK_A, train: [{ input: [[1, 2], [3]], output: [[1]] }] } },
      /task t3: train\[0\]\.input is ragged/,
    ],
    [
      "colour 10",
      { t4: { ...TASK_A, test: [{ input: [[10]] }] } },
      /task t4: test\[0\]\.input has colour 10/,
    ],
    ["colour -1", { t5: { ...TASK_A, test: [{ input: [[0, -1]] }] } }, /task t5: .*colour -1/],
    ["float colour", { t6: { ...TASK_A, test: [{ input: [[1.5]] }] } }, /task t6: .*colour 1.5/],
    ["empty grid", { t7: { ...TASK_A, test: [{ input: [] }] } }, /task t7: test\[0\]\.input is empty/],
    ["empty row", { t8: { ...TASK_A, test: [{ input: [[]] }] } }, /task t8: test\[0\]\.input row 0 is empty/],
    [
      "missing output",
      { t9: { ...TASK_A, train: [{ input: [[1]] }] } },
      /task t9: train\[0\]\.output is missing/,
    ],
    ["not a task", { t10: 5 }, /task t10: is not an object/],
  ];
  for (const [name, data, re] of cases) {
    const f = join(dir.path, "bad.json");
    await Deno.writeTextFile(f, JSON.stringify(data));
    const line = await errorLine(loadArcDataset(f));
    assert(re.test(line), `${name}: ${line}`);
    assert(line.includes(f), `${name}: no file in ${line}`);
    assert(!line.includes("\n"));
  }
});

Deno.test("arc: JSON syntax errors name file, line and column; JSONL names the line", async () => {
  await using dir = await tempDir();
  const f = join(dir.path, "broken.json");
  await Deno.writeTextFile(f, '{\n  "a": {"train": [],\n  "test": [}\n}\n');
  const line = await errorLine(loadArcDataset(f));
  assert(line.startsWith("invalid JSON"), line);
  assert(line.includes(`${f}:3:`), line);

  const j = join(dir.path, "t.jsonl");
  const good = JSON.stringify({ id: "ok1", ...TASK_A });
  await Deno.writeTextFile(j, `${good}\n{"id": "x", "train": [\n`);
  const l2 = await errorLine(loadArcDataset(j));
  assert(l2.includes(`${j}:2:`), l2);

  await Deno.writeTextFile(
    j,
    `${good}\n${JSON.stringify({ id: "bad2", ...TASK_A, test: [{ input: [[1], [1, 1]] }] })}\n`,
  );
  const l3 = await errorLine(loadArcDataset(j));
  assert(l3.includes("task bad2") && l3.includes(`${j}:2`) && l3.includes("ragged"), l3);

  await Deno.writeTextFile(j, `${good}\n${good}\n`);
  assert((await errorLine(loadArcDataset(j))).includes("duplicate task id"));
  assert((await errorLine(loadArcDataset(join(dir.path, "nope.json")))).includes("dataset not found"));
});

sharedTest("arc: the 400 training tasks load alike from the dict file and the directory", async () => {
  const dict = await loadArcDataset(sharedPath("data", "arc", "training_challenges.json"));
  const dir = await loadArcDataset(sharedPath("data", "arc", "training"));
  assertEquals(dict.length, 400);
  assertEquals(dir, dict);
  const small = await loadArcDataset(sharedPath("data", "seed", "test_data_small.json"));
  assertEquals(small.map((t) => t.id), ["test_task_001", "test_task_002"]);
});
