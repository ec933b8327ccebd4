/**
 * `deno task bench forward`: ONNX-backend forward speed on the full Qwen2.5-0.5B shape (random weights: 24 layers,
 * hidden 896, 14/2 heads, intermediate 4864, vocab 151936), all 24 layers as outputs, at sequence 512 and 2048,
 * batch 1 and 8, next to the rate of one large ORT MatMul measured in the same run. The figure is the ratio of
 * the forward's useful FLOP rate to that GEMM rate. Cases predicted to take over 2 minutes are skipped (and
 * say so). Peak RSS is printed at the end.
 */
import { join } from "node:path";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { createOnnxBackend } from "../lib/backend/onnx/index.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import type { TokenBatch } from "../lib/types.ts";

const SHAPE = { hidden: 896, layers: 24, heads: 14, kvHeads: 2, intermediate: 4864, vocab: 151936, seed: 1 };
const CACHE = new URL("../.cache/bench-qwen2.5-0.5b-shape/", import.meta.url).pathname;
const MAX_CASE_S = 120;

/** FLOPs of one forward over `tokens` tokens of length `seq` (linear layers + causal attention). */
function forwardFlops(batch: number, seq: number): number {
  const { hidden: H, layers: L, heads, kvHeads, intermediate: I } = SHAPE;
  const D = H / heads;
  const linear = 2 * (H * heads * D + 2 * H * kvHeads * D + heads * D * H + 3 * H * I);
  const attn = 2 * 2 * heads * D * (seq + 1) / 2; // q·k and p·v over the causal half, per token
  return batch * seq * L * (linear + attn);
}

/** GFLOP per wall second and per CPU second of one [M,K]×[K,N] ORT MatMul (best of a few runs). */
async function gemmRate(threads: number, M = 2048, K = 896, N = 4864): Promise<[number, number]> {
  const { onnx } = onnxProto;
  const b = new Float32Array(K * N).map((_, i) => ((i * 7919) % 1000) / 1000 - 0.5);
  const model = onnx.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: "", version: 17 }],
    graph: {
      name: "gemm",
      node: [{ opType: "MatMul", input: ["a", "b"], output: ["c"] }],
      initializer: [{ name: "b", dims: [K, N], dataType: 1, rawData: new Uint8Array(b.buffer) }],
      input: [{
        name: "a",
        type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: M }, { dimValue: K }] } } },
      }],
      output: [{
        name: "c",
        type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: M }, { dimValue: N }] } } },
      }],
    },
  });
  const s = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
  });
  const a = new ort.Tensor("float32", new Float32Array(M * K).fill(0.01), [M, K]);
  let best = Infinity, bestCpu = Infinity;
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now(), c0 = cpuSeconds();
    await s.run({ a });
    if (i > 0) best = Math.min(best, (performance.now() - t0) / 1000);
    if (i > 0) bestCpu = Math.min(bestCpu, cpuSeconds() - c0);
  }
  await s.release();
  return [(2 * M * K * N) / best / 1e9, (2 * M * K * N) / bestCpu / 1e9];
}

/** User + system CPU seconds of this process (the machine is shared: wall time alone misleads). */
function cpuSeconds(): number {
  const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

function peakRssMiB(): number {
  const m = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
  return m ? Number(m[1]) / 1024 : NaN;
}

function batchOf(batch: number, seq: number): TokenBatch {
  const ids = new Int32Array(batch * seq).map((_, i) => (i * 2654435761) % 150000);
  return { ids, lengths: new Int32Array(batch).fill(seq), batch, seqLen: seq };
}

/** Run the section. */
export async function run(): Promise<void> {
  const threads = navigator.hardwareConcurrency;
  let t0 = performance.now();
  try {
    await Deno.stat(join(CACHE, "model.safetensors"));
  } catch {
    await writeTinyModel(CACHE, { ...SHAPE, dtype: "F32", tokenizer: false });
    console.log(`wrote the random-weight checkpoint in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const [gemm, gemmCpu] = await gemmRate(threads);
  console.log(
    `threads ${threads}; ORT MatMul [2048x896]x[896x4864]: ${gemm.toFixed(1)} GFLOP/s ` +
      `(${gemmCpu.toFixed(1)} GFLOP per CPU-s)`,
  );
  t0 = performance.now();
  const layers = [...Array(SHAPE.layers).keys()];
  const be = await createOnnxBackend(CACHE, { layers, threads });
  console.log(`session created in ${((performance.now() - t0) / 1000).toFixed(1)} s (24 layers as outputs)`);
  let rate = 0; // GFLOP/s measured so far, for skipping
  try {
    // Warm-up (first run allocates and tunes).
    await be.forward(batchOf(1, 64), layers);
    for (const [batch, seq] of [[1, 512], [1, 2048], [8, 512], [8, 2048]]) {
      const flops = forwardFlops(batch, seq);
      if (rate > 0 && flops / (rate * 1e9) > MAX_CASE_S) {
        console.log(
          `seq ${seq} batch ${batch}: skipped (predicted ${
            (flops / rate / 1e9).toFixed(0)
          } s > ${MAX_CASE_S} s)`,
        );
        continue;
      }
      const t = performance.now(), c0 = cpuSeconds();
      await be.forward(batchOf(batch, seq), layers);
      const s = (performance.now() - t) / 1000, cpu = cpuSeconds() - c0;
      rate = flops / s / 1e9;
      const rateCpu = flops / cpu / 1e9;
      console.log(
        `seq ${seq} batch ${batch}: ${(batch * seq / s).toFixed(0)} tokens/s, ${s.toFixed(2)} s, ` +
          `${rate.toFixed(1)} GFLOP/s = ${(rate / gemm).toFixed(2)} x GEMM ` +
          `(per CPU-s: ${(rateCpu / gemmCpu).toFixed(2)} x GEMM)`,
      );
    }
  } finally {
    await be.close();
  }
  console.log(`peak RSS ${peakRssMiB().toFixed(0)} MiB`);
}

if (import.meta.main) await run();
