/**
 * The ONNX backend's weight cache (lib/backend/onnx/weight_cache.ts): a BF16 checkpoint is converted to f32 once;
 * later starts (any layer set) reuse the entry without converting and compute the same activations bit for bit;
 * a changed checkpoint or a damaged entry is converted again.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { createOnnxBackend } from "../lib/backend/onnx/index.ts";
import { CACHED_WEIGHTS } from "../lib/backend/onnx/weight_cache.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import type { TokenBatch } from "../lib/types.ts";

const OPTS = { hidden: 32, layers: 3, heads: 4, kvHeads: 2, vocab: 300, dtype: "BF16" as const, seed: 3 };
const BATCH: TokenBatch = {
  ids: Int32Array.from([5, 17, 250, 3, 99, 1, 2, 0]),
  lengths: Int32Array.from([4, 3]),
  batch: 2,
  seqLen: 4,
};

/** Start a backend on `model` with the cache at `cache`; returns layer 1's activations and the phases heard. */
async function start(model: string, cache: string | null, layers: number[]) {
  const phases: string[] = [];
  const be = await createOnnxBackend(model, {
    layers,
    threads: 1,
    weightCacheDir: cache,
    onPhase: (p) => phases.push(p),
  });
  try {
    const out = await be.forward(BATCH, [1]);
    return { act: out.get(1)!, phases };
  } finally {
    await be.close();
  }
}

async function entries(cache: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(cache)) names.push(e.name);
  return names.sort();
}

Deno.test("onnx weight cache: BF16 converted once, reused for any layers, same activations as uncached", async () => {
  await using tmp = await tempDir();
  const model = join(tmp.path, "model"), cache = join(tmp.path, "cache");
  await writeTinyModel(model, { ...OPTS, tokenizer: false });
  const first = await start(model, cache, [1]);
  assert(
    first.phases.some((p) => /^converting .* BF16 weights to f32, once/.test(p)),
    first.phases.join("\n"),
  );
  const [key] = await entries(cache);
  assertEquals((await entries(cache)).length, 1);
  const again = await start(model, cache, [0, 1, 2]);
  assert(!again.phases.some((p) => p.startsWith("converting")), again.phases.join("\n"));
  assertEquals(await entries(cache), [key]);
  const uncached = await start(model, null, [1]);
  assertEquals(again.act, first.act);
  assertEquals(uncached.act, first.act);
  // Nothing of a run is left next to the entry (the per-run model.onnx is removed once the session holds it).
  assertEquals(await entries(join(cache, key)), ["index.json", CACHED_WEIGHTS]);
});

Deno.test("onnx weight cache: a rewritten checkpoint gets a new entry; a truncated entry is rebuilt", async () => {
  await using tmp = await tempDir();
  const model = join(tmp.path, "model"), cache = join(tmp.path, "cache");
  await writeTinyModel(model, { ...OPTS, tokenizer: false });
  const a = await start(model, cache, [1]);
  const [key] = await entries(cache);
  // Damage the entry: it must be converted again, not read short.
  const f = join(cache, key, CACHED_WEIGHTS);
  await Deno.truncate(f, (await Deno.stat(f)).size - 4);
  const b = await start(model, cache, [1]);
  assert(b.phases.some((p) => p.startsWith("converting")), b.phases.join("\n"));
  assertEquals(b.act, a.act);
  // Other weights under the same file name (a re-download): another key.
  await writeTinyModel(model, { ...OPTS, seed: 4, tokenizer: false });
  const c = await start(model, cache, [1]);
  assert(c.phases.some((p) => p.startsWith("converting")), c.phases.join("\n"));
  assertEquals((await entries(cache)).length, 2);
  assert(c.act.some((v, i) => v !== a.act[i]));
});
