/**
 * Test support: a {@link ReplicaRunner} that runs the emitted StableHLO with the test evaluator instead of a
 * PJRT device — N "replicas" evaluated one after the other. It lets CI check the emitter numerically and the
 * data-parallel split/gather end to end without an accelerator.
 */
import type { Graph } from "../../lib/model/ir.ts";
import { CheckpointWeights } from "../../lib/model/safetensors.ts";
import { type ComputeDtype, emitStableHlo, ropeTables } from "../../lib/backend/pjrt/emit.ts";
import type { ReplicaInput, ReplicaRunner } from "../../lib/backend/pjrt/parallel.ts";
import { evaluateStableHlo, type HloTensor, parseProgram, roundBf16 } from "./stablehlo_eval.ts";

/** Evaluates the emitted program for every replica. `shapes` records each compiled shape ("BxS"). */
export class EvalRunner implements ReplicaRunner {
  readonly replicas: number;
  readonly shapes: string[] = [];
  readonly texts = new Map<string, string>();
  #graph: Graph;
  #weights: HloTensor[];
  #dtype: ComputeDtype;

  private constructor(replicas: number, graph: Graph, weights: HloTensor[], dtype: ComputeDtype) {
    this.replicas = replicas;
    this.#graph = graph;
    this.#weights = weights;
    this.#dtype = dtype;
  }

  static async create(
    modelDir: string,
    graph: Graph,
    replicas: number,
    dtype: ComputeDtype = "float32",
  ): Promise<EvalRunner> {
    const ckpt = await CheckpointWeights.open(modelDir);
    try {
      const order = emitStableHlo(graph, { batch: 1, seq: 1 }, dtype).weights;
      const weights: HloTensor[] = [];
      for (const w of order) {
        const data = await ckpt.read(w.name, w.shape);
        if (w.dtype === "bf16") { for (let i = 0; i < data.length; i++) data[i] = roundBf16(data[i]); }
        weights.push({ shape: w.shape, elem: w.dtype, data });
      }
      return new EvalRunner(replicas, graph, weights, dtype);
    } finally {
      ckpt.close();
    }
  }

  run(shape: { batch: number; seq: number }, inputs: ReplicaInput[]): Promise<Float32Array[][]> {
    const { batch: B, seq: S } = shape;
    const key = `${B}x${S}`;
    this.shapes.push(key);
    const program = emitStableHlo(this.#graph, shape, this.#dtype);
    this.texts.set(key, program.text);
    const parsed = parseProgram(program.text);
    const w = Math.max(program.ropeHalf, 1);
    const { cos, sin } = ropeTables(S, program.ropeHalf, program.ropeTheta);
    return Promise.resolve(inputs.map((inp) =>
      evaluateStableHlo(parsed, [
        { shape: [B, S], elem: "i32", data: inp.ids },
        { shape: [B], elem: "i32", data: inp.lengths },
        { shape: [S, w], elem: "f32", data: cos },
        { shape: [S, w], elem: "f32", data: sin },
        ...this.#weights,
      ]).map((t) => t.data as Float32Array)
    ));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
