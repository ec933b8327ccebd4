/**
 * The pjrt backend around the binding, with the C TEST DOUBLE plugin: plugin discovery, resident weights on
 * 1 and 4 devices, leak-free close, and the one-line errors (plugin not found, wrong ABI version, compile error)
 * through scripts/pjrt_forward.ts in a subprocess. The numerics of the emitted programs are checked in
 * pjrt_emit.test.ts (the test double cannot run them).
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import { ensureTestPlugin, pluginCounts, preloadTestPlugin } from "./support/pjrt_test_plugin.ts";
import { ActshardError } from "../lib/errors.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { createPjrtBackend, findPjrtPlugin } from "../lib/backend/pjrt/index.ts";
import {
  checkTpuHost,
  GOOGLE_PCI_VENDOR,
  pluginKind,
  prepareCudaPlugin,
  tpuHardwarePresent,
} from "../lib/backend/pjrt/discover.ts";
import { chooseBackend } from "../lib/pipeline/backend_select.ts";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { parsePjrtOptions } from "../lib/backend/pjrt/index.ts";
import { PjrtApi, PjrtClient, PjrtError } from "../native/pjrt/mod.ts";
import { emitStableHlo } from "../lib/backend/pjrt/emit.ts";
import { PjrtRunner } from "../lib/backend/pjrt/runner.ts";
import { loadModelConfig } from "../lib/model/config.ts";
import { buildQwen2Graph } from "../lib/model/qwen2.ts";
import { padRows } from "../scripts/pjrt_forward.ts";

preloadTestPlugin();
PjrtApi.open(ensureTestPlugin()).close(); // dlopen once, outside any test (plugins stay loaded)

const TINY = { hidden: 32, layers: 2, heads: 4, kvHeads: 2, vocab: 300, tokenizer: false };
const WEIGHTS_PER_LAYER = 12;

function env(vars: Record<string, string>) {
  return { get: (k: string) => vars[k] };
}

Deno.test("pjrt discovery: explicit path, env vars, Python locations, and one line listing where it looked", async () => {
  await using dir = await tempDir();
  const plugin = ensureTestPlugin();
  assertEquals(findPjrtPlugin(plugin, env({})), plugin);
  try {
    findPjrtPlugin("/nope/libtpu.so", env({}));
    throw new Error("expected an error");
  } catch (e) {
    assert(e instanceof ActshardError, String(e));
    assertMatch(e.line(), /^PJRT plugin not found: \/nope\/libtpu\.so \(--pjrt_plugin\)/);
  }
  assertEquals(findPjrtPlugin(null, env({ PJRT_PLUGIN_LIBRARY_PATH: plugin, HOME: dir.path })), plugin);
  assertEquals(findPjrtPlugin(null, env({ TPU_LIBRARY_PATH: plugin, HOME: dir.path })), plugin);
  const site = join(dir.path, "venv", "lib", "python3.11", "site-packages");
  await Deno.mkdir(join(site, "jax_plugins", "xla_cuda13"), { recursive: true });
  const cuda = join(site, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so");
  await Deno.writeFile(cuda, new Uint8Array(1));
  assertEquals(findPjrtPlugin(null, env({ VIRTUAL_ENV: join(dir.path, "venv"), HOME: dir.path })), cuda);
  try {
    findPjrtPlugin(null, env({ HOME: join(dir.path, "empty") }));
    throw new Error("expected no plugin to be found");
  } catch (e) {
    assert(e instanceof ActshardError);
    const line = e.line();
    assert(!line.includes("\n"), line);
    assertMatch(
      line,
      /^no PJRT plugin found \(looked in: --pjrt_plugin, \$PJRT_PLUGIN_LIBRARY_PATH, \$TPU_LIBRARY_PATH/,
    );
    assertMatch(line, /jax-cuda13-pjrt/);
  }
});

/** A fake /sys/bus/pci/devices with one device per vendor id. */
async function fakePci(root: string, vendors: string[]): Promise<string> {
  const pci = join(root, "pci");
  for (const [i, v] of vendors.entries()) {
    await Deno.mkdir(join(pci, `0000:00:0${i}.0`), { recursive: true });
    await Deno.writeTextFile(join(pci, `0000:00:0${i}.0`, "vendor"), `${v}\n`);
  }
  await Deno.mkdir(pci, { recursive: true });
  return pci;
}

Deno.test("pjrt discovery: XLA CPU plugins in a venv, accelerators first, libtpu only with TPU hardware", async () => {
  await using dir = await tempDir();
  const venv = join(dir.path, "venv");
  const site = join(venv, "lib", "python3.11", "site-packages");
  const put = async (rel: string) => {
    await Deno.mkdir(join(site, rel, ".."), { recursive: true });
    await Deno.writeFile(join(site, rel), new Uint8Array(1));
    return join(site, rel);
  };
  const cpuOld = await put("xla_plugins/xla_cpu_pjrt/xla_cpu_pjrt.so");
  const e = env({ VIRTUAL_ENV: venv, HOME: join(dir.path, "home") });
  const noTpu = await fakePci(join(dir.path, "a"), ["0x8086", "0x10de"]);
  const withTpu = await fakePci(join(dir.path, "b"), ["0x8086", GOOGLE_PCI_VENDOR]);
  assertEquals(findPjrtPlugin(null, e, { pciDevices: noTpu }), cpuOld);
  const cpuNew = await put("lammps_jax_pjrt_cpu/pjrt_c_api_cpu_plugin.so");
  assertEquals(findPjrtPlugin(null, e, { pciDevices: noTpu }), cpuNew); // the newer C API first
  const tpu = await put("libtpu/libtpu.so");
  assertEquals(findPjrtPlugin(null, e, { pciDevices: noTpu }), cpuNew); // libtpu is skipped without a TPU
  assertEquals(findPjrtPlugin(null, e, { pciDevices: withTpu }), tpu);
  const cuda = await put("jax_plugins/xla_cuda13/xla_cuda_plugin.so");
  assertEquals(findPjrtPlugin(null, e, { pciDevices: noTpu }), cuda);
  // the PATH's interpreters count too: a venv's bin/ on PATH is searched like $VIRTUAL_ENV
  assertEquals(
    findPjrtPlugin(null, env({ PATH: `${join(venv, "bin")}:/nowhere`, HOME: dir.path }), {
      pciDevices: noTpu,
    }),
    cuda,
  );
  await Deno.remove(cuda);
  try {
    findPjrtPlugin(null, e, { kinds: ["tpu", "cuda"], pciDevices: noTpu }); // what --backend auto asks
    throw new Error("expected no accelerator plugin");
  } catch (err) {
    assert(err instanceof ActshardError, String(err));
    assertMatch(err.line(), /^no PJRT plugin found/);
  }
  assertEquals([pluginKind(tpu), pluginKind(cuda), pluginKind(cpuNew), pluginKind(cpuOld)], [
    "tpu",
    "cuda",
    "cpu",
    "cpu",
  ]);
  assertEquals([tpuHardwarePresent(noTpu), tpuHardwarePresent(withTpu), tpuHardwarePresent("/nope")], [
    false,
    true,
    false,
  ]);
});

Deno.test("pjrt discovery: a plugin variable naming a missing file is an error, not a fall-through", async () => {
  await using dir = await tempDir();
  const site = join(dir.path, "venv", "lib", "python3.11", "site-packages", "xla_plugins", "xla_cpu_pjrt");
  await Deno.mkdir(site, { recursive: true });
  await Deno.writeFile(join(site, "xla_cpu_pjrt.so"), new Uint8Array(1));
  for (const k of ["PJRT_PLUGIN_LIBRARY_PATH", "TPU_LIBRARY_PATH"]) {
    try {
      findPjrtPlugin(
        null,
        env({ [k]: "/gone/libtpu.so", VIRTUAL_ENV: join(dir.path, "venv"), HOME: dir.path }),
      );
      throw new Error(`expected ${k} to be refused`);
    } catch (e) {
      assert(e instanceof ActshardError, String(e));
      assertEquals(e.line().split(" (")[0], "PJRT plugin not found: /gone/libtpu.so");
      assertMatch(e.line(), new RegExp(`\\(\\$${k}\\)`));
    }
  }
});

Deno.test("pjrt: an explicit libtpu on a host without a TPU fails fast with our own line", async () => {
  await using dir = await tempDir();
  const noTpu = await fakePci(dir.path, ["0x8086"]);
  const lib = join(dir.path, "libtpu", "libtpu.so");
  try {
    checkTpuHost(lib, noTpu);
    throw new Error("expected the TPU check to refuse");
  } catch (e) {
    assert(e instanceof ActshardError, String(e));
    assertMatch(e.line(), /^no TPU found on this host \(no PCI device with Google's vendor id 0x1ae0\)/);
    assertMatch(e.line(), /run on a TPU VM/);
  }
  checkTpuHost(lib, await fakePci(join(dir.path, "t"), [GOOGLE_PCI_VENDOR])); // a TPU host: fine
  checkTpuHost(ensureTestPlugin(), noTpu); // not libtpu: no check
  // through the CLI: no plugin is loaded, one line, exit 1 (this host has no TPU)
  if (!tpuHardwarePresent()) {
    await Deno.mkdir(join(dir.path, "libtpu"), { recursive: true });
    await Deno.writeFile(lib, new Uint8Array(1));
    await writeTinyModel(join(dir.path, "m"), TINY);
    await Deno.writeTextFile(join(dir.path, "rows.json"), JSON.stringify({ rows: [[1, 2, 3]] }));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(REPO_ROOT, "scripts", "pjrt_forward.ts"), "--model_path", join(dir.path, "m")]
        .concat(["--rows", join(dir.path, "rows.json"), "--layers", "0", "--out", join(dir.path, "o")])
        .concat(["--pjrt_plugin", lib]),
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr).trim();
    assertEquals(out.code, 1, err);
    assertEquals(err.split("\n").length, 1, err);
    assertMatch(err, /no TPU found on this host/);
  }
});

Deno.test("pjrt: --pjrt_option values typed per option; --backend auto never picks an XLA CPU plugin", async () => {
  assertEquals(parsePjrtOptions("cpu_device_count=4,visible_devices=0,1,memory_fraction=1"), {
    cpu_device_count: { int64: 4n },
    visible_devices: { int64List: [0n, 1n] },
    memory_fraction: { float: 1 },
  });
  try {
    parsePjrtOptions("some_option=3");
    throw new Error("expected a usage error");
  } catch (e) {
    assert(e instanceof ActshardError && e.kind === "usage", String(e));
    assertMatch(e.line(), /^--pjrt_option: unknown option some_option: give its type/);
  }
  const cfg = parseExtractFlags([
    "--backend",
    "auto",
    "--pjrt_option",
    "cpu_device_count=2",
    "preallocate=false",
  ]);
  assert(!("help" in cfg));
  assertEquals(parsePjrtOptions(cfg.pjrt_option), { cpu_device_count: { int64: 2n }, preallocate: false });
  // whatever XLA CPU plugin is installed here, auto looks for accelerators only (measured: docs/pjrt.md)
  if (
    !tpuHardwarePresent() && !Deno.env.get("PJRT_PLUGIN_LIBRARY_PATH") && !Deno.env.get("TPU_LIBRARY_PATH")
  ) {
    let cuda = false;
    try {
      cuda = pluginKind(findPjrtPlugin(null, Deno.env, { kinds: ["cuda"] })) === "cuda";
    } catch { /* none */ }
    assertEquals(await chooseBackend(cfg), cuda ? "pjrt" : "onnx");
  }
  const explicit = parseExtractFlags(["--backend", "auto", "--pjrt_plugin", ensureTestPlugin()]);
  assert(!("help" in explicit));
  assertEquals(await chooseBackend(explicit), "pjrt"); // an explicit plugin is taken as given
});

Deno.test("pjrt discovery: the CUDA plugin gets XLA_FLAGS=--xla_gpu_cuda_data_dir from nvidia/cuda_nvcc", async () => {
  await using dir = await tempDir();
  const site = join(dir.path, "site-packages");
  await Deno.mkdir(join(site, "jax_plugins", "xla_cuda13"), { recursive: true });
  await Deno.mkdir(join(site, "nvidia", "cuda_nvcc", "bin"), { recursive: true });
  const old = Deno.env.get("XLA_FLAGS");
  Deno.env.delete("XLA_FLAGS");
  try {
    const notes = prepareCudaPlugin(join(site, "jax_plugins", "xla_cuda13", "xla_cuda_plugin.so"));
    assertEquals(Deno.env.get("XLA_FLAGS"), `--xla_gpu_cuda_data_dir=${join(site, "nvidia", "cuda_nvcc")}`);
    assert(notes.some((n) => n.startsWith("XLA_FLAGS=")), notes.join("; "));
    assertEquals(prepareCudaPlugin("/usr/lib/libtpu.so"), []);
  } finally {
    old === undefined ? Deno.env.delete("XLA_FLAGS") : Deno.env.set("XLA_FLAGS", old);
  }
});

Deno.test("pjrt backend (test double): weights resident on 4 devices or 1, nothing leaks on close", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const nWeights = 1 + WEIGHTS_PER_LAYER * 2;
  for (const [dataParallel, devices] of [[true, 4], [false, 1]] as const) {
    const backend = await createPjrtBackend(dir.path, {
      layers: [1],
      pluginPath: ensureTestPlugin(),
      dataParallel,
      clientOptions: { num_devices: 4 },
    });
    assertEquals(backend.name, "pjrt");
    assertEquals(pluginCounts().buffers, devices * nWeights);
    // The test double returns copies of its arguments, so the output check must catch the wrong shape.
    await assertRejects(() => backend.forward(padRows([[1, 2, 3], [4]]), [1]), ActshardError);
    assertEquals(pluginCounts().executables, 1); // compiled once for this (batch, bucket)
    await backend.close();
    assertEquals(pluginCounts().all, 0);
  }
});

Deno.test("pjrt backend (test double): a compile error from the plugin is one ActshardError line", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const backend = await createPjrtBackend(dir.path, {
    layers: [0],
    pluginPath: ensureTestPlugin(),
    clientOptions: { fail: "compile" },
  });
  try {
    await backend.forward(padRows([[5, 6]]), [0]);
    throw new Error("expected a compile error");
  } catch (e) {
    assert(e instanceof ActshardError, String(e));
    assertMatch(
      e.line(),
      /^the PJRT plugin rejected the StableHLO program \(1x16\): INVALID_ARGUMENT: test plugin/,
    );
  } finally {
    await backend.close();
  }
  assertEquals(pluginCounts().all, 0);
});

async function cli(args: string[], envVars: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "scripts", "pjrt_forward.ts"), ...args],
    env: envVars,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr).trim() };
}

Deno.test("scripts/pjrt_forward.ts: plugin not found, wrong ABI version, compile error -> one line, exit 1", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const rows = join(dir.path, "rows.json");
  await Deno.writeTextFile(rows, JSON.stringify({ rows: [[1, 2, 3]] }));
  const base = ["--model_path", dir.path, "--rows", rows, "--layers", "0", "--out", join(dir.path, "out")];
  const cases: [string[], Record<string, string>, RegExp][] = [
    [
      ["--pjrt_plugin", "/nonexistent/libtpu.so"],
      {},
      /^pjrt-forward: PJRT plugin not found: \/nonexistent\/libtpu\.so/,
    ],
    [
      ["--pjrt_plugin", ensureTestPlugin()],
      { PJRT_TEST_PLUGIN_MAJOR: "1" },
      /^pjrt-forward: PJRT plugin speaks C API 1\.90; this binding needs major version 0 \(/,
    ],
    [
      ["--pjrt_plugin", ensureTestPlugin()],
      { PJRT_TEST_PLUGIN_FAIL: "compile" },
      /^pjrt-forward: the PJRT plugin rejected the StableHLO program \(1x16\): INVALID_ARGUMENT: test plugin: injected compile error/,
    ],
  ];
  for (const [extra, envVars, re] of cases) {
    const r = await cli([...base, ...extra], envVars);
    assertEquals(r.code, 1, r.stderr);
    assertEquals(r.stderr.split("\n").length, 1, r.stderr);
    assertMatch(r.stderr, re);
  }
  const usage = await cli(["--rows", rows]);
  assertEquals(usage.code, 2, usage.stderr);
});

Deno.test("pjrt backend (test double): replicas run on the devices their inputs were put on, whatever the plugin's default assignment", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const backend = await createPjrtBackend(dir.path, {
    layers: [1],
    pluginPath: ensureTestPlugin(),
    clientOptions: { num_devices: 4, default_assignment: "reversed" },
  });
  try {
    // Execution itself must succeed; the test double's copy semantics then fail the output shape check.
    await assertRejects(
      () => backend.forward(padRows([[1, 2, 3], [4], [5, 6], [7]]), [1]),
      (e: unknown) => {
        assert(e instanceof ActshardError, String(e));
        assertMatch(e.line(), /^PJRT output layer_1 has shape/);
        return true;
      },
    );
  } finally {
    await backend.close();
  }
  assertEquals(pluginCounts().all, 0);
});

/** Reference f32 → bf16 (independent of bit tricks): nearest of the two neighbouring bf16 values, ties to even. */
function referenceBf16(bits: number): number {
  const f = new Float32Array(new Uint32Array([bits]).buffer)[0];
  if (Number.isNaN(f)) return -1; // checked separately: NaN stays NaN with its sign
  const lo = bits >>> 16;
  if ((bits & 0xffff) === 0) return lo;
  const mag = (w: number) => {
    if ((w & 0x7fff) === 0x7f80) return 2 ** 128; // the step past the largest finite bf16 (rounds to Inf)
    return Math.abs(new Float32Array(new Uint32Array([(w << 16) >>> 0]).buffer)[0]);
  };
  const a = Math.abs(f), dLo = a - mag(lo), dHi = mag(lo + 1) - a; // exact in double
  if (dLo < dHi) return lo;
  if (dHi < dLo) return lo + 1;
  return lo & 1 ? lo + 1 : lo;
}

Deno.test("pjrt runner: --compute_dtype bfloat16 uploads whole-tensor bf16 words bitwise equal to a reference (edge values, NaN kept)", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const graph = buildQwen2Graph(await loadModelConfig(dir.path), [0]);
  const edges = [
    0x00000000,
    0x80000000,
    0x3f800000,
    0xbf800000,
    0x3f808000,
    0x3f818000,
    0x3f808001,
    0x3f807fff,
    0x7f7fffff,
    0xff7fffff,
    0x7f7f7fff,
    0x7f7f8000,
    0x7f7f8001,
    0x7f800000,
    0xff800000,
    0x7fc00000,
    0x7f800001,
    0xffc00001,
    0xff800001,
    0x7fffffff,
    0x00000001,
    0x00008000,
    0x00018000,
    0x807fffff,
    0x00800000,
    0x80808000,
    0x4049fdb0,
    0xc2f6e979,
  ];
  let seed = 0x9e3779b9;
  const pattern = (i: number): number => {
    if (i < edges.length) return edges[i];
    seed ^= seed << 13, seed ^= seed >>> 17, seed ^= seed << 5; // xorshift32
    return seed >>> 0;
  };
  const api = PjrtApi.open(ensureTestPlugin());
  const client = PjrtClient.create(api, { num_devices: 2 });
  const uploads: { type: string; data: Uint8Array; device: number }[] = [];
  const upload = client.bufferFromHost.bind(client);
  client.bufferFromHost = (data, dims, type, device) => {
    uploads.push({
      type,
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice(),
      device: device.id,
    });
    return upload(data, dims, type, device);
  };
  const sources = new Map<string, Uint32Array>();
  const runner = await PjrtRunner.create(client, client.devices, graph, (name, shape) => {
    const bits = Uint32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => pattern(i));
    sources.set(name, bits);
    return Promise.resolve(new Float32Array(bits.buffer));
  }, "bfloat16");
  try {
    const order = [...sources.values()];
    assertEquals(uploads.length, 2 * order.length);
    let bf16 = 0;
    for (let k = 0; k < uploads.length; k++) {
      const src = order[k >> 1], up = uploads[k];
      assertEquals(up.device, k & 1);
      if (up.type === "f32") {
        assertEquals(up.data, new Uint8Array(src.buffer));
        continue;
      }
      assertEquals(up.type, "bf16");
      bf16++;
      const words = new Uint16Array(up.data.buffer);
      assertEquals(words.length, src.length);
      for (let i = 0; i < src.length; i++) {
        const want = referenceBf16(src[i]), got = words[i];
        if (want >= 0) {
          if (got !== want) {
            throw new Error(
              `f32 0x${src[i].toString(16)} -> 0x${got.toString(16)}, want 0x${want.toString(16)}`,
            );
          }
        } else {
          assert(
            (got & 0x7f80) === 0x7f80 && (got & 0x7f) !== 0,
            `NaN 0x${src[i].toString(16)} -> 0x${got.toString(16)}`,
          );
          assertEquals(got >>> 15, src[i] >>> 31, `sign of NaN 0x${src[i].toString(16)}`);
        }
      }
    }
    assert(bf16 >= 2 * 7, `expected the embedding and projections as bf16, got ${bf16} uploads`);
  } finally {
    await runner.close();
    client.close();
    api.close();
  }
  assertEquals(pluginCounts().all, 0);
});

Deno.test("pjrt runner: one device's upload failing (weight, RoPE, ids or lengths) leaves nothing behind", async () => {
  await using dir = await tempDir();
  await writeTinyModel(dir.path, TINY);
  const graph = buildQwen2Graph(await loadModelConfig(dir.path), [0]);
  const nWeights = emitStableHlo(graph, { batch: 1, seq: 1 }, "float32").weights.length;
  const api = PjrtApi.open(ensureTestPlugin());
  try {
    // Uploads to device 1: nWeights weights, then (first run) RoPE cos + sin, then ids, then lengths. `resident`:
    // what must remain on the devices after the failure.
    const cases = [
      { failAfter: 3, what: "weight", resident: 0 },
      { failAfter: nWeights, what: "RoPE", resident: 2 * nWeights },
      { failAfter: nWeights + 2, what: "ids", resident: 2 * (nWeights + 2) },
      { failAfter: nWeights + 3, what: "lengths", resident: 2 * (nWeights + 2) },
    ];
    for (const { failAfter, what, resident } of cases) {
      const client = PjrtClient.create(api, {
        num_devices: 2,
        delay_us: 20000, // device 0's uploads are still in flight when device 1's fails
        fail: "from_host",
        fail_device: 1,
        fail_after: failAfter,
      });
      let runner: PjrtRunner | undefined;
      try {
        const created = PjrtRunner.create(
          client,
          client.devices,
          graph,
          (_, shape) => Promise.resolve(new Float32Array(shape.reduce((a, b) => a * b, 1))),
          "float32",
        );
        const failure = "injected host-to-device failure (device 1)";
        if (what === "weight") {
          await assertRejects(() => created, PjrtError, failure);
        } else {
          const r = runner = await created;
          const input = { ids: new Int32Array(16), lengths: Int32Array.from([3]) };
          await assertRejects(() => r.run({ batch: 1, seq: 16 }, [input, input]), PjrtError, failure);
        }
        assertEquals(client.liveCounts().buffers, resident, `after a failed ${what} upload`);
        assertEquals(pluginCounts().buffers, resident, `plugin side, after a failed ${what} upload`);
      } finally {
        await runner?.close();
        client.close();
      }
      assertEquals(pluginCounts().all, 0);
    }
  } finally {
    api.close();
  }
});
