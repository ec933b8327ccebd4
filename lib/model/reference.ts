/**
 * The test oracle as a one-call API: run a checkpoint's Qwen2 graph through the float64 reference interpreter.
 * Other tests (pipeline, backends) compare their output against this.
 *
 * @example
 * ```ts
 * import { referenceForward } from "./reference.ts";
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 1, vocab: 1000, tokenizer: false });
 * const ids = Int32Array.from([1, 2, 3]);
 * const out = await referenceForward(dir, { ids, lengths: Int32Array.from([3]), batch: 1, seqLen: 3 }, [0]);
 * console.log(out.get(0)!.length); // 3 * hidden
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type { TokenBatch } from "../types.ts";
import { loadModelConfig } from "./config.ts";
import { interpretGraph } from "./interpreter.ts";
import { buildQwen2Graph, layerOutputName } from "./qwen2.ts";
import { CheckpointWeights } from "./safetensors.ts";

/** Residual streams after the requested layers, `[batch, seqLen, hidden]` each, computed in float64. */
export async function referenceForward(
  modelDir: string,
  batch: TokenBatch,
  layers: number[],
): Promise<Map<number, Float32Array>> {
  const cfg = await loadModelConfig(modelDir);
  const graph = buildQwen2Graph(cfg, layers);
  const weights = await CheckpointWeights.open(modelDir);
  try {
    const out = await interpretGraph(graph, batch, (name, shape) => weights.read(name, shape));
    return new Map(layers.map((l) => [l, Float32Array.from(out.get(layerOutputName(l))!)]));
  } finally {
    weights.close();
  }
}
