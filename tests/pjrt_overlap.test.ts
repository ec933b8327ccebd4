/**
 * Issue #17 item 3 on the REAL XLA CPU plugin: the extract loop (`runBatches`) keeps two PJRT forwards in flight
 * (`Backend.concurrentForwards = 2`), so batch n's device→host copies overlap batch n+1's upload and execute —
 * with the same records as one forward at a time (bitwise: same shapes on the same device), never more than two
 * in flight (bounded memory), nothing left on the plugin after close, and a failing forward failing the loop
 * cleanly while the other one in flight finishes.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { ignoreWithoutXlaCpu, XLA_CPU_PLUGIN, xlaCpuPlugin } from "./support/xla_cpu_plugin.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { createPjrtBackend } from "../lib/backend/pjrt/index.ts";
import { type PromptTokens, runBatches } from "../lib/pipeline/overlap.ts";
import type { ActivationRecord, Backend } from "../lib/types.ts";
import { PjrtApi } from "../native/pjrt/mod.ts";

const ignore = ignoreWithoutXlaCpu();
if (!ignore && XLA_CPU_PLUGIN) { // without one (in CI) each test fails on its own, with the note
  Deno.env.set("TF_CPP_MIN_LOG_LEVEL", Deno.env.get("TF_CPP_MIN_LOG_LEVEL") ?? "3");
  PjrtApi.open(xlaCpuPlugin()).close(); // dlopen once, outside any test's resource sanitizer
}

const LAYERS = [0, 1];

function prompts(n: number): PromptTokens[] {
  return Array.from({ length: n }, (_, i) => ({
    task_id: `t${i}`,
    sample_idx: i,
    prompt: `p${i}`,
    input_ids: Int32Array.from({ length: 5 + (i * 7) % 23 }, (_, s) => (i * 31 + s * 7 + 1) % 300),
  }));
}

/** The backend, with a count of forwards in flight (what the loop asked of it at once). */
function counting(b: Backend, failAt = -1): Backend & { max: number; calls: number } {
  let now = 0;
  const w = {
    ...b,
    max: 0,
    calls: 0,
    async forward(batch: Parameters<Backend["forward"]>[0], layers: number[]) {
      const call = w.calls++;
      w.max = Math.max(w.max, ++now);
      try {
        if (call === failAt) throw new Error(`injected failure of forward ${call}`);
        return await b.forward(batch, layers);
      } finally {
        now--;
      }
    },
  };
  return w;
}

async function run(backend: Backend, items: PromptTokens[]): Promise<ActivationRecord[]> {
  const plan = Array.from(
    { length: Math.ceil(items.length / 3) },
    (_, k) => [3 * k, 3 * k + 1, 3 * k + 2].filter((p) => p < items.length),
  );
  const out: ActivationRecord[] = [];
  await runBatches({
    items,
    plan,
    start: 0,
    backend,
    layers: LAYERS,
    padId: 0,
    keepPadding: false,
    write: (group) => {
      out.push(...group);
      return Promise.resolve();
    },
  });
  return out;
}

Deno.test({
  name:
    "pjrt overlap (XLA CPU): two forwards in flight give the records of one at a time, bounded, leak-free",
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
    const items = prompts(14); // 5 batches of up to 3 prompts
    const pjrt = await createPjrtBackend(dir.path, { layers: LAYERS, pluginPath: xlaCpuPlugin() });
    assertEquals(pjrt.concurrentForwards, 2);
    const overlapped = counting(pjrt);
    const a = await run(overlapped, items);
    assertEquals(overlapped.max, 2, "the loop kept two PJRT forwards in flight, never more");
    const sequential = counting({ ...pjrt, concurrentForwards: 1, forward: pjrt.forward });
    const b = await run(sequential, items);
    assertEquals(sequential.max, 1);
    assertEquals(a.length, items.length * LAYERS.length);
    assertEquals(
      a.map((r) => `${r.sample_idx}/${r.layer}/${r.shape}`),
      b.map((r) => `${r.sample_idx}/${r.layer}/${r.shape}`),
    );
    a.forEach((r, i) => assertEquals(r.activation, b[i].activation, `record ${i}`));
    await pjrt.close();
    const api = PjrtApi.open(xlaCpuPlugin());
    assertEquals(api.live, { events: 0, buffers: 0, executables: 0, clients: 0 });
    api.close();
  },
});

Deno.test({
  name:
    "pjrt overlap (XLA CPU): a forward failing while the next is in flight fails the loop with that error",
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
    const pjrt = await createPjrtBackend(dir.path, { layers: LAYERS, pluginPath: xlaCpuPlugin() });
    const failing = counting(pjrt, 2);
    await assertRejects(() => run(failing, prompts(14)), Error, "injected failure of forward 2");
    assert(failing.calls <= 4, `forwards started after the failure: ${failing.calls}`);
    await pjrt.close();
    const api = PjrtApi.open(xlaCpuPlugin());
    assertEquals(api.live, { events: 0, buffers: 0, executables: 0, clients: 0 });
    api.close();
  },
});
