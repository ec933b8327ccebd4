/**
 * `deno task bench forward`: forward speed at the full Qwen2.5-0.5B shape (random weights: 24 layers, hidden 896,
 * 14/2 heads, intermediate 4864, vocab 151936; all 24 layers as outputs), side by side in one run on the same
 * checkpoint and token ids: onnxruntime (the ONNX backend), XLA-CPU through our PJRT binding (the pjrt backend on
 * the XLA CPU plugin), and `jax.jit` of the same Qwen2 math (bench/jax_forward.py; the same XLA compiler, so a
 * gap between the last two is ours: transfers, layouts, the emitted program). Cases: 512×1, 2048×1, 512×8 tokens
 * (`ACTSHARD_BENCH_FORWARD_CASES=1x512,8x512` to choose). Prints tokens/s per backend and the ratios, next to
 * the rate of one large ORT MatMul measured in the same run. PJRT and JAX times exclude compilation (the first
 * run of each shape, printed separately). Peak RSS is printed at the end.
 */
import { join } from "node:path";
import onnxProto from "onnx-proto";
import * as ort from "onnxruntime-node";
import { createOnnxBackend } from "../lib/backend/onnx/index.ts";
import { createPjrtBackend, findPjrtPlugin } from "../lib/backend/pjrt/index.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import type { TokenBatch } from "../lib/types.ts";

const SHAPE = { hidden: 896, layers: 24, heads: 14, kvHeads: 2, intermediate: 4864, vocab: 151936, seed: 1 };
const CACHE = new URL("../.cache/bench-qwen2.5-0.5b-shape/", import.meta.url).pathname;
/** [batch, seq] cases. */
const CASES: [number, number][] = (Deno.env.get("ACTSHARD_BENCH_FORWARD_CASES") ?? "1x512,1x2048,8x512")
  .split(",").map((c) => c.split("x").map(Number) as [number, number]);

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

/** Per case ("BxS"): tokens per wall second and per CPU second of this process (all threads). */
type Rates = Map<string, { wall: number; cpu: number }>;

const key = (b: number, s: number) => `${b}x${s}`;

async function timeOrt(layers: number[], threads: number): Promise<Rates> {
  const t0 = performance.now();
  const be = await createOnnxBackend(CACHE, { layers, threads });
  console.log(`onnxruntime: session created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const out: Rates = new Map();
  try {
    await be.forward(batchOf(1, 64), layers); // warm-up (first run allocates and tunes)
    for (const [b, s] of CASES) {
      const t = performance.now(), c0 = cpuSeconds();
      await be.forward(batchOf(b, s), layers);
      const sec = (performance.now() - t) / 1000, cpu = cpuSeconds() - c0;
      out.set(key(b, s), { wall: b * s / sec, cpu: b * s / cpu });
      console.log(
        `  onnxruntime ${s}x${b}: ${(b * s / sec).toFixed(0)} tokens/s (${sec.toFixed(2)} s, ${
          cpu.toFixed(2)
        } CPU-s)`,
      );
    }
  } finally {
    await be.close();
  }
  return out;
}

async function timePjrt(layers: number[]): Promise<Rates | null> {
  let plugin: string;
  try {
    plugin = findPjrtPlugin(Deno.env.get("ACTSHARD_BENCH_PJRT_PLUGIN") ?? null, Deno.env, { kinds: ["cpu"] });
  } catch {
    console.log("pjrt: no XLA CPU plugin installed (pip install -r .ci/requirements.txt): skipped");
    return null;
  }
  const t0 = performance.now();
  const be = await createPjrtBackend(CACHE, {
    layers,
    pluginPath: plugin,
    log: (l) => console.log(`  ${l}`),
  });
  console.log(`pjrt: weights uploaded in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  const out: Rates = new Map();
  try {
    for (const [b, s] of CASES) {
      const batch = batchOf(b, s);
      let t = performance.now();
      await be.forward(batch, layers); // compiles this shape
      const first = (performance.now() - t) / 1000;
      t = performance.now();
      const c0 = cpuSeconds();
      await be.forward(batch, layers);
      const sec = (performance.now() - t) / 1000, cpu = cpuSeconds() - c0;
      out.set(key(b, s), { wall: b * s / sec, cpu: b * s / cpu });
      console.log(
        `  pjrt ${s}x${b}: ${(b * s / sec).toFixed(0)} tokens/s (${sec.toFixed(2)} s, ${
          cpu.toFixed(2)
        } CPU-s; ` +
          `compile ~${(first - sec).toFixed(1)} s)`,
      );
    }
  } finally {
    await be.close();
  }
  return out;
}

async function timeJax(): Promise<Rates | null> {
  const script = new URL("./jax_forward.py", import.meta.url).pathname;
  const py = Deno.env.get("ACTSHARD_PYTHON") ?? "python3";
  let res: Deno.CommandOutput;
  try {
    res = await new Deno.Command(py, {
      args: [script, CACHE, "--cases", ...CASES.map(([b, s]) => key(b, s)), "--repeat", "1"],
      stdout: "piped",
      stderr: "piped",
      env: { TF_CPP_MIN_LOG_LEVEL: "3", JAX_PLATFORMS: "cpu" },
    }).output();
  } catch (e) {
    console.log(`jax.jit: ${py} does not run (${(e as Error).message}): skipped`);
    return null;
  }
  if (!res.success) {
    const err = new TextDecoder().decode(res.stderr).trim().split("\n").pop();
    console.log(`jax.jit: skipped (${err}; pip install jax==0.10.2 jaxlib==0.10.2)`);
    return null;
  }
  const out: Rates = new Map();
  for (const line of new TextDecoder().decode(res.stdout).trim().split("\n")) {
    const r = JSON.parse(line);
    out.set(key(r.batch, r.seq), { wall: r.tokens_per_s, cpu: r.tokens_per_cpu_s });
    console.log(
      `  jax.jit ${r.seq}x${r.batch}: ${r.tokens_per_s.toFixed(0)} tokens/s (${r.seconds.toFixed(2)} s, ` +
        `${r.cpu_seconds.toFixed(2)} CPU-s; compile ~${(r.compile_seconds - r.seconds).toFixed(1)} s)`,
    );
  }
  return out;
}

/** Run the section. */
export async function run(): Promise<void> {
  const threads = navigator.hardwareConcurrency;
  const t0 = performance.now();
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
  const layers = [...Array(SHAPE.layers).keys()];
  // One backend at a time (each holds the 2 GB of f32 weights), in this order, in this one run.
  const ort = await timeOrt(layers, threads);
  const pjrt = await timePjrt(layers);
  const jax = await timeJax();
  const f = (x: number | undefined) => x === undefined ? "—" : x.toFixed(0);
  const r = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? "—" : `${(a / b).toFixed(2)}x`;
  // Wall time on a shared machine measures the neighbours too; tokens per CPU-second measure the work.
  for (const unit of ["wall", "cpu"] as const) {
    console.log(
      `\n${
        unit === "wall" ? "tokens/s" : "tokens per CPU-s"
      }: seq x batch | onnxruntime | pjrt (XLA-CPU) | ` +
        `jax.jit | pjrt/jax.jit | pjrt/onnxruntime | pjrt FLOP rate`,
    );
    for (const [b, s] of CASES) {
      const k = key(b, s);
      const [o, p, j] = [ort.get(k)?.[unit], pjrt?.get(k)?.[unit], jax?.get(k)?.[unit]];
      // the useful FLOP rate of the pjrt forward as a fraction of the ORT MatMul's rate
      const g = p === undefined
        ? "—"
        : (forwardFlops(b, s) * p / (b * s) / 1e9 / (unit === "wall" ? gemm : gemmCpu))
          .toFixed(2);
      console.log(`${s}x${b} | ${f(o)} | ${f(p)} | ${f(j)} | ${r(p, j)} | ${r(p, o)} | pjrt ${g} x GEMM`);
    }
  }
  console.log(`peak RSS ${peakRssMiB().toFixed(0)} MiB`);
}

if (import.meta.main) await run();
