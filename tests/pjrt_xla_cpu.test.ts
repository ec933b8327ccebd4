/**
 * The PJRT path on a REAL plugin: Google's XLA CPU PJRT plugin from PyPI (tests/support/xla_cpu_plugin.ts) —
 * the same XLA compiler front end and C API as libtpu. The emitted Qwen2 programs compiled and run through our
 * binding for f32 and bf16 checkpoints, GQA ratios 1/2/7, tied and untied embeddings, a padded batch: every
 * requested layer within 1e-4 relative of the float64 reference interpreter and of the ONNX backend; data
 * parallel over `cpu_device_count` devices equals one device; the handshake facts; a module the plugin cannot
 * parse is one line; nothing leaks. Counted in CI (a missing plugin fails there), skipped with a note elsewhere.
 */
import { assert, assertEquals, assertMatch, maxRelError } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { ignoreWithoutXlaCpu, XLA_CPU_PLUGIN, xlaCpuPlugin } from "./support/xla_cpu_plugin.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { loadModelConfig } from "../lib/model/config.ts";
import { referenceForward } from "../lib/model/reference.ts";
import { createPjrtBackend } from "../lib/backend/pjrt/index.ts";
import { createOnnxBackend } from "../lib/backend/onnx/index.ts";
import { compileOptionsBytes } from "../lib/backend/pjrt/compile_options.ts";
import { compileProblem } from "../lib/backend/pjrt/runner.ts";
import { ActshardError } from "../lib/errors.ts";
import type { Backend, TokenBatch } from "../lib/types.ts";
import { PjrtApi, PjrtClient, PjrtError } from "../native/pjrt/mod.ts";

const ignore = ignoreWithoutXlaCpu();
if (!ignore && XLA_CPU_PLUGIN) { // without one (in CI) each test fails on its own, with the note
  Deno.env.set("TF_CPP_MIN_LOG_LEVEL", Deno.env.get("TF_CPP_MIN_LOG_LEVEL") ?? "2");
  PjrtApi.open(xlaCpuPlugin()).close(); // dlopen once, outside any test's resource sanitizer
}

function makeBatch(lengths: number[], vocab: number): TokenBatch {
  const seqLen = Math.max(...lengths);
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

/** Close a backend, then check the binding holds no handle of the plugin any more. */
async function closeClean(backend: Backend): Promise<void> {
  await backend.close();
  const api = PjrtApi.open(xlaCpuPlugin());
  assertEquals(api.live, { events: 0, buffers: 0, executables: 0, clients: 0 });
  api.close();
}

interface Case {
  name: string;
  model: Parameters<typeof writeTinyModel>[1];
  layers: number[];
}

const CASES: Case[] = [
  {
    name: "f32, GQA 1 (4/4 heads), tied",
    model: { hidden: 32, heads: 4, kvHeads: 4, tie: true },
    layers: [0, 2],
  },
  {
    name: "f32, GQA 2 (4/2 heads), untied",
    model: { hidden: 32, heads: 4, kvHeads: 2, tie: false },
    layers: [1, 2],
  },
  {
    name: "bf16 checkpoint, GQA 7 (7/1 heads), tied",
    model: { hidden: 56, heads: 7, kvHeads: 1, tie: true, dtype: "BF16" },
    layers: [0, 1, 2],
  },
];

for (const c of CASES) {
  Deno.test({
    name:
      `xla cpu: emitted Qwen2 (${c.name}), padded batch: every layer within 1e-4 of the reference and ONNX`,
    ignore,
    async fn() {
      await using dir = await tempDir();
      await writeTinyModel(dir.path, { layers: 3, vocab: 300, tokenizer: false, seed: 7, ...c.model });
      const cfg = await loadModelConfig(dir.path);
      const batch = makeBatch([9, 3, 6], cfg.vocab_size); // rows 1 and 2 padded
      const pjrt = await createPjrtBackend(dir.path, { layers: c.layers, pluginPath: xlaCpuPlugin() });
      const onnx = await createOnnxBackend(dir.path, { layers: c.layers });
      try {
        const got = await pjrt.forward(batch, c.layers);
        const viaOnnx = await onnx.forward(batch, c.layers);
        const want = await referenceForward(dir.path, batch, c.layers);
        for (const l of c.layers) {
          assertEquals(got.get(l)!.length, batch.batch * batch.seqLen * cfg.hidden_size);
          const g = realTokens(got.get(l)!, batch, cfg.hidden_size);
          const eRef = maxRelError(g, realTokens(want.get(l)!, batch, cfg.hidden_size));
          const eOnnx = maxRelError(g, realTokens(viaOnnx.get(l)!, batch, cfg.hidden_size));
          console.log(
            `layer ${l}: max rel error vs reference ${eRef.toExponential(2)}, vs ONNX ${
              eOnnx.toExponential(2)
            }`,
          );
          assert(eRef <= 1e-4, `layer ${l}: max rel error vs reference ${eRef}`);
          assert(eOnnx <= 1e-4, `layer ${l}: max rel error vs ONNX ${eOnnx}`);
        }
      } finally {
        await onnx.close();
        await closeClean(pjrt);
      }
    },
  });
}

Deno.test({
  name: "xla cpu: --compute_dtype bfloat16 runs, stays within 3e-2 of the reference and differs from f32",
  ignore,
  async fn() {
    await using dir = await tempDir();
    await writeTinyModel(dir.path, {
      hidden: 32,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      vocab: 300,
      tokenizer: false,
    });
    const batch = makeBatch([8, 5], 300);
    const bf = await createPjrtBackend(dir.path, {
      layers: [1],
      pluginPath: xlaCpuPlugin(),
      computeDtype: "bfloat16",
    });
    const f32 = await createPjrtBackend(dir.path, { layers: [1], pluginPath: xlaCpuPlugin() });
    try {
      const a = realTokens((await bf.forward(batch, [1])).get(1)!, batch, 32);
      const b = realTokens((await f32.forward(batch, [1])).get(1)!, batch, 32);
      const want = realTokens((await referenceForward(dir.path, batch, [1])).get(1)!, batch, 32);
      const e = maxRelError(a, want);
      assert(e <= 3e-2 && e > 1e-5, `bf16 compute: max rel error ${e}`);
      assert(maxRelError(b, want) <= 1e-4);
    } finally {
      await bf.close();
      await closeClean(f32);
    }
  },
});

Deno.test({
  name:
    "xla cpu: data parallel over cpu_device_count=4 gives the records of one device (≤ 1e-6, uneven batch)",
  ignore,
  async fn() {
    await using dir = await tempDir();
    await writeTinyModel(dir.path, {
      hidden: 32,
      layers: 2,
      heads: 4,
      kvHeads: 2,
      vocab: 300,
      tokenizer: false,
    });
    const batch = makeBatch([9, 2, 6, 9, 1], 300); // 5 rows over 4 devices: 2 per replica, 3 dummy rows
    const logs: string[] = [];
    const four = await createPjrtBackend(dir.path, {
      layers: [0, 1],
      pluginPath: xlaCpuPlugin(),
      clientOptions: { cpu_device_count: { int64: 4 } },
      log: (l) => logs.push(l),
    });
    const one = await createPjrtBackend(dir.path, { layers: [0, 1], pluginPath: xlaCpuPlugin() });
    try {
      assert(logs.some((l) => /4 device\(s\)/.test(l)), logs.join("\n"));
      const a = await four.forward(batch, [0, 1]);
      const b = await one.forward(batch, [0, 1]);
      for (const l of [0, 1]) {
        const x = realTokens(a.get(l)!, batch, 32), y = realTokens(b.get(l)!, batch, 32);
        // Bitwise equal on xla-cpu-pjrt (XLA of 2025); newer XLA tiles its CPU dots by the batch shape, so a
        // replica's [2, S] rows may differ from the same rows in [5, S] in the last bit, as onnxruntime's do.
        const e = maxRelError(x, y);
        assert(e <= 1e-6, `layer ${l}: data parallel vs one device: max rel error ${e}`);
        console.log(`layer ${l}: data parallel vs one device: max rel error ${e.toExponential(2)}`);
      }
    } finally {
      await four.close();
      await closeClean(one);
    }
  },
});

Deno.test({
  name: "xla cpu: handshake (API version, StableHLO attributes), 4 devices by default, 1 through the backend",
  ignore,
  async fn() {
    const api = PjrtApi.open(xlaCpuPlugin());
    assertEquals(api.version.major, 0);
    assert(api.version.minor >= 81, `C API 0.${api.version.minor}`);
    const attrs = api.attributes();
    assert(Array.isArray(attrs.stablehlo_current_version), JSON.stringify(attrs));
    assert(Array.isArray(attrs.stablehlo_minimum_version), JSON.stringify(attrs));
    const client = PjrtClient.create(api);
    assertEquals(client.platformName, "cpu");
    assertEquals(client.devices.length, 4); // XLA's default, which the backend overrides
    await client.close();
    const two = PjrtClient.create(api, { cpu_device_count: 2 });
    assertEquals(two.devices.map((d) => d.id), [0, 1]);
    await two.close();
    api.close();
    await using dir = await tempDir();
    await writeTinyModel(dir.path, {
      hidden: 32,
      layers: 1,
      heads: 4,
      kvHeads: 2,
      vocab: 100,
      tokenizer: false,
    });
    const logs: string[] = [];
    const backend = await createPjrtBackend(dir.path, {
      layers: [0],
      pluginPath: xlaCpuPlugin(),
      log: (l) => logs.push(l),
    });
    await closeClean(backend);
    assertMatch(logs.join("\n"), /C API 0\.\d+, StableHLO \d+\.\d+\.\d+\.\.\d+\.\d+\.\d+/);
    assertMatch(logs.join("\n"), /cpu cpu, 1 device\(s\)/);
  },
});

Deno.test({
  name:
    "xla cpu: a module the plugin cannot parse is one line saying so, with the StableHLO versions it reads",
  ignore,
  async fn() {
    const api = PjrtApi.open(xlaCpuPlugin());
    const client = PjrtClient.create(api, { cpu_device_count: 1 });
    try {
      client.compile(
        `module @m { func.func public @main(%a: tensor<2xf32>) -> (tensor<2xf32>) {
  %0 = "stablehlo.frobnicate"(%a) : (tensor<2xf32>) -> tensor<2xf32>
  return %0 : tensor<2xf32> } }`,
        compileOptionsBytes({ numReplicas: 1 }),
      );
      throw new Error("expected a compile error");
    } catch (e) {
      assert(e instanceof PjrtError, String(e));
      const err = compileProblem(e, "1x16", api.attributes());
      assert(err instanceof ActshardError);
      const line = err.line();
      assert(!line.includes("\n"), line);
      assertMatch(
        line,
        /^the PJRT plugin cannot parse the emitted StableHLO program \(1x16\): .*stablehlo\.frobnicate.*; the plugin reads StableHLO \d+\.\d+\.\d+\.\.\d+\.\d+\.\d+/,
      );
    } finally {
      await client.close();
      assertEquals(api.live, { events: 0, buffers: 0, executables: 0, clients: 0 });
      api.close();
    }
  },
});
