import { assert, assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import {
  batchesTouching,
  makeTokenBatch,
  partnerCost,
  planBatches,
  ReorderBuffer,
} from "../lib/pipeline/batching.ts";
import { splitAll } from "../lib/pipeline/work_split.ts";
import { BoundedQueue } from "../lib/pipeline/queue.ts";
import { formatDuration, formatSize, Progress, shardLines } from "../lib/pipeline/progress.ts";
import { checkFreeDisk, estimateOutputBytes, freeBytes } from "../lib/pipeline/disk.ts";
import { syntheticArcTasks } from "../lib/arc/synthetic.ts";
import { ActshardError } from "../lib/errors.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import { tempDir } from "./_shared.ts";

Deno.test("planBatches: window 1 is consecutive batches in order (the seed's batching)", () => {
  assertEquals(planBatches([9, 1, 8, 2, 7], { batchSize: 2, window: 1 }), [[0, 1], [2, 3], [4]]);
});

Deno.test("planBatches: length-aware within a window, every position exactly once", () => {
  const lengths = [50, 3, 40, 4, 30, 5, 20, 6, 100];
  const plan = planBatches(lengths, { batchSize: 2, window: 4 });
  // window 0..7 sorted by length: 1(3),3(4),5(5),7(6),6(20),4(30),2(40),0(50); window 8: [8]
  assertEquals(plan, [[0, 2], [1, 3], [4, 6], [5, 7], [8]]);
  assertEquals(plan.flat().sort((a, b) => a - b), lengths.map((_, i) => i));
  // padding wasted is lower than in-order batching
  const waste = (p: number[][]) =>
    p.reduce(
      (s, b) => s + b.length * Math.max(...b.map((i) => lengths[i])) - b.reduce((t, i) => t + lengths[i], 0),
      0,
    );
  assert(waste(plan) < waste(planBatches(lengths, { batchSize: 2, window: 1 })));
});

Deno.test("batchesTouching: every worker runs the whole run's batches of its prompts; partners cost the rest", () => {
  let seed = 7;
  const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  for (let trial = 0; trial < 50; trial++) {
    const lengths = Array.from({ length: 1 + Math.floor(rnd() * 60) }, () => 1 + Math.floor(rnd() * 500));
    const bs = 1 + Math.floor(rnd() * 5), window = 1 + Math.floor(rnd() * 4), n = 1 + Math.floor(rnd() * 6);
    const plan = planBatches(lengths, { batchSize: bs, window });
    const parts = splitAll(lengths.map((n_tokens, sample_idx) => ({ sample_idx, n_tokens })), n);
    let first = 0, partners = 0;
    for (const part of parts) {
      const end = first + part.length;
      const mine = batchesTouching(plan, first, end);
      // Exactly the single run's batches (same partners), in run order, covering each own position once.
      for (const b of mine) assert(plan.includes(b), "a batch not of the whole run's plan");
      assertEquals(mine, plan.filter((b) => mine.includes(b)));
      const own = mine.flat().filter((p) => p >= first && p < end).sort((a, b) => a - b);
      assertEquals(own, part.map((_, i) => first + i));
      const cost = partnerCost(mine, first, end, lengths);
      assertEquals(cost.prompts, mine.flat().length - part.length);
      assert(cost.batches <= 2 * window, `${cost.batches} shared batches: more than the two edge windows`);
      partners += cost.prompts;
      first = end;
    }
    if (n === 1) assertEquals(partners, 0);
  }
  // A worker owning positions 2-3 of [[0, 1], [2, 3]] (window 1) shares nothing; of [[0, 2], [1, 3]], both.
  assertEquals(partnerCost(batchesTouching([[0, 1], [2, 3]], 2, 4), 2, 4, [5, 6, 7, 8]).batches, 0);
  assertEquals(partnerCost(batchesTouching([[0, 2], [1, 3]], 2, 4), 2, 4, [5, 6, 7, 8]), {
    batches: 2,
    prompts: 2,
    tokens: 11,
  });
});

Deno.test("makeTokenBatch right-pads to the longest row", () => {
  const b = makeTokenBatch([Int32Array.of(1, 2, 3), Int32Array.of(4)], 0);
  assertEquals([b.batch, b.seqLen], [2, 3]);
  assertEquals([...b.ids], [1, 2, 3, 4, 0, 0]);
  assertEquals([...b.lengths], [3, 1]);
});

Deno.test("ReorderBuffer releases values in position order", () => {
  const r = new ReorderBuffer<string>(2);
  r.put(4, "e");
  r.put(3, "d");
  assertEquals(r.take(), []);
  r.put(2, "c");
  assertEquals(r.take(), ["c", "d", "e"]);
  assertEquals(r.next, 5);
  assertThrows(() => r.put(3, "x"));
});

Deno.test("BoundedQueue: the producer waits while full; close drains; fail propagates", async () => {
  const q = new BoundedQueue<number>(2);
  await q.push(1);
  await q.push(2);
  let pushed = false;
  const p = q.push(3).then(() => (pushed = true));
  await new Promise((r) => setTimeout(r, 5));
  assert(!pushed, "push must wait while the queue is full");
  assertEquals(await q.shift(), 1);
  await p;
  q.close();
  const rest: number[] = [];
  for await (const x of q) rest.push(x);
  assertEquals(rest, [2, 3]);

  const q2 = new BoundedQueue<number>(1);
  const consumer = (async () => {
    for await (const _ of q2) { /* wait */ }
  })();
  q2.fail(new Error("boom"));
  await assertRejects(consumer, /boom/);
  await assertRejects(q2.push(1), /boom/);
});

Deno.test("Progress: plain lines when not a TTY, counts and ETA", () => {
  let t = 0;
  const lines: string[] = [];
  const p = new Progress({
    total: 10,
    tty: false,
    intervalMs: 1000,
    write: (l) => lines.push(l),
    now: () => t,
  });
  t = 2000;
  p.update({ prompts: 5, tokens: 1000, bytes: 3 * 1024 * 1024 });
  t = 2500;
  p.update({ prompts: 6 }); // within the interval: no line
  assertEquals(lines.length, 1);
  assertEquals(lines[0], "extract: 5/10 prompts · 500 tok/s · 3.0 MB · 0 shards · ETA 2s");
  p.finish();
  assert(lines[1].includes("6/10 prompts"));
  assertEquals(formatDuration(185), "3m05s");
  assertEquals([formatSize(812.4 * 2 ** 20), formatSize(1.5 * 2 ** 30)], ["812.4 MB", "1.50 GB"]);
  assertEquals(
    shardLines({
      filename: "shard_0042.pkl.gz",
      shard_id: 42,
      buffer_bytes: 2048.5 * 1024 * 1024,
      file_bytes: 1876.3 * 1024 * 1024,
      samples_per_layer: { "10": 25 },
    }).slice(1, 5),
    [
      "Saving shard 42: shard_0042.pkl.gz (~2048.5 MB)",
      "=".repeat(70),
      "  ✓ Saved locally: 1876.3 MB",
      "    Layer 10: 25 samples",
    ],
  );
});

Deno.test("disk: estimate and refusal", async () => {
  assertEquals(estimateOutputBytes({ tokens: 10, hidden: 4, layers: 2, dtype: "float16" }), 160);
  assert((await freeBytes("/definitely/not/here/x")) > 0, "falls back to an existing parent");
  await checkFreeDisk(".", { needBytes: 10, freeBytes: 4e9 });
  await assertRejects(
    checkFreeDisk(".", { needBytes: 5e9, freeBytes: 4e9 }),
    (e: unknown) => e instanceof ActshardError && /not enough free disk/.test(e.message),
  );
});

Deno.test("syntheticArcTasks: deterministic ARC-shaped tasks", () => {
  const a = syntheticArcTasks({ nTasks: 5, seed: 3 });
  assertEquals(JSON.stringify(a), JSON.stringify(syntheticArcTasks({ nTasks: 5, seed: 3 })));
  assert(JSON.stringify(a) !== JSON.stringify(syntheticArcTasks({ nTasks: 5, seed: 4 })));
  assertEquals(Object.keys(a).length, 5);
  for (const [id, t] of Object.entries(a)) {
    assert(/^[0-9a-f]{8}$/.test(id));
    assert(t.train.length >= 2 && t.test.length === 1);
    for (const p of [...t.train, ...t.test]) {
      for (const g of [p.input, p.output]) {
        assert(g.length >= 1 && g.every((r) => r.length === g[0].length && r.every((v) => v >= 0 && v <= 9)));
      }
    }
  }
});

Deno.test("fingerprint diff names the differing settings, ignores paths", async () => {
  const { describeDiffs, diffFingerprints, sha256Hex } = await import("../lib/pipeline/fingerprint.ts");
  const a = { model_path: "/a", layers_to_extract: [10, 11, 12, 13], random_seed: 42, keep_padding: false };
  const b = { model_path: "/b", layers_to_extract: [20, 21], random_seed: 42, keep_padding: true };
  const d = diffFingerprints(a, b);
  assertEquals(d.map((x) => x.key), ["layers_to_extract", "keep_padding"]);
  assertEquals(
    describeDiffs(d),
    "layers_to_extract (stored 10-13, now [20,21]), keep_padding (stored false, now true)",
  );
  assertEquals(diffFingerprints(a, { ...a, model_path: "/elsewhere" }), []);
  assertEquals(sha256Hex("abc").slice(0, 8), "ba7816bf");
});

Deno.test("Progress: says what it does before the first batch, then ETA by tokens, GB once large, shards", () => {
  let t = 0;
  const lines: string[] = [];
  const p = new Progress({
    total: 4,
    totalTokens: 1000,
    tty: false,
    intervalMs: 1000,
    write: (l) => lines.push(l),
    now: () => t,
  });
  // Phases are drawn at once (not "0% ETA ?" for minutes).
  p.phase("loading the model (24 layers) from /m");
  t = 12_000;
  p.phase("first batch (1 prompts, 900 tokens)");
  p.startCompute();
  t = 15_000;
  p.update({});
  assertEquals(lines, [
    "extract: 0/4 prompts · loading the model (24 layers) from /m… 0s",
    "extract: 0/4 prompts · first batch (1 prompts, 900 tokens)… 0s",
    "extract: 0/4 prompts · first batch (1 prompts, 900 tokens)… 3s",
  ]);
  // One long prompt done of four: 90% of the tokens, so ~10% of the time is left (a prompt-count ETA says 3×).
  t = 21_000;
  p.update({ prompts: 1, tokens: 900, bytes: 3 * 2 ** 30 + 1, shards: 3 });
  assertEquals(lines[3], "extract: 1/4 prompts · 100 tok/s · 3.00 GB · 3 shards · ETA 1s");
});

Deno.test("ShardWriter.openShardBytes: the open shard's bytes count before it is committed", async () => {
  await using tmp = await tempDir();
  const w = await ShardWriter.open({
    dir: tmp.path,
    format: "pickle",
    codec: "none",
    dtype: "float32",
    shardSizeBytes: 1 << 30,
    base: {},
  });
  assertEquals(w.openShardBytes, 0);
  await w.write([{
    task_id: "t",
    sample_idx: 0,
    layer: 0,
    activation: new Float32Array(1000),
    shape: [10, 100],
    prompt: "p",
  }]);
  assertEquals(w.openShardBytes, 4000); // 1000 float32 values, not yet compressed or committed
  assertEquals(w.metadata.shards.length, 0);
  await w.abort();
  assertEquals(w.openShardBytes, 0);
});
