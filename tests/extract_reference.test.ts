/**
 * extract end to end on a tiny checkpoint over the real ARC training challenges: one record per (prompt, layer),
 * activations equal to the float64 reference interpreter on the same token ids, `--n_tasks`, argparse-style
 * layer lists, `--keep_padding` shapes, out-of-range layers refused before any work, and the CLI's error lines.
 */
import { join } from "node:path";
import { assert, assertClose, assertEquals, assertRejects } from "./_assert.ts";
import { sharedPath, sharedTest, tempDir } from "./_shared.ts";
import { fixturePathArgs, makeExtractFixture, runExtractCli } from "./_extract_fixture.ts";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { runExtract } from "../lib/pipeline/extract.ts";
import { prepareRun } from "../lib/pipeline/prepare.ts";
import { Dataset, type ReadRecord } from "../lib/shard/reader.ts";
import { referenceForward } from "../lib/model/reference.ts";
import { ActshardError } from "../lib/errors.ts";
import type { ExtractConfig } from "../lib/cli/extract_flags.ts";

const quiet = { log: () => {}, progress: { tty: false, write: () => {} } };

function config(args: string[]): ExtractConfig {
  const c = parseExtractFlags(args);
  if ("help" in c) throw new Error("unexpected --help");
  return c;
}

async function readAll(dir: string): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  for await (const r of (await Dataset.open(dir)).records()) out.push(r);
  return out;
}

sharedTest(
  "extract: training_challenges --n_tasks 5 on a tiny model equals the reference interpreter",
  async () => {
    await using tmp = await tempDir();
    const fx = await makeExtractFixture(tmp.path);
    const out = join(tmp.path, "out");
    const args = [
      ...fixturePathArgs(fx, out, sharedPath("data/arc/training_challenges.json")),
      "--n_tasks",
      "5",
      "--layers_to_extract",
      "0",
      "2",
      "--predictions_per_task",
      "2",
      "--batch_size",
      "4",
      // Keeps the float64 reference interpreter quick; truncation is the plan's job, not the pipeline's.
      "--max_seq_length",
      "384",
    ];
    const summary = await runExtract(config(args), quiet);
    const run = await prepareRun(config(args));
    const taskIds = new Set(run.items.map((p) => p.task_id));
    assertEquals(taskIds.size, 5, "--n_tasks 5");
    assertEquals(summary.records, run.items.length * 2);

    const records = await readAll(out);
    assertEquals(records.length, run.items.length * 2, "one record per (prompt, layer)");
    const seen = new Set(records.map((r) => `${r.sample_idx}/${r.layer}`));
    assertEquals(seen.size, records.length, "no duplicates");
    assertEquals(new Set(records.map((r) => r.layer)), new Set([0, 2]));
    const bySample = new Map(run.items.map((p) => [p.sample_idx, p]));
    for (const item of run.items) {
      const ids = item.input_ids;
      const ref = await referenceForward(fx.model, {
        ids,
        lengths: Int32Array.of(ids.length),
        batch: 1,
        seqLen: ids.length,
      }, [0, 2]);
      for (const layer of [0, 2]) {
        const r = records.find((x) => x.sample_idx === item.sample_idx && x.layer === layer)!;
        assert(r, `record ${item.sample_idx}/${layer}`);
        assertEquals(r.task_id, item.task_id);
        assertEquals(r.shape, [ids.length, 64], "real tokens only by default");
        assertEquals(r.prompt, bySample.get(r.sample_idx)!.prompt.slice(0, 200));
        assertClose(r.activation, ref.get(layer)!, 1e-4, `sample ${item.sample_idx} layer ${layer}`);
      }
    }
  },
);

Deno.test("extract: --keep_padding stores the padded batch length; real rows match the default run", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 3 });
  const base = [
    "--model_path",
    fx.model,
    "--dataset_path",
    fx.dataset,
    "--layers_to_extract",
    "1-2",
    "--predictions_per_task",
    "2",
    "--batch_size",
    "4",
  ];
  const plain = join(tmp.path, "plain"), padded = join(tmp.path, "padded");
  await runExtract(config([...base, "--output_dir", plain]), quiet);
  await runExtract(config([...base, "--output_dir", padded, "--keep_padding"]), quiet);
  const run = await prepareRun(config([...base, "--output_dir", padded, "--keep_padding"]));
  const a = await readAll(plain), b = await readAll(padded);
  assertEquals(a.length, 3 * 2 * 2);
  assertEquals(b.length, a.length);
  for (const rb of b) {
    const pos = run.items.findIndex((p) => p.sample_idx === rb.sample_idx);
    // The seed's batching: consecutive prompts, padded to the longest in the batch.
    const batch = run.items.slice(pos - (pos % 4), pos - (pos % 4) + 4);
    const padLen = Math.max(...batch.map((p) => p.input_ids.length));
    assertEquals(rb.shape, [padLen, 64]);
    const ra = a.find((x) => x.sample_idx === rb.sample_idx && x.layer === rb.layer)!;
    assertEquals(ra.shape[0], run.items[pos].input_ids.length);
    assertClose(rb.activation.subarray(0, ra.activation.length), ra.activation, 1e-5);
  }
  assert(b.some((r, i) => r.shape[0] > a[i].shape[0]), "some prompt is padded");
});

Deno.test("extract: layers out of range are refused before any work", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 1 });
  const out = join(tmp.path, "out");
  await assertRejects(
    runExtract(
      config([...fixturePathArgs(fx, out), "--layers_to_extract", "20", "21"]),
      quiet,
    ),
    (e: unknown) =>
      e instanceof ActshardError && e.kind === "usage" && /layer index 20 is out of range/.test(e.message),
  );
  await assertRejects(Deno.stat(out), Deno.errors.NotFound, "nothing created");
  const cli = await runExtractCli([...fixturePathArgs(fx, out), "--layers_to_extract", "2", "3"]);
  assertEquals(cli.code, 2);
  assertEquals(cli.stderr.trim().split("\n").length, 1, cli.stderr);
  assert(
    /^extract: layer index 3 is out of range \(--layers_to_extract\): this model has 3 layers/.test(
      cli.stderr,
    ),
    cli.stderr,
  );
});
