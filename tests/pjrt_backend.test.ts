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
import { prepareCudaPlugin } from "../lib/backend/pjrt/discover.ts";
import { PjrtApi } from "../native/pjrt/mod.ts";
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
