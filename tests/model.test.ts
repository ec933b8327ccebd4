/**
 * lib/model: safetensors reading (F32/BF16/F16, sharded, corrupt headers), config validation, layer checks,
 * tiny checkpoints (deterministic, HF layout), the interpreter's op semantics on hand-checkable cases, and the
 * make-tiny-model CLI's error line.
 */
import { join } from "node:path";
import {
  assert,
  assertClose,
  assertEquals,
  assertNotEquals,
  assertRejects,
  assertThrows,
} from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import { ActshardError } from "../lib/errors.ts";
import { loadModelConfig, parseModelConfig } from "../lib/model/config.ts";
import { GraphBuilder } from "../lib/model/ir.ts";
import { interpretGraph } from "../lib/model/interpreter.ts";
import { buildQwen2Graph } from "../lib/model/qwen2.ts";
import { referenceForward } from "../lib/model/reference.ts";
import {
  CheckpointWeights,
  encodeSafetensors,
  floatToBf16Bits,
  halfToFloat,
  toFloat32,
} from "../lib/model/safetensors.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";

const f32bytes = (a: number[]) => new Uint8Array(Float32Array.from(a).buffer);

Deno.test("safetensors: F32, BF16 and F16 read as f32; model. prefix optional; shape checked", async () => {
  await using dir = await tempDir();
  const bf = new Uint16Array([1.5, -2, 0.25].map(floatToBf16Bits));
  const f16 = new Uint16Array([0x3c00, 0xc000, 0x3555]); // 1, -2, 0.333...
  await Deno.writeFile(
    join(dir.path, "model.safetensors"),
    encodeSafetensors([
      { name: "model.a", dtype: "F32", shape: [2, 2], data: f32bytes([1, 2, 3, 4]) },
      { name: "b", dtype: "BF16", shape: [3], data: new Uint8Array(bf.buffer) },
      { name: "c", dtype: "F16", shape: [3], data: new Uint8Array(f16.buffer) },
    ]),
  );
  const w = await CheckpointWeights.open(dir.path);
  assertEquals(Array.from(await w.read("model.a", [2, 2])), [1, 2, 3, 4]);
  assertEquals(Array.from(await w.read("a")), [1, 2, 3, 4]);
  assertEquals(Array.from(await w.read("model.b")), [1.5, -2, 0.25]);
  assertClose(await w.read("c"), [1, -2, 0.33325195], 1e-7);
  assertThrows(() => w.info("model.a", [4]), /has shape \[2,2\], expected \[4\]/);
  assertThrows(() => w.info("model.zzz"), /tensor model.zzz is missing/);
  w.close();
  assertEquals(halfToFloat(0x7c00), Infinity);
});

Deno.test("safetensors: sharded index, missing weights, corrupt header → one clear ActshardError", async () => {
  await using dir = await tempDir();
  const p = dir.path;
  await assertRejects(() => CheckpointWeights.open(p), /model weights are missing/);
  await Deno.writeFile(
    join(p, "s1.safetensors"),
    encodeSafetensors([{ name: "x", dtype: "F32", shape: [1], data: f32bytes([7]) }]),
  );
  await Deno.writeFile(
    join(p, "s2.safetensors"),
    encodeSafetensors([{ name: "y", dtype: "F32", shape: [1], data: f32bytes([8]) }]),
  );
  await Deno.writeTextFile(
    join(p, "model.safetensors.index.json"),
    JSON.stringify({ weight_map: { x: "s1.safetensors", y: "s2.safetensors" } }),
  );
  const w = await CheckpointWeights.open(p);
  assertEquals([...(await w.read("x")), ...(await w.read("y"))], [7, 8]);
  w.close();
  await Deno.remove(join(p, "s2.safetensors"));
  await assertRejects(
    () => CheckpointWeights.open(p),
    /weight shard s2.safetensors listed in the index is missing/,
  );

  await using d2 = await tempDir();
  const bad = join(d2.path, "model.safetensors");
  const good = encodeSafetensors([{ name: "x", dtype: "F32", shape: [2], data: f32bytes([1, 2]) }]);
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array([1, 2, 3]), /shorter than 8 bytes/],
    [
      Uint8Array.from([
        ...good.slice(0, 8).map((_, i) => i === 0 ? 255 : i === 1 ? 255 : 0),
        ...good.slice(8),
      ]),
      /does not fit/,
    ],
    [Uint8Array.from(good).fill(0x7b, 8, 12), /not valid JSON/],
    [good.slice(0, good.length - 4), /does not match its shape or the file size/],
  ];
  for (const [bytes, re] of cases) {
    await Deno.writeFile(bad, bytes);
    await assertRejects(() => CheckpointWeights.open(d2.path), (e: unknown) => {
      assert(e instanceof ActshardError, `not an ActshardError: ${e}`);
      assert(re.test(e.line()) && /corrupt safetensors header/.test(e.line()), e.line());
      assert(!e.line().includes("\n"));
      return true;
    });
  }
});

Deno.test("config: missing file, unsupported architecture, bad head counts, defaults", async () => {
  await using dir = await tempDir();
  await assertRejects(() => loadModelConfig(dir.path), /model config.json is missing/);
  await Deno.writeTextFile(
    join(dir.path, "config.json"),
    JSON.stringify({ architectures: ["LlamaForCausalLM"], model_type: "llama" }),
  );
  await assertRejects(() => loadModelConfig(dir.path), /unsupported model architecture LlamaForCausalLM/);
  const base = {
    architectures: ["Qwen2ForCausalLM"],
    hidden_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    intermediate_size: 8,
    vocab_size: 10,
  };
  const c = parseModelConfig(base);
  assertEquals([c.num_key_value_heads, c.head_dim, c.rope_theta, c.rms_norm_eps, c.tie_word_embeddings], [
    4,
    16,
    10000,
    1e-6,
    false,
  ]);
  assertThrows(
    () => parseModelConfig({ ...base, num_key_value_heads: 3 }),
    /not a multiple of num_key_value_heads 3/,
  );
  assertThrows(
    () => parseModelConfig({ ...base, hidden_size: "x" }),
    /hidden_size must be a positive integer/,
  );
});

Deno.test("qwen2 graph: layer index out of range is an ActshardError naming the valid range", () => {
  const cfg = parseModelConfig({
    architectures: ["Qwen2ForCausalLM"],
    hidden_size: 8,
    num_hidden_layers: 3,
    num_attention_heads: 2,
    intermediate_size: 8,
    vocab_size: 10,
  });
  assertThrows(
    () => buildQwen2Graph(cfg, [3]),
    (e: unknown) => e instanceof ActshardError && /out of range.*0\.\.2/.test(e.line()),
  );
  assertThrows(() => buildQwen2Graph(cfg, [-1]), ActshardError);
  const g = buildQwen2Graph(cfg, [1, 0, 1]);
  assertEquals(g.outputs.map((o) => o.name), ["layer_0", "layer_1"]);
  assert(!g.nodes.some((n) => n.op === "weight" && n.name.includes("layers.2")), "layer 2 is not built");
});

Deno.test("interpreter: attention over one visible key returns v; rope at position 0 is identity", async () => {
  const g = new GraphBuilder();
  const ids = g.input("ids"), lengths = g.input("lengths");
  const x = g.reshape(g.embed(g.weight("t", [3, 4]), ids), ["batch", "seq", 1, 4]);
  const r = g.rope(x, 10000);
  g.output("rope", r);
  g.output("attn", g.attention(r, r, x, lengths));
  const table = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, -1, 0.5, 2, 0]);
  const out = await interpretGraph(g.finish(), {
    ids: Int32Array.from([1, 2]),
    lengths: Int32Array.from([1]),
    batch: 1,
    seqLen: 2,
  }, () => table);
  const rope = out.get("rope")!, attn = out.get("attn")!;
  assertEquals(Array.from(rope.slice(0, 4)), [5, 6, 7, 8]);
  // position 1, i=0: angle 1 → (x0 cos1 − x2 sin1, x2 cos1 + x0 sin1)
  assertClose([rope[4], rope[6]], [-Math.cos(1) - 2 * Math.sin(1), 2 * Math.cos(1) - Math.sin(1)], 1e-12);
  // length 1: every query sees only key 0 → its v row
  assertEquals(Array.from(attn), [5, 6, 7, 8, 5, 6, 7, 8]);
});

Deno.test("tiny model: HF layout, deterministic bytes, activations O(1) through the layers", async () => {
  await using a = await tempDir();
  await using b = await tempDir();
  const opts = { hidden: 32, layers: 4, heads: 4, kvHeads: 2, vocab: 200, seed: 4 };
  await writeTinyModel(a.path, opts);
  await writeTinyModel(b.path, opts);
  const bytes = await Deno.readFile(join(a.path, "model.safetensors"));
  assertEquals(bytes, await Deno.readFile(join(b.path, "model.safetensors")));
  const cfg = JSON.parse(await Deno.readTextFile(join(a.path, "config.json")));
  assertEquals([cfg.architectures[0], cfg.model_type, cfg.num_key_value_heads], [
    "Qwen2ForCausalLM",
    "qwen2",
    2,
  ]);
  const tok = JSON.parse(await Deno.readTextFile(join(a.path, "tokenizer.json")));
  assertEquals(tok.model.vocab["Hello"], 9707);
  await writeTinyModel(b.path, { ...opts, seed: 5 });
  assertNotEquals(bytes, await Deno.readFile(join(b.path, "model.safetensors")));
  const ids = Int32Array.from([3, 17, 42, 199, 5, 8]);
  const out = await referenceForward(a.path, { ids, lengths: Int32Array.from([6]), batch: 1, seqLen: 6 }, [
    0,
    3,
  ]);
  for (const [l, x] of out) {
    const rms = Math.sqrt(x.reduce((s, v) => s + v * v, 0) / x.length);
    assert(rms > 0.3 && rms < 5, `layer ${l} rms ${rms}`);
  }
});

Deno.test("make-tiny-model CLI: missing --out → one line, exit 2; BF16 output loads", async () => {
  const run = (args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "scripts/make_tiny_model.ts", ...args],
      cwd: REPO_ROOT,
    }).output();
  const r = await run(["--hidden", "32"]);
  assertEquals(r.code, 2);
  const err = new TextDecoder().decode(r.stderr).trim();
  assertEquals(err.split("\n").length, 1);
  assert(err.startsWith("make-tiny-model: --out is required"), err);
  const bad = await run(["--out", "/tmp/x", "--heads", "3", "--kv_heads", "2", "--hidden", "30"]);
  assertEquals(bad.code, 2);
  await using dir = await tempDir();
  const ok = await run([
    "--out",
    dir.path,
    "--hidden",
    "32",
    "--heads",
    "4",
    "--kv_heads",
    "1",
    "--vocab",
    "100",
    "--dtype",
    "BF16",
  ]);
  assertEquals(ok.code, 0, new TextDecoder().decode(ok.stderr));
  const w = await CheckpointWeights.open(dir.path);
  assertEquals(w.info("model.layers.1.mlp.down_proj.weight").dtype, "BF16");
  w.close();
});

Deno.test("safetensors: toFloat32 reads a view at a non-zero offset into a larger buffer (BF16, F16, F32)", () => {
  const backing = new Uint8Array(16);
  const view = new DataView(backing.buffer);
  // Two BF16 values (1.5, -2) at byte 6, two F16 values (0.5, 3) at byte 10; junk elsewhere.
  backing.fill(0x7f);
  view.setUint16(6, 0x3fc0, true);
  view.setUint16(8, 0xc000, true);
  view.setUint16(10, 0x3800, true);
  view.setUint16(12, 0x4200, true);
  assertEquals(Array.from(toFloat32(backing.subarray(6, 10), "BF16")), [1.5, -2]);
  assertEquals(Array.from(toFloat32(backing.subarray(10, 14), "F16")), [0.5, 3]);
  const f = new Uint8Array(12);
  new DataView(f.buffer).setFloat32(4, 0.25, true);
  new DataView(f.buffer).setFloat32(8, -7, true);
  assertEquals(Array.from(toFloat32(f.subarray(4, 12), "F32")), [0.25, -7]);
});
