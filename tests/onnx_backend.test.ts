/**
 * The ONNX backend against the float64 reference interpreter on random tiny Qwen2 checkpoints (GQA ratios 1, 2
 * and 7, odd sequence lengths, padded batches, every layer requested), padding invariance, and
 * `onnx.checker.check_model` on the emitted model.
 */
import { join } from "node:path";
import { assert, assertClose, assertEquals, assertRejects, maxRelError } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { DEBIAN_PYTHON, pythonTest } from "./_python.ts";
import { createOnnxBackend } from "../lib/backend/onnx/index.ts";
import { emitOnnx } from "../lib/backend/onnx/emit.ts";
import { ActshardError } from "../lib/errors.ts";
import { loadModelConfig } from "../lib/model/config.ts";
import { graphWeights } from "../lib/model/ir.ts";
import { buildQwen2Graph } from "../lib/model/qwen2.ts";
import { referenceForward } from "../lib/model/reference.ts";
import { CheckpointWeights } from "../lib/model/safetensors.ts";
import { type TinyModelOptions, writeTinyModel } from "../lib/model/tiny.ts";
import type { TokenBatch } from "../lib/types.ts";

/** A right-padded batch of pseudo-random ids with the given lengths. */
function makeBatch(lengths: number[], vocab: number, seed = 1): TokenBatch {
  const seqLen = Math.max(...lengths), batch = lengths.length;
  const ids = new Int32Array(batch * seqLen);
  let s = seed;
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < seqLen; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      ids[b * seqLen + i] = i < lengths[b] ? s % vocab : 0;
    }
  }
  return { ids, lengths: Int32Array.from(lengths), batch, seqLen };
}

/** The real-token rows of `[batch, seq, hidden]`, concatenated. */
function realTokens(x: Float32Array, batch: TokenBatch, hidden: number, row?: number): Float32Array {
  const parts: number[] = [];
  for (let b = 0; b < batch.batch; b++) {
    if (row !== undefined && b !== row) continue;
    parts.push(...x.subarray(b * batch.seqLen * hidden, (b * batch.seqLen + batch.lengths[b]) * hidden));
  }
  return Float32Array.from(parts);
}

const CASES: { name: string; opts: TinyModelOptions; lengths: number[] }[] = [
  {
    name: "MHA (ratio 1), F32",
    opts: { hidden: 32, layers: 2, heads: 4, kvHeads: 4, vocab: 300 },
    lengths: [7],
  },
  {
    name: "GQA ratio 2, padded batch",
    opts: { hidden: 64, layers: 3, heads: 4, kvHeads: 2, vocab: 300, seed: 3 },
    lengths: [9, 3, 6],
  },
  {
    name: "GQA ratio 7, padded batch, untied",
    opts: { hidden: 56, layers: 2, heads: 7, kvHeads: 1, vocab: 500, seed: 7, tie: false },
    lengths: [5, 11],
  },
  {
    name: "BF16 checkpoint (converted once), ratio 2",
    opts: { hidden: 32, layers: 2, heads: 4, kvHeads: 2, vocab: 300, dtype: "BF16", seed: 9 },
    lengths: [13, 1],
  },
];

for (const [i, c] of CASES.entries()) {
  // Both attention emitters: ORT's fused GroupQueryAttention (the default) and standard ops.
  const fusedAttention = i % 2 === 0;
  Deno.test(`onnx vs reference interpreter: ${c.name} (fused attention ${fusedAttention})`, async () => {
    await using dir = await tempDir();
    await writeTinyModel(dir.path, { ...c.opts, tokenizer: false });
    const layers = [...Array(c.opts.layers!).keys()];
    const batch = makeBatch(c.lengths, c.opts.vocab!);
    const ref = await referenceForward(dir.path, batch, layers);
    // weightCacheDir null: BF16 converted for this run only (the cached path: onnx_weight_cache.test.ts).
    const be = await createOnnxBackend(dir.path, {
      layers,
      threads: 1,
      fusedAttention,
      weightCacheDir: null,
    });
    try {
      assertEquals(be.hiddenSize, c.opts.hidden);
      const out = await be.forward(batch, layers);
      for (const l of layers) {
        const a = realTokens(out.get(l)!, batch, c.opts.hidden!);
        const r = realTokens(ref.get(l)!, batch, c.opts.hidden!);
        assert(r.some((v) => Math.abs(v) > 0.1), "reference activations are not trivially zero");
        assertClose(a, r, 1e-4, `layer ${l}`);
      }
    } finally {
      await be.close();
    }
  });
}

for (const fusedAttention of [true, false]) {
  Deno.test(`onnx: real tokens of a padded batch equal each prompt run alone (fused ${fusedAttention})`, async () => {
    await using dir = await tempDir();
    const opts = { hidden: 64, layers: 2, heads: 4, kvHeads: 2, vocab: 400, seed: 5, tokenizer: false };
    await writeTinyModel(dir.path, opts);
    const lengths = [4, 10, 7];
    const batch = makeBatch(lengths, 400, 11);
    const be = await createOnnxBackend(dir.path, { layers: [0, 1], fusedAttention });
    try {
      const together = await be.forward(batch, [0, 1]);
      for (let b = 0; b < lengths.length; b++) {
        const alone: TokenBatch = {
          ids: batch.ids.slice(b * batch.seqLen, b * batch.seqLen + lengths[b]),
          lengths: Int32Array.from([lengths[b]]),
          batch: 1,
          seqLen: lengths[b],
        };
        const single = await be.forward(alone, [1]);
        const e = maxRelError(realTokens(together.get(1)!, batch, 64, b), single.get(1)!);
        assert(e <= 1e-5, `row ${b}: padded vs alone max rel error ${e}`);
      }
      // Changing padding ids changes nothing for real tokens.
      const repadded = {
        ...batch,
        ids: batch.ids.map((v, i) => (i % batch.seqLen) >= lengths[(i / batch.seqLen) | 0] ? 399 : v),
      };
      const again = await be.forward(repadded, [1]);
      assertEquals(realTokens(again.get(1)!, batch, 64), realTokens(together.get(1)!, batch, 64));
    } finally {
      await be.close();
    }
  });
}

Deno.test("onnx: forward rejects layers not built and out-of-vocab ids; bad layer at build", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, {
    hidden: 32,
    layers: 2,
    heads: 2,
    kvHeads: 1,
    vocab: 100,
    tokenizer: false,
  });
  await assertRejects(() => createOnnxBackend(dir.path, { layers: [2] }), (e: unknown) => {
    return e instanceof ActshardError && /layer index 2 is out of range/.test(e.line()) &&
      /0\.\.1/.test(e.line());
  });
  const be = await createOnnxBackend(dir.path, { layers: [0] });
  try {
    const batch = makeBatch([3], 100);
    await assertRejects(() => be.forward(batch, [1]), ActshardError);
    await assertRejects(() => be.forward({ ...batch, ids: Int32Array.from([1, 2, 100]) }, [0]), /vocabulary/);
  } finally {
    await be.close();
  }
});

for (const fusedAttention of [false, true]) {
  pythonTest(
    `onnx: the emitted model passes onnx.checker.check_model (full_check, fused ${fusedAttention})`,
    { modules: ["onnx"], python: DEBIAN_PYTHON },
    async () => {
      await using dir = await tempDir();
      await writeTinyModel(dir.path, {
        hidden: 56,
        layers: 2,
        heads: 7,
        kvHeads: 1,
        vocab: 200,
        tokenizer: false,
      });
      const cfg = await loadModelConfig(dir.path);
      const graph = buildQwen2Graph(cfg, [0, 1]);
      const w = await CheckpointWeights.open(dir.path);
      const refs = new Map(
        graphWeights(graph).map((n) => {
          const t = w.info(n.name);
          return [n.name, { location: "model.safetensors", offset: t.offset, length: t.byteLength }];
        }),
      );
      w.close();
      const path = join(dir.path, "model.onnx");
      await Deno.writeFile(path, emitOnnx(graph, (n) => refs.get(n)!, { fusedAttention }));
      const py = new Deno.Command(DEBIAN_PYTHON, {
        args: [
          "-c",
          "import onnx,sys; onnx.checker.check_model(sys.argv[1], full_check=True); print('ok')",
          path,
        ],
      });
      const r = await py.output();
      const err = new TextDecoder().decode(r.stderr);
      assert(r.success, `check_model failed: ${err}`);
      assertEquals(new TextDecoder().decode(r.stdout).trim(), "ok");
    },
  );
}

Deno.test("onnx: a forward leaves the main thread free (the session runs in a Worker), so writes and Ctrl-C are not held", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, {
    hidden: 128,
    layers: 4,
    heads: 4,
    kvHeads: 2,
    vocab: 500,
    tokenizer: false,
  });
  const be = await createOnnxBackend(dir.path, { layers: [3] });
  try {
    const batch = makeBatch([512, 512, 512, 512], 500, 3);
    // On the main thread, onnxruntime-node's run is synchronous: the forward settles before any timer can fire.
    const first = await Promise.race([
      be.forward(batch, [3]).then(() => "forward"),
      new Promise<string>((r) => setTimeout(() => r("timer"), 0)),
    ]);
    assertEquals(first, "timer");
  } finally {
    await be.close();
  }
});
