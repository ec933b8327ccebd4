import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { mulberry32 } from "../lib/util/seeded.ts";
import {
  parseWorkerDirName,
  resolveWorker,
  splitAll,
  splitWork,
  workerDirName,
  workerFromEnv,
  type WorkItem,
} from "../lib/pipeline/work_split.ts";
import { ActshardError } from "../lib/errors.ts";

const rng = mulberry32;

/** Checks every property the split promises; returns the per-worker token counts. */
function checkSplit(items: WorkItem[], n: number): number[] {
  const parts = splitAll(items, n);
  assertEquals(parts.length, n);
  const tok = new Map(items.map((it) => [it.sample_idx, it.n_tokens]));
  // A partition of the sample indices: every index exactly once.
  const all = parts.flat().sort((a, b) => a - b);
  assertEquals(all, items.map((it) => it.sample_idx).sort((a, b) => a - b));
  // Each part sorted, contiguous in sample order, and parts in worker order.
  const order = [...tok.keys()].sort((a, b) => a - b);
  let pos = 0;
  for (const p of parts) {
    assertEquals(p, order.slice(pos, pos + p.length));
    pos += p.length;
  }
  // Balance: |tokens(w) - mean| ≤ the largest prompt's tokens.
  const total = items.reduce((s, it) => s + it.n_tokens, 0);
  const maxTok = items.reduce((m, it) => Math.max(m, it.n_tokens), 0);
  const counts = parts.map((p) => p.reduce((s, i) => s + tok.get(i)!, 0));
  for (const [w, c] of counts.entries()) {
    assert(
      Math.abs(c - total / n) <= maxTok,
      `worker ${w}/${n}: ${c} tokens, mean ${total / n}, max prompt ${maxTok}`,
    );
  }
  // splitWork agrees with splitAll and is independent of the input order.
  const shuffled = [...items].reverse();
  for (let w = 0; w < n; w++) assertEquals(splitWork(shuffled, n, w), parts[w]);
  return counts;
}

Deno.test("work split: small worked example (module doc)", () => {
  const items = [{ sample_idx: 0, n_tokens: 900 }, { sample_idx: 1, n_tokens: 100 }, {
    sample_idx: 2,
    n_tokens: 800,
  }];
  assertEquals(splitWork(items, 2, 0), [0]);
  assertEquals(splitWork(items, 2, 1), [1, 2]);
  assertEquals(checkSplit(items, 2), [900, 900]);
});

Deno.test("work split: balanced by tokens, not by prompt count", () => {
  // 10 long prompts then 90 short ones: an even prompt-count split would give worker 0 most tokens.
  const items: WorkItem[] = [];
  for (let i = 0; i < 100; i++) items.push({ sample_idx: i, n_tokens: i < 10 ? 1000 : 10 });
  const counts = checkSplit(items, 2);
  const parts = splitAll(items, 2);
  assert(parts[0].length < 10, `worker 0 got ${parts[0].length} prompts`);
  assert(Math.abs(counts[0] - counts[1]) <= 1000);
});

Deno.test("work split: random inputs, many worker counts, bound holds", () => {
  const r = rng(1234);
  for (let trial = 0; trial < 300; trial++) {
    const len = Math.floor(r() * 200);
    const spread = [1, 10, 2000, 100000][trial % 4];
    const items: WorkItem[] = [];
    let idx = 0;
    for (let i = 0; i < len; i++) {
      idx += 1 + Math.floor(r() * 3); // gaps: sample_idx need not be dense
      items.push({ sample_idx: idx, n_tokens: Math.floor(r() * spread) });
    }
    const n = 1 + Math.floor(r() * 20);
    checkSplit(items, n);
  }
});

Deno.test("work split: adversarial inputs", () => {
  const cases: [string, WorkItem[], number][] = [
    ["empty", [], 3],
    ["fewer items than workers", [{ sample_idx: 0, n_tokens: 5 }, { sample_idx: 1, n_tokens: 7 }], 5],
    ["one giant prompt", [
      { sample_idx: 0, n_tokens: 1 },
      { sample_idx: 1, n_tokens: 1_000_000 },
      { sample_idx: 2, n_tokens: 1 },
    ], 3],
    ["all zero tokens", Array.from({ length: 10 }, (_, i) => ({ sample_idx: i, n_tokens: 0 })), 3],
    ["zeros around a spike", [0, 0, 0, 50, 0, 0, 0].map((t, i) => ({ sample_idx: i, n_tokens: t })), 4],
    ["geometric", Array.from({ length: 30 }, (_, i) => ({ sample_idx: i, n_tokens: 2 ** i })), 7],
    [
      "reverse geometric",
      Array.from({ length: 30 }, (_, i) => ({ sample_idx: i, n_tokens: 2 ** (29 - i) })),
      7,
    ],
    [
      "alternating",
      Array.from({ length: 101 }, (_, i) => ({ sample_idx: i, n_tokens: i % 2 ? 1 : 999 })),
      16,
    ],
    ["equal", Array.from({ length: 48 }, (_, i) => ({ sample_idx: i, n_tokens: 37 })), 16],
    ["single worker", Array.from({ length: 9 }, (_, i) => ({ sample_idx: i, n_tokens: i + 1 })), 1],
  ];
  for (const [name, items, n] of cases) {
    try {
      checkSplit(items, n);
    } catch (e) {
      throw new Error(`${name}: ${e instanceof Error ? e.message : e}`);
    }
  }
  // Equal prompts split evenly by count.
  assertEquals(
    splitAll(Array.from({ length: 48 }, (_, i) => ({ sample_idx: i, n_tokens: 37 })), 16).map((p) =>
      p.length
    ),
    Array(16).fill(3),
  );
});

Deno.test("work split: bad input is refused", () => {
  const items = [{ sample_idx: 0, n_tokens: 1 }];
  assertThrows(() => splitWork(items, 2, 2), /out of range/);
  assertThrows(() => splitWork(items, 0, 0), /number of workers/);
  assertThrows(() => splitWork(items, 1.5, 0), /number of workers/);
  assertThrows(
    () => splitAll([{ sample_idx: 1, n_tokens: 1 }, { sample_idx: 1, n_tokens: 2 }], 2),
    /duplicate/,
  );
  assertThrows(() => splitAll([{ sample_idx: 0, n_tokens: -1 }], 2), /n_tokens/);
});

Deno.test("work split: worker directory names", () => {
  assertEquals(workerDirName(0, 3), "worker-00000-of-00003");
  assertEquals(workerDirName(15, 16), "worker-00015-of-00016");
  assertEquals(parseWorkerDirName("gs://b/p/worker-00002-of-00003/"), { workerIndex: 2, numWorkers: 3 });
  assertEquals(parseWorkerDirName("worker-00003-of-00003"), null);
  assertEquals(parseWorkerDirName("worker-1-of-3"), null);
  assertThrows(() => workerDirName(3, 3), /out of range/);
  assertThrows(() => workerDirName(0, 100000), /number of workers/);
});

Deno.test("work split: identity from the environment and flags", () => {
  assertEquals(workerFromEnv({}), { numWorkers: 1, workerIndex: 0 });
  assertEquals(workerFromEnv({ JOB_COMPLETION_INDEX: "2", ACTSHARD_NUM_WORKERS: "3" }), {
    numWorkers: 3,
    workerIndex: 2,
  });
  const usage = (re: RegExp) => (e: unknown) =>
    e instanceof ActshardError && e.kind === "usage" && re.test(e.line());
  assertThrows(() => workerFromEnv({ JOB_COMPLETION_INDEX: "2" }), usage(/ACTSHARD_NUM_WORKERS is not/));
  assertThrows(() => workerFromEnv({ ACTSHARD_NUM_WORKERS: "3" }), usage(/JOB_COMPLETION_INDEX is not/));
  assertThrows(
    () => workerFromEnv({ JOB_COMPLETION_INDEX: "3", ACTSHARD_NUM_WORKERS: "3" }),
    usage(/out of range/),
  );
  assertThrows(
    () => workerFromEnv({ JOB_COMPLETION_INDEX: "x", ACTSHARD_NUM_WORKERS: "3" }),
    usage(/integer/),
  );
  assertThrows(
    () => workerFromEnv({ JOB_COMPLETION_INDEX: "0", ACTSHARD_NUM_WORKERS: "0" }),
    usage(/integer ≥ 1/),
  );
  // A Deno.env-like getter works too.
  const m = new Map([["JOB_COMPLETION_INDEX", "1"], ["ACTSHARD_NUM_WORKERS", "4"]]);
  assertEquals(workerFromEnv({ get: (k: string) => m.get(k) }), { numWorkers: 4, workerIndex: 1 });

  const env = { JOB_COMPLETION_INDEX: "1", ACTSHARD_NUM_WORKERS: "4" };
  assertEquals(resolveWorker({}, env), { numWorkers: 4, workerIndex: 1 });
  assertEquals(resolveWorker({ worker_index: 3 }, env), { numWorkers: 4, workerIndex: 3 });
  assertEquals(resolveWorker({ num_workers: 2, worker_index: 0 }, env), { numWorkers: 2, workerIndex: 0 });
  assertEquals(resolveWorker({}, {}), { numWorkers: 1, workerIndex: 0 });
  assertThrows(() => resolveWorker({ num_workers: 2 }, {}), usage(/no worker index/));
  assertThrows(() => resolveWorker({ worker_index: 1 }, {}), usage(/no worker count/));
  assertThrows(() => resolveWorker({ num_workers: 1 }, env), usage(/out of range/));
});
