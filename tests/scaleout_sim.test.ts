/**
 * Scale-out, simulated on one machine: 3 extract worker processes, each told its identity only through the
 * environment a Kubernetes Indexed Job gives its pods (JOB_COMPLETION_INDEX, ACTSHARD_NUM_WORKERS), on a tiny
 * checkpoint over generated ARC tasks. Worker 1 is SIGKILLed mid-run (after it committed a shard) and
 * restarted, as a preempted pod is. Before the restart the merge must refuse, naming worker 1; after it, the
 * merged root's records equal a single-worker run's bit for bit (task_id, sample_idx, layer, shape, activation
 * bytes, no duplicates), `verify` is clean, and each worker's prompts are the token-balanced split. A second
 * test runs 3 workers in-process under `--keep_padding`: shapes (padded batch lengths) and bytes equal the
 * single run's too.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import {
  type ExtractFixture,
  fixturePathArgs,
  makeExtractFixture,
  recordKeys,
  runExtractCli,
  shardFiles,
  smallShardArgs,
  spawnScript,
} from "./_extract_fixture.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { runExtract } from "../lib/pipeline/extract.ts";
import { prepareRun } from "../lib/pipeline/prepare.ts";
import { splitAll, workerDirName } from "../lib/pipeline/work_split.ts";

const N = 3;
const KILLED = 1;

/** Batches of 2 prompts, ~430 KB shards: every worker commits several shards (see smallShardArgs). */
function extractArgs(fx: ExtractFixture, out: string): string[] {
  return smallShardArgs(fx, out, 2);
}

async function result(p: Deno.ChildProcess) {
  const o = await p.output();
  const dec = new TextDecoder();
  return { code: o.code, signal: o.signal, stdout: dec.decode(o.stdout), stderr: dec.decode(o.stderr) };
}

const workerEnv = (i: number) => ({ JOB_COMPLETION_INDEX: String(i), ACTSHARD_NUM_WORKERS: String(N) });

/** Committed shards and status of a worker's metadata.json (null while absent or mid-rename). */
async function progress(dir: string): Promise<{ shards: number; status: string } | null> {
  try {
    const m = JSON.parse(await Deno.readTextFile(join(dir, "metadata.json")));
    return { shards: m.shards.length, status: m.status };
  } catch {
    return null;
  }
}

/** Starts the worker and SIGKILLs it once it has committed a shard but not finished; retries if it was too fast. */
async function startAndKillMidRun(args: string[], dir: string): Promise<number> {
  for (let attempt = 1; attempt <= 4; attempt++) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    const child = spawnScript("extract.ts", args, workerEnv(KILLED));
    const done = result(child);
    let exited = false;
    done.then(() => (exited = true));
    let killedAt = -1;
    while (!exited) {
      const p = await progress(dir);
      if (p && p.shards >= 1 && p.status === "in_progress") {
        try {
          child.kill("SIGKILL");
          killedAt = p.shards;
        } catch { /* exited meanwhile */ }
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    const st = await done;
    if (st.signal === "SIGKILL") return killedAt;
    assertEquals(st.code, 0, st.stderr); // finished before the kill: try again
  }
  throw new Error("worker finished before it could be killed mid-run, 4 times");
}

Deno.test("scale-out: 3 workers from JOB_COMPLETION_INDEX, one killed and restarted, merge = single run", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 8 });
  const out = join(tmp.path, "out");
  const single = join(tmp.path, "single");

  // The reference: one worker, the whole prompt list.
  const ref = await runExtractCli([...extractArgs(fx, single), "--num_workers", "1", "--worker_index", "0"]);
  assertEquals(ref.code, 0, ref.stderr);

  // Three workers at once, identity from the environment only; worker 1 is killed mid-run.
  const others = [0, 2].map((i) => result(spawnScript("extract.ts", extractArgs(fx, out), workerEnv(i))));
  const killedAt = await startAndKillMidRun(extractArgs(fx, out), join(out, workerDirName(KILLED, N)));
  for (const r of await Promise.all(others)) assertEquals(r.code, 0, r.stderr);
  assert(killedAt >= 1);
  console.log(`  worker ${KILLED} SIGKILLed after committing ${killedAt} shard(s)`);
  assertEquals((await progress(join(out, workerDirName(KILLED, N))))?.status, "in_progress");

  // Merge refuses while worker 1 is incomplete, naming it, and writes nothing.
  const early = await result(spawnScript("shard.ts", ["--merge", out, "--output", out]));
  assertEquals(early.code, 1, early.stdout);
  assert(
    /^shard: cannot merge: 1 of 3 workers not complete: worker-00001-of-00003 \(status in_progress/.test(
      early.stderr,
    ),
    early.stderr,
  );
  assertEquals(await Deno.stat(join(out, "metadata.json")).catch(() => null), null);

  // The restarted pod: same command, same index; it resumes its own directory.
  const again = await result(spawnScript("extract.ts", extractArgs(fx, out), workerEnv(KILLED)));
  assertEquals(again.code, 0, again.stderr);

  // The resumed worker's shard files are byte-identical to an uninterrupted run of the same worker.
  const straight = join(tmp.path, "straight");
  const w1 = await result(spawnScript("extract.ts", extractArgs(fx, straight), workerEnv(KILLED)));
  assertEquals(w1.code, 0, w1.stderr);
  assertEquals(
    await shardFiles(join(out, workerDirName(KILLED, N))),
    await shardFiles(join(straight, workerDirName(KILLED, N))),
    "resumed worker's shards = uninterrupted worker's",
  );

  const merged = await result(spawnScript("shard.ts", ["--merge", out, "--output", out]));
  assertEquals(merged.code, 0, merged.stderr);
  const verify = await result(spawnScript("verify.ts", [out]));
  assertEquals(verify.code, 0, verify.stdout + verify.stderr);
  assert(/\nOK$/.test(verify.stdout.trim()), verify.stdout);
  assert(!/warning|error/.test(verify.stdout), verify.stdout);

  // Same records as the single run, bit for bit: task_id, sample_idx, layer, shape and activation bytes; none
  // twice. Every worker batches over the whole run's prompt list, so a prompt near a worker boundary has the
  // same batch partners as in the single run (onnxruntime's last bits depend on them: docs/scale-out.md).
  const refKeys = (await recordKeys(single)).sort();
  const gotKeys = (await recordKeys(out)).sort();
  const ids = gotKeys.map((k) => k.split(" ").slice(0, 3).join(" "));
  assertEquals(new Set(ids).size, ids.length, "no duplicate records");
  assertEquals(gotKeys.length, 8 * 2 * 3);
  const refSet = new Set(refKeys);
  const differing = gotKeys.filter((k) => !refSet.has(k));
  assertEquals(
    differing,
    [],
    `${differing.length}/${gotKeys.length} records differ from the single run's bytes`,
  );
  assertEquals(gotKeys, refKeys);
  // Not vacuous: some batch of the single run straddles a worker boundary (its prompts belong to two workers),
  // which per-worker batching would have split. The workers say what that costs.
  const shared = (await Promise.all(others)).map((r) => /extract: (\d+) batches shared[^\n]*/.exec(r.stderr));
  shared.push(/extract: (\d+) batches shared[^\n]*/.exec(again.stderr));
  assert(
    shared.some((m) => m && Number(m[1]) > 0),
    "no batch straddles a worker boundary: the check is vacuous",
  );
  for (const m of shared) if (m) console.log(`  ${m[0]}`);

  // Each worker holds exactly its token-balanced part; token counts within one prompt of the mean.
  const tokens = new Map<number, number>();
  for await (const r of (await Dataset.open(single)).records({ layer: 0 })) {
    tokens.set(r.sample_idx, r.shape[0]);
  }
  const parts = splitAll([...tokens].map(([sample_idx, n_tokens]) => ({ sample_idx, n_tokens })), N);
  const total = [...tokens.values()].reduce((a, b) => a + b, 0);
  const maxTok = Math.max(...tokens.values());
  const perWorker: number[] = [];
  for (let i = 0; i < N; i++) {
    const mine = new Set<number>();
    for await (const r of (await Dataset.open(join(out, workerDirName(i, N)))).records({ layer: 0 })) {
      mine.add(r.sample_idx);
    }
    assertEquals([...mine].sort((a, b) => a - b), parts[i], `worker ${i}'s prompts`);
    const t = parts[i].reduce((s, idx) => s + tokens.get(idx)!, 0);
    assert(
      Math.abs(t - total / N) <= maxTok,
      `worker ${i}: ${t} tokens, mean ${total / N}, max prompt ${maxTok}`,
    );
    perWorker.push(t);
  }
  console.log(
    `  tokens per worker ${perWorker.join(", ")} (mean ${(total / N).toFixed(1)}, longest prompt ${maxTok})`,
  );
});

Deno.test("scale-out --keep_padding: 3 workers' records have the single run's padded shapes and bytes", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 5 });
  const config = (out: string, worker: number, workers: number) => {
    const c = parseExtractFlags([
      ...fixturePathArgs(fx, out),
      ...["--layers_to_extract", "0", "2", "--predictions_per_task", "2"],
      ...["--batch_size", "4", "--keep_padding"],
      ...["--num_workers", String(workers), "--worker_index", String(worker)],
    ]);
    if ("help" in c) throw new Error("unexpected --help");
    return c;
  };
  const quiet = { progress: { tty: false, intervalMs: 1e9 }, log: () => {} };
  const single = join(tmp.path, "single"), out = join(tmp.path, "out");
  await runExtract(config(single, 0, 1), quiet);
  let partnerPrompts = 0, cutBatches = 0;
  const got: string[] = [];
  for (let i = 0; i < N; i++) {
    const run = await prepareRun(config(out, i, N));
    partnerPrompts += run.partners.prompts;
    if (run.first % 4 !== 0) cutBatches++; // the single run's batches are prompts 4k..4k+3
    const s = await runExtract(config(out, i, N), quiet);
    assertEquals(s.records, run.items.length * 2);
    got.push(...await recordKeys(join(out, workerDirName(i, N))));
  }
  // Not vacuous: a batch of 4 consecutive prompts straddles a worker boundary (per-worker batching would cut it
  // and store shorter padded shapes for some of its prompts).
  assert(cutBatches > 0, "no batch straddles a worker boundary: the check is vacuous");
  const ref = await recordKeys(single);
  assertEquals(got.length, ref.length);
  assertEquals(
    got.sort(),
    ref.sort(),
    "records (task, sample, layer, padded shape, sha256) = the single run's",
  );
  assert(partnerPrompts > 0, "the workers computed no batch partners");
  console.log(`  ${got.length} records identical; ${partnerPrompts} partner prompts computed at boundaries`);
});
