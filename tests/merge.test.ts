import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import { join } from "node:path";
import { mergeDatasets } from "../lib/pipeline/merge.ts";
import { type DatasetMetadata, readMetadata, writeMetadataAtomic } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { workerDirName } from "../lib/pipeline/work_split.ts";
import { ActshardError } from "../lib/errors.ts";
import { allRecords, expectedRecords, LAYERS, N_PROMPTS, writeWorkers } from "./_merge_fixture.ts";

const refusal = (re: RegExp) => (e: unknown) => {
  assert(e instanceof ActshardError, `not an ActshardError: ${e}`);
  assert(re.test(e.line()), `"${e.line()}" does not match ${re}`);
  return true;
};

Deno.test("merge: in place, the root lists every worker's shards and reads as one dataset", async () => {
  await using tmp = await tempDir();
  await writeWorkers(tmp.path, 3);
  const before = await Array.fromAsync(Deno.readDir(join(tmp.path, workerDirName(1, 3))));
  const meta = await mergeDatasets([tmp.path], tmp.path);
  assertEquals(meta.status, "complete");
  assertEquals(meta.total_samples, N_PROMPTS * LAYERS.length);
  const workers = meta.workers as { name: string; total_shards: number; sample_idx_min: number }[];
  assertEquals(workers.map((w) => w.name), [0, 1, 2].map((i) => workerDirName(i, 3)));
  assertEquals(meta.total_shards, workers.reduce((s, w) => s + w.total_shards, 0));
  assert(meta.total_shards > 3, "several shards per worker");
  assertEquals(meta.shards.map((s) => s.shard_id), meta.shards.map((_, i) => i + 1));
  for (const s of meta.shards) {
    assert(/^worker-\d{5}-of-00003\/shard_\d{4}\.pkl$/.test(s.path!), s.path);
    assert(typeof s.crc32c === "number" && typeof s.sha256 === "string");
  }
  // Shards are in sample order across workers; worker fields are dropped from the run config.
  const mins = meta.shards.map((s) => s.sample_idx_min);
  assertEquals(mins, [...mins].sort((a, b) => a - b));
  assertEquals([meta.config.worker_index, meta.config.num_workers, meta.config.n_prompts], [
    undefined,
    3,
    N_PROMPTS,
  ]);
  // Nothing copied or changed in the workers' directories.
  assertEquals(await Array.fromAsync(Deno.readDir(join(tmp.path, workerDirName(1, 3)))), before);
  assertEquals(await readMetadata(new LocalStore(tmp.path)), meta);
  assertEquals(await allRecords(tmp.path), expectedRecords());
  // Merging again is idempotent (replaces its own root).
  const again = await mergeDatasets([tmp.path], tmp.path);
  assertEquals(again.shards, meta.shards);
});

Deno.test("merge: worker directories as sources, and into another root (copies)", async () => {
  await using tmp = await tempDir();
  const src = join(tmp.path, "src");
  await writeWorkers(src, 2);
  // Worker dirs given one by one, destination = their parent: no copy.
  const m1 = await mergeDatasets([join(src, workerDirName(1, 2)), join(src, workerDirName(0, 2))], src);
  assertEquals(m1.total_samples, N_PROMPTS * LAYERS.length);
  // Elsewhere: the workers are copied under the destination first.
  const dst = join(tmp.path, "dst");
  await mergeDatasets([src], dst);
  assert((await Deno.stat(join(dst, workerDirName(0, 2), "metadata.json"))).isFile);
  assertEquals(await allRecords(dst), expectedRecords());
});

Deno.test("merge: refuses missing, incomplete, duplicate and mismatched workers, naming them", async () => {
  await using tmp = await tempDir();
  const a = join(tmp.path, "a");
  await writeWorkers(a, 3, { skip: [1] });
  await assertRejects(mergeDatasets([a], a), refusal(/1 of 3 workers missing: worker-00001-of-00003/));

  const b = join(tmp.path, "b");
  await writeWorkers(b, 3, { incomplete: [0, 2] });
  await assertRejects(
    mergeDatasets([b], b),
    refusal(/2 of 3 workers not complete: worker-00000-of-00003 \(status in_progress.*worker-00002-of-00003/),
  );

  const c = join(tmp.path, "c");
  await writeWorkers(c, 2, { config: (w) => (w === 1 ? { layers_to_extract: [5] } : {}) });
  await assertRejects(mergeDatasets([c], c), refusal(/worker-00001-of-00002 differs .* layers_to_extract/));

  const d = join(tmp.path, "d");
  await writeWorkers(d, 2);
  await writeWorkers(join(tmp.path, "d3"), 3);
  await assertRejects(
    mergeDatasets([d, join(tmp.path, "d3")], d),
    refusal(/different runs: worker counts 2 and 3/),
  );
  // The same worker index from two places.
  const d2 = join(tmp.path, "d2", workerDirName(0, 2));
  await Deno.mkdir(d2, { recursive: true });
  for await (const ent of Deno.readDir(join(d, workerDirName(0, 2)))) {
    await Deno.copyFile(join(d, workerDirName(0, 2), ent.name), join(d2, ent.name));
  }
  await assertRejects(mergeDatasets([d, d2], d), refusal(/worker worker-00000-of-00002 was given twice/));

  // A shard listed in a worker's metadata but gone.
  const e = join(tmp.path, "e");
  await writeWorkers(e, 2);
  const wm = await readMetadata(new LocalStore(join(e, workerDirName(1, 2))));
  await Deno.remove(join(e, workerDirName(1, 2), wm.shards[0].filename));
  await assertRejects(mergeDatasets([e], e), refusal(/worker-00001-of-00002\/shard_0001\.pkl missing/));

  // No workers at all.
  const f = join(tmp.path, "f");
  await Deno.mkdir(f);
  await assertRejects(mergeDatasets([f], f), refusal(/no worker-IIIII-of-NNNNN directories/));

  // Nothing was written by any refused merge.
  for (const dir of [a, b, c, d, e, f]) {
    assertEquals(await Deno.stat(join(dir, "metadata.json")).catch(() => null), null, dir);
  }
});

Deno.test("merge: never replaces another dataset's metadata.json at the destination", async () => {
  await using tmp = await tempDir();
  await writeWorkers(tmp.path, 2);
  const foreign = { ...(await readMetadata(new LocalStore(join(tmp.path, workerDirName(0, 2))))) };
  await writeMetadataAtomic(tmp.path, foreign as DatasetMetadata);
  await assertRejects(mergeDatasets([tmp.path], tmp.path), refusal(/already holds another dataset/));
});

async function cli(
  script: string,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "scripts", script), ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("merge CLI: deno task shard --merge OUT --output OUT, and its error lines", async () => {
  await using tmp = await tempDir();
  await writeWorkers(tmp.path, 3, { skip: [2] });
  const refused = await cli("shard.ts", ["--merge", tmp.path, "--output", tmp.path]);
  assertEquals(refused.code, 1);
  assertEquals(refused.stderr.trim().split("\n").length, 1, refused.stderr);
  assert(
    /^shard: cannot merge: 1 of 3 workers missing: worker-00002-of-00003 /.test(refused.stderr),
    refused.stderr,
  );

  const usage = await cli("shard.ts", ["--merge", tmp.path]);
  assertEquals(usage.code, 2);
  assert(/^shard: --merge needs --output/.test(usage.stderr), usage.stderr);

  await writeWorkers(join(tmp.path, "full"), 3);
  const ok = await cli("shard.ts", ["--merge", join(tmp.path, "full"), "--output", join(tmp.path, "full")]);
  assertEquals(ok.code, 0, ok.stderr);
  assert(/merged 3 workers → \d+ shards, 28 records/.test(ok.stdout), ok.stdout);
  assertEquals(await allRecords(join(tmp.path, "full")), expectedRecords());
});

Deno.test("merge: verify and read treat a merged root as one dataset", async () => {
  await using tmp = await tempDir();
  await writeWorkers(tmp.path, 3);
  await mergeDatasets([tmp.path], tmp.path);
  const rep = await verifyDataset(new LocalStore(tmp.path));
  assertEquals(rep.issues, []);
  assert(rep.ok);
  assertEquals([rep.records, rep.layers["1"].samples, rep.layers["1"].sample_idx_max], [28, 14, 13]);
  const v = await cli("verify.ts", [tmp.path]);
  assertEquals(v.code, 0, v.stdout + v.stderr);
  assert(/14 samples per layer \(sample_idx 0\.\.13\)/.test(v.stdout), v.stdout);
  const r = await cli("read.ts", [tmp.path, "--sample_idx", "13", "--layer", "2"]);
  assertEquals(r.code, 0, r.stderr);
  assert(/worker-00002-of-00003\/shard_\d{4}\.pkl/.test(r.stdout), r.stdout);

  // A damaged shard inside a worker directory fails verification of the root, named by its root-relative path.
  const last = (await readMetadata(new LocalStore(tmp.path))).shards.at(-1)!;
  const file = join(tmp.path, ...last.path!.split("/"));
  await Deno.truncate(file, (await Deno.stat(file)).size - 3);
  const bad = await verifyDataset(new LocalStore(tmp.path));
  assert(!bad.ok);
  assert(bad.issues.some((i) => i.level === "error" && i.shard === last.path), JSON.stringify(bad.issues));
});
