/**
 * The reference interpreter: plain TypeScript over the graph IR, every activation held and accumulated in float64.
 * It is slow and simple on purpose — it is the oracle the ONNX and StableHLO backends are tested against.
 *
 * @example
 * ```ts
 * import { interpretGraph } from "./interpreter.ts";
 * import { buildQwen2Graph } from "./qwen2.ts";
 * import { loadModelConfig } from "./config.ts";
 * import { CheckpointWeights } from "./safetensors.ts";
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 1, vocab: 1000, tokenizer: false });
 * const graph = buildQwen2Graph(await loadModelConfig(dir), [0]);
 * const weights = await CheckpointWeights.open(dir);
 * const ids = Int32Array.from([1, 2, 3, 4, 5]), lengths = Int32Array.from([5]);
 * const out = await interpretGraph(graph, { ids, lengths, batch: 1, seqLen: 5 }, (name) => weights.read(name));
 * console.log(out.get("layer_0")!.length); // 1 * 5 * hidden
 * weights.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { ActshardError } from "../errors.ts";
import type { TokenBatch } from "../types.ts";
import { concreteShape, type Graph, type Node, numel } from "./ir.ts";

/** Loads a weight as f32 given its name and shape. */
export type WeightLoader = (name: string, shape: number[]) => Promise<Float32Array> | Float32Array;

type Tensor = Float64Array | Float32Array | Int32Array;

/** Run `graph` on one padded batch; returns each graph output (float64, `[batch, seq, ...]`). */
export async function interpretGraph(
  graph: Graph,
  batch: TokenBatch,
  loadWeight: WeightLoader,
): Promise<Map<string, Float64Array>> {
  const { batch: B, seqLen: S } = batch;
  if (batch.ids.length !== B * S || batch.lengths.length !== B) {
    throw new ActshardError(`token batch is inconsistent: ids ${batch.ids.length}, batch ${B} x seq ${S}`, {
      kind: "internal",
    });
  }
  const lastUse = new Array<number>(graph.nodes.length).fill(-1);
  for (const n of graph.nodes) for (const i of n.inputs) lastUse[i] = n.id;
  for (const o of graph.outputs) lastUse[o.node] = Infinity;

  const vals = new Array<Tensor | undefined>(graph.nodes.length);
  for (const n of graph.nodes) {
    const shape = concreteShape(n.shape, B, S);
    const ins = n.inputs.map((i) => vals[i]!);
    vals[n.id] = await evalNode(n, shape, ins, batch, loadWeight, graph);
    for (const i of n.inputs) if (lastUse[i] === n.id && graph.nodes[i].op !== "weight") vals[i] = undefined;
  }
  const out = new Map<string, Float64Array>();
  for (const o of graph.outputs) {
    const v = vals[o.node]!;
    out.set(o.name, v instanceof Float64Array ? v : Float64Array.from(v));
  }
  return out;
}

async function evalNode(
  n: Node,
  shape: number[],
  ins: Tensor[],
  batch: TokenBatch,
  loadWeight: WeightLoader,
  graph: Graph,
): Promise<Tensor> {
  switch (n.op) {
    case "input":
      return n.name === "ids" ? batch.ids : batch.lengths;
    case "weight":
      return await loadWeight(n.name, shape);
    case "embed": {
      const [table, ids] = ins;
      const tshape = graph.nodes[n.inputs[0]].shape as number[];
      const [V, H] = tshape;
      const out = new Float64Array(numel(shape));
      for (let t = 0; t < ids.length; t++) {
        const id = ids[t];
        if (!(id >= 0 && id < V)) {
          throw new ActshardError(`token id ${id} is outside the vocabulary (size ${V})`, { kind: "data" });
        }
        for (let j = 0; j < H; j++) out[t * H + j] = table[id * H + j];
      }
      return out;
    }
    case "linear": {
      const [x, w, b] = ins;
      const outF = shape.at(-1)!, inF = x.length / (numel(shape) / outF);
      const rows = x.length / inF;
      const out = new Float64Array(rows * outF);
      for (let r = 0; r < rows; r++) {
        const xo = r * inF;
        for (let o = 0; o < outF; o++) {
          let acc = b ? b[o] : 0;
          const wo = o * inF;
          for (let k = 0; k < inF; k++) acc += x[xo + k] * w[wo + k];
          out[r * outF + o] = acc;
        }
      }
      return out;
    }
    case "rmsnorm": {
      const [x, w] = ins;
      const H = shape.at(-1)!;
      const out = new Float64Array(x.length);
      for (let r = 0; r < x.length / H; r++) {
        let ss = 0;
        for (let j = 0; j < H; j++) ss += x[r * H + j] * x[r * H + j];
        const inv = 1 / Math.sqrt(ss / H + n.eps);
        for (let j = 0; j < H; j++) out[r * H + j] = x[r * H + j] * inv * w[j];
      }
      return out;
    }
    case "add":
    case "mul": {
      const [a, b] = ins;
      const out = new Float64Array(a.length);
      if (n.op === "add") { for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i]; }
      else for (let i = 0; i < a.length; i++) out[i] = a[i] * b[i];
      return out;
    }
    case "silu": {
      const [x] = ins;
      const out = new Float64Array(x.length);
      for (let i = 0; i < x.length; i++) out[i] = x[i] / (1 + Math.exp(-x[i]));
      return out;
    }
    case "reshape":
      return ins[0];
    case "rope": {
      const [x] = ins;
      const [B, S, NH, D] = shape;
      const half = D / 2;
      const out = new Float64Array(x.length);
      for (let s = 0; s < S; s++) {
        for (let i = 0; i < half; i++) {
          const ang = s / Math.pow(n.theta, (2 * i) / D);
          const c = Math.cos(ang), sn = Math.sin(ang);
          for (let b = 0; b < B; b++) {
            for (let h = 0; h < NH; h++) {
              const o = ((b * S + s) * NH + h) * D;
              const x1 = x[o + i], x2 = x[o + i + half];
              out[o + i] = x1 * c - x2 * sn;
              out[o + i + half] = x2 * c + x1 * sn;
            }
          }
        }
      }
      return out;
    }
    case "attention": {
      const [q, k, v, lengths] = ins;
      const [B, S, NQ, D] = shape;
      const NKV = (graph.nodes[n.inputs[1]].shape[2]) as number;
      const group = NQ / NKV;
      const out = new Float64Array(q.length);
      const p = new Float64Array(S);
      for (let b = 0; b < B; b++) {
        const len = lengths[b];
        for (let h = 0; h < NQ; h++) {
          const kh = Math.floor(h / group);
          for (let i = 0; i < S; i++) {
            const last = Math.min(i, len - 1);
            if (last < 0) continue; // an empty row: no visible key, output stays 0
            const qo = ((b * S + i) * NQ + h) * D;
            let mx = -Infinity;
            for (let j = 0; j <= last; j++) {
              const ko = ((b * S + j) * NKV + kh) * D;
              let dot = 0;
              for (let d = 0; d < D; d++) dot += q[qo + d] * k[ko + d];
              p[j] = dot * n.scale;
              if (p[j] > mx) mx = p[j];
            }
            let sum = 0;
            for (let j = 0; j <= last; j++) sum += p[j] = Math.exp(p[j] - mx);
            for (let j = 0; j <= last; j++) {
              const vo = ((b * S + j) * NKV + kh) * D, w = p[j] / sum;
              for (let d = 0; d < D; d++) out[qo + d] += w * v[vo + d];
            }
          }
        }
      }
      return out;
    }
  }
}
