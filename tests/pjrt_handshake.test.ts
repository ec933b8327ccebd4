/**
 * The ABI handshake (scripts/pjrt_handshake.ts) with REAL plugins, on a host without TPU or GPU: dlopen,
 * GetPjrtApi, C API version, Plugin_Initialize, attributes, then PJRT_Client_Create — which succeeds on the XLA
 * CPU plugin (counted in CI) and fails with our one line on libtpu ("no TPU found: run on a TPU VM …") and the
 * CUDA plugin ("no GPU found …"). Those two wheels are ~135 MB each, so their tests are opt-in:
 * `ACTSHARD_LIBTPU=…/libtpu/libtpu.so`, `ACTSHARD_CUDA_PLUGIN=…/jax_plugins/xla_cuda13/xla_cuda_plugin.so`
 * (docs/pjrt.md: how to fetch them, and what they printed).
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { spawnScript } from "./_extract_fixture.ts";
import { ignoreWithoutXlaCpu, xlaCpuPlugin } from "./support/xla_cpu_plugin.ts";
import type { HandshakeReport } from "../lib/backend/pjrt/handshake.ts";

async function handshake(path: string): Promise<{ report: HandshakeReport; stderr: string }> {
  const out = await spawnScript("pjrt_handshake.ts", ["--pjrt_plugin", path, "--json"]).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  return { report: JSON.parse(new TextDecoder().decode(out.stdout)), stderr };
}

function assertAbi(r: HandshakeReport, kind: string): void {
  assertEquals(r.kind, kind);
  assertMatch(r.apiVersion, /^0\.\d+$/);
  assert(Number(r.apiVersion.split(".")[1]) >= 81, r.apiVersion);
  assertEquals(r.tableSize >= 984, true, `table ${r.tableSize}`);
  for (const k of ["stablehlo_current_version", "stablehlo_minimum_version"]) {
    const v = r.attributes[k];
    assert(Array.isArray(v) && v.length === 3, `${k}: ${JSON.stringify(r.attributes)}`);
  }
}

Deno.test({
  name: "pjrt handshake: the XLA CPU plugin loads, reports its ABI and creates a 1-device client, silently",
  ignore: ignoreWithoutXlaCpu(),
  async fn() {
    const { report, stderr } = await handshake(xlaCpuPlugin());
    assertAbi(report, "cpu");
    assertEquals(report.client?.platform, "cpu");
    assertEquals(report.client?.devices, 1);
    assertEquals(report.clientError, undefined);
    assertEquals(stderr, "", "the plugin's INFO lines are kept off stderr");
  },
});

const LIBTPU = Deno.env.get("ACTSHARD_LIBTPU");
Deno.test({
  name:
    "pjrt handshake (opt-in: ACTSHARD_LIBTPU): libtpu without a TPU: ABI facts, then 'no TPU found' in one line",
  ignore: !LIBTPU,
  async fn() {
    const { report } = await handshake(LIBTPU!);
    assertAbi(report, "tpu");
    assertEquals(report.client, undefined);
    assertMatch(report.clientError!, /^no TPU found: run on a TPU VM \(libtpu: NOT_FOUND: /);
    assert(!report.clientError!.includes("\n"));
  },
});

const CUDA = Deno.env.get("ACTSHARD_CUDA_PLUGIN");
Deno.test({
  name:
    "pjrt handshake (opt-in: ACTSHARD_CUDA_PLUGIN): the CUDA plugin without a GPU: ABI facts, then 'no GPU found'",
  ignore: !CUDA,
  async fn() {
    const { report, stderr } = await handshake(CUDA!);
    assertAbi(report, "cuda");
    assertEquals(report.client, undefined);
    assertMatch(report.clientError!, /^no GPU found: run on a machine with an NVIDIA GPU \(CUDA plugin: /);
    assert(!/cuInit/.test(stderr), `plugin log lines reached stderr: ${stderr}`);
  },
});
