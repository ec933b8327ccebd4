/**
 * The StableHLO emitter checked numerically: emitted programs for tiny Qwen2 checkpoints, run by the test
 * evaluator (tests/support/stablehlo_eval.ts), against the float64 reference interpreter (≤ 1e-4 relative on
 * real tokens); data-parallel records equal single-replica records; bf16 compute stays close.
 */
import { assert, assertClose, assertEquals, maxRelError } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { loadModelConfig } from "../lib/model/config.ts";
import { buildQwen2Graph } from "../lib/model/qwen2.ts";
import { referenceForward } from "../lib/model/reference.ts";
import type { TokenBatch } from "../lib/types.ts";
import { createReplicaBackend } from "../lib/backend/pjrt/index.ts";
import { emitStableHlo, seqBucket } from "../lib/backend/pjrt/index.ts";
import { EvalRunner } from "./support/eval_runner.ts";
import { evaluateStableHlo } from "./support/stablehlo_eval.ts";

const TINY = { hidden: 32, layers: 3, heads: 4, kvHeads: 2, vocab: 300, tokenizer: false, seed: 7 };

function makeBatch(lengths: number[], seqLen: number, vocab: number): TokenBatch {
  const ids = new Int32Array(lengths.length * seqLen);
  lengths.forEach((len, b) => {
    for (let s = 0; s < len; s++) ids[b * seqLen + s] = (b * 37 + s * 11 + 5) % vocab;
  });
  return { ids, lengths: Int32Array.from(lengths), batch: lengths.length, seqLen };
}

/** Values of real tokens only (padded positions are unspecified). */
function realTokens(a: Float32Array, batch: TokenBatch, hidden: number): Float32Array {
  const out: number[] = [];
  for (let b = 0; b < batch.batch; b++) {
    const o = b * batch.seqLen * hidden;
    out.push(...a.subarray(o, o + batch.lengths[b] * hidden));
  }
  return Float32Array.from(out);
}

Deno.test("stablehlo evaluator: dot_general, reduce, gather and iota on hand-written programs", () => {
  const text = `module @t {
  func.func public @main(%a: tensor<2x3xf32>, %b: tensor<4x3xf32>, %t: tensor<5x2xf32>, %i: tensor<1x2xi32>) -> (tensor<2x4xf32>, tensor<2xf32>, tensor<1x2x2xf32>, tensor<2x3xi32>) {
    %v0 = "stablehlo.dot_general"(%a, %b) <{dot_dimension_numbers = #stablehlo.dot<lhs_batching_dimensions = [], rhs_batching_dimensions = [], lhs_contracting_dimensions = [1], rhs_contracting_dimensions = [1]>}> : (tensor<2x3xf32>, tensor<4x3xf32>) -> tensor<2x4xf32>
    %v1 = "stablehlo.constant"() <{value = dense<0.0> : tensor<f32>}> : () -> tensor<f32>
    %v2 = "stablehlo.reduce"(%a, %v1) <{dimensions = array<i64: 1>}> ({
    ^bb0(%x: tensor<f32>, %y: tensor<f32>):
      %r = "stablehlo.add"(%x, %y) : (tensor<f32>, tensor<f32>) -> tensor<f32>
      "stablehlo.return"(%r) : (tensor<f32>) -> ()
    }) : (tensor<2x3xf32>, tensor<f32>) -> tensor<2xf32>
    %v3 = "stablehlo.gather"(%t, %i) <{dimension_numbers = #stablehlo.gather<offset_dims = [2], collapsed_slice_dims = [0], start_index_map = [0], index_vector_dim = 2>, indices_are_sorted = false, slice_sizes = array<i64: 1, 2>}> : (tensor<5x2xf32>, tensor<1x2xi32>) -> tensor<1x2x2xf32>
    %v4 = "stablehlo.iota"() <{iota_dimension = 1 : i64}> : () -> tensor<2x3xi32>
    return %v0, %v2, %v3, %v4 : tensor<2x4xf32>, tensor<2xf32>, tensor<1x2x2xf32>, tensor<2x3xi32>
  }
}`;
  const a = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const b = Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1]);
  const t = Float32Array.from([0, 1, 10, 11, 20, 21, 30, 31, 40, 41]);
  const [dot, sum, rows, iota] = evaluateStableHlo(text, [
    { shape: [2, 3], elem: "f32", data: a },
    { shape: [4, 3], elem: "f32", data: b },
    { shape: [5, 2], elem: "f32", data: t },
    { shape: [1, 2], elem: "i32", data: Int32Array.from([3, 1]) },
  ]);
  assertEquals(Array.from(dot.data), [1, 2, 3, 6, 4, 5, 6, 15]);
  assertEquals(Array.from(sum.data), [6, 15]);
  assertEquals(Array.from(rows.data), [30, 31, 10, 11]);
  assertEquals(Array.from(iota.data), [0, 1, 2, 0, 1, 2]);
});

Deno.test("stablehlo emitter: the emitted Qwen2 graph matches the reference interpreter (<= 1e-4)", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const cfg = await loadModelConfig(dir.path);
  const layers = [0, 2];
  const graph = buildQwen2Graph(cfg, layers);
  const batch = makeBatch([7, 3, 5], 7, cfg.vocab_size);
  const runner = await EvalRunner.create(dir.path, graph, 1);
  const backend = createReplicaBackend("eval", cfg, layers, runner);
  const got = await backend.forward(batch, layers);
  const want = await referenceForward(dir.path, batch, layers);
  for (const l of layers) {
    assertEquals(got.get(l)!.length, 3 * 7 * cfg.hidden_size);
    const e = maxRelError(
      realTokens(got.get(l)!, batch, cfg.hidden_size),
      realTokens(want.get(l)!, batch, 32),
    );
    assert(e <= 1e-4, `layer ${l}: max rel error ${e}`);
  }
  assertEquals(runner.shapes, [`3x${seqBucket(7)}`]);
  const text = runner.texts.get("3x16")!;
  assert(text.includes("precision HIGHEST"), "f32 programs use HIGHEST precision");
  assertEquals(emitStableHlo(graph, { batch: 3, seq: 16 }).weights.length, 1 + 12 * 3);
  await backend.close();
});

Deno.test("pjrt data parallel: 4 replicas give the same records as 1 (uneven batch, padding rows)", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const cfg = await loadModelConfig(dir.path);
  const layers = [1];
  const graph = buildQwen2Graph(cfg, layers);
  const batch = makeBatch([9, 2, 6, 9, 1], 9, cfg.vocab_size);
  const one = createReplicaBackend("eval1", cfg, layers, await EvalRunner.create(dir.path, graph, 1));
  const fourRunner = await EvalRunner.create(dir.path, graph, 4);
  const four = createReplicaBackend("eval4", cfg, layers, fourRunner);
  const a = (await one.forward(batch, layers)).get(1)!;
  const b = (await four.forward(batch, layers)).get(1)!;
  assertEquals(fourRunner.shapes, ["2x16"]); // ceil(5 / 4) rows per replica; 3 dummy rows
  assertEquals(b, a);
  const want = await referenceForward(dir.path, batch, layers);
  assertClose(
    realTokens(b, batch, 32),
    realTokens(want.get(1)!, batch, 32),
    1e-4,
    "data parallel vs reference",
  );
});

Deno.test("stablehlo emitter: bfloat16 compute stays near the reference and differs from f32", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const cfg = await loadModelConfig(dir.path);
  const graph = buildQwen2Graph(cfg, [0]);
  const batch = makeBatch([6, 4], 6, cfg.vocab_size);
  const runner = await EvalRunner.create(dir.path, graph, 1, "bfloat16");
  const got = (await createReplicaBackend("bf16", cfg, [0], runner).forward(batch, [0])).get(0)!;
  const want = (await referenceForward(dir.path, batch, [0])).get(0)!;
  const e = maxRelError(realTokens(got, batch, 32), realTokens(want, batch, 32));
  assert(e > 1e-6 && e < 3e-2, `bf16 max rel error ${e}`);
  assert(runner.texts.get("2x16")!.includes("tensor<32x32xbf16>"), "matrices are bf16 arguments");
});
