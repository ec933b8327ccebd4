/**
 * `deno task bench onnx_startup`: start-up of the ONNX backend on a BF16 checkpoint — converting the weights to
 * f32 on every run (what it did before the weight cache; `weightCacheDir: null`) against a cache hit — measured
 * alternately in one process, as a ratio. `ACTSHARD_BENCH_MODEL=DIR` benchmarks a given checkpoint (e.g. a
 * Qwen2.5-0.5B-shaped BF16 one); otherwise a full-width 4-block BF16 checkpoint is generated (about a minute).
 * Not in the default sections (the generation is slow).
 */
import { join } from "node:path";
import { createOnnxBackend } from "../lib/backend/onnx/index.ts";
import { loadModelConfig } from "../lib/model/config.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";

async function startOnce(model: string, cache: string | null): Promise<number> {
  // The last block: every weight is loaded (extract's default layers 10-23 need all 24 blocks of the 0.5B).
  const last = (await loadModelConfig(model)).num_hidden_layers - 1;
  const t = performance.now();
  const be = await createOnnxBackend(model, { layers: [last], weightCacheDir: cache });
  const s = (performance.now() - t) / 1000;
  await be.close();
  return s;
}

/** Prints seconds per start-up for both paths and their ratio. */
export async function run(): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "actshard-bench-startup-" });
  try {
    let model = Deno.env.get("ACTSHARD_BENCH_MODEL");
    if (!model) {
      model = join(tmp, "model");
      await writeTinyModel(model, {
        hidden: 896,
        layers: 4,
        heads: 14,
        kvHeads: 2,
        intermediate: 4864,
        dtype: "BF16",
        seed: 1,
        tokenizer: false,
      });
    }
    const cache = join(tmp, "cache");
    const first = await startOnce(model, cache); // fills the cache
    const convert: number[] = [], hit: number[] = [];
    for (let i = 0; i < 2; i++) {
      convert.push(await startOnce(model, null));
      hit.push(await startOnce(model, cache));
    }
    const min = (xs: number[]) => Math.min(...xs);
    console.log(
      `onnx start-up on ${model}: convert every run ${min(convert).toFixed(2)} s, cache hit ${
        min(hit).toFixed(2)
      } s (first run, filling the cache: ${first.toFixed(2)} s) → ratio ${
        (min(convert) / min(hit)).toFixed(2)
      }`,
    );
  } finally {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await run();
