/**
 * `deno task extract --backend pjrt` end to end on the REAL XLA CPU plugin (found by discovery: no plugin
 * flag), on a tiny checkpoint with the real tokenizer: records within 1e-4 of the float64 reference
 * interpreter on the same token ids, shards that `verify --deep` accepts, data parallel over 2 CPU devices equal
 * to one device, and resume after SIGKILL equal to the uninterrupted run (same records, byte-identical
 * shards). Counted in CI (a missing plugin fails there), skipped with a note elsewhere.
 */
import { join } from "node:path";
import { assert, assertClose, assertEquals, maxRelError } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import {
  type ExtractFixture,
  fixturePathArgs,
  makeExtractFixture,
  recordKeys,
  runExtractCli,
  shardFiles,
  smallShardArgs,
  spawnExtract,
  spawnScript,
} from "./_extract_fixture.ts";
import { ignoreWithoutXlaCpu } from "./support/xla_cpu_plugin.ts";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { prepareRun } from "../lib/pipeline/prepare.ts";
import { referenceForward } from "../lib/model/reference.ts";
import { Dataset, type ReadRecord } from "../lib/shard/reader.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { KILL_AT_ENV } from "../lib/pipeline/kill_point.ts";

const ignore = ignoreWithoutXlaCpu();

/** The plugin is found by discovery; no accelerator variable may redirect it. */
const ENV = { PJRT_PLUGIN_LIBRARY_PATH: "", TPU_LIBRARY_PATH: "" };

function runArgs(fx: ExtractFixture, out: string): string[] {
  return [
    ...fixturePathArgs(fx, out),
    ...["--backend", "pjrt", "--layers_to_extract", "0", "2", "--predictions_per_task", "2"],
    ...["--batch_size", "3", "--max_seq_length", "256", "--codec", "zstd"],
  ];
}

async function readAll(dir: string): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  for await (const r of (await Dataset.open(dir)).records()) out.push(r);
  return out;
}

async function verifyDeep(dir: string): Promise<void> {
  const out = await spawnScript("verify.ts", [dir, "--deep"]).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, text);
}

Deno.test({
  name:
    "extract --backend pjrt (XLA CPU, no plugin flag): records within 1e-4 of the float64 reference, shards verify",
  ignore,
  async fn() {
    await using tmp = await tempDir();
    const fx = await makeExtractFixture(tmp.path, { tasks: 3 });
    const out = join(tmp.path, "out");
    const args = runArgs(fx, out);
    const r = await runExtractCli([...args, "--verbose"], ENV);
    assertEquals(r.code, 0, r.stderr);
    assert(/pjrt: .*C API 0\.\d+/.test(r.stderr + r.stdout), "the verbose log names the plugin's C API");
    await verifyDeep(out);
    const cfg = parseExtractFlags(args);
    assert(!("help" in cfg));
    const run = await prepareRun(cfg);
    const records = await readAll(out);
    assertEquals(records.length, run.items.length * 2);
    let worst = 0;
    for (const item of run.items) {
      const ids = item.input_ids;
      const ref = await referenceForward(fx.model, {
        ids,
        lengths: Int32Array.of(ids.length),
        batch: 1,
        seqLen: ids.length,
      }, [0, 2]);
      for (const layer of [0, 2]) {
        const rec = records.find((x) => x.sample_idx === item.sample_idx && x.layer === layer);
        assert(rec, `record ${item.sample_idx}/${layer}`);
        assertEquals(rec.shape, [ids.length, 64]);
        assertClose(rec.activation, ref.get(layer)!, 1e-4, `sample ${item.sample_idx} layer ${layer}`);
        worst = Math.max(worst, maxRelError(rec.activation, ref.get(layer)!));
      }
    }
    console.log(`pjrt extract vs float64 reference: max rel error ${worst.toExponential(2)}`);

    // data parallel over 2 CPU devices: the records of one device (within float32 rounding)
    const dp = join(tmp.path, "dp");
    const r2 = await runExtractCli([...runArgs(fx, dp), "--pjrt_option", "cpu_device_count=2"], ENV);
    assertEquals(r2.code, 0, r2.stderr);
    // XLA logs "cpu_device_count set via create_options" at INFO: kept off the terminal without --verbose
    assert(!/cpu_device_count set|^I0000 /m.test(r2.stderr), r2.stderr);
    await verifyDeep(dp);
    const two = await readAll(dp);
    assertEquals(
      two.map((x) => `${x.sample_idx}/${x.layer}/${x.shape}`),
      records.map((x) => `${x.sample_idx}/${x.layer}/${x.shape}`),
    );
    let dpWorst = 0;
    two.forEach((x, i) => dpWorst = Math.max(dpWorst, maxRelError(x.activation, records[i].activation)));
    assert(dpWorst <= 1e-6, `data parallel vs one device: max rel error ${dpWorst}`);
    console.log(`pjrt extract, 2 devices vs 1: max rel error ${dpWorst.toExponential(2)}`);
  },
});

Deno.test({
  name: "extract --backend pjrt (XLA CPU): SIGKILL after committed shards + rerun = the uninterrupted run",
  ignore,
  async fn() {
    await using tmp = await tempDir();
    const fx = await makeExtractFixture(tmp.path, { tasks: 2 });
    const args = (out: string) => [...smallShardArgs(fx, out, 3), "--backend", "pjrt"];
    const ref = join(tmp.path, "ref");
    const first = await runExtractCli(args(ref), ENV);
    assertEquals(first.code, 0, first.stderr);
    const total = (await readMetadata(new LocalStore(ref))).shards.length;
    assert(total >= 3, `want several shards, got ${total}`);
    const out = join(tmp.path, "killed");
    const child = spawnExtract(args(out), { ...ENV, [KILL_AT_ENV]: "committed:2" });
    const st = await child.status;
    await child.stdout.cancel();
    await child.stderr.cancel();
    assertEquals(st.signal, "SIGKILL");
    const m = await readMetadata(new LocalStore(out));
    assertEquals([m.shards.length, m.status], [2, "in_progress"]);
    const last = await runExtractCli(args(out), ENV);
    assertEquals(last.code, 0, last.stderr);
    assertEquals(await recordKeys(out), await recordKeys(ref), "same records, same order");
    assertEquals(await shardFiles(out), await shardFiles(ref), "shard files byte-identical");
    await verifyDeep(out);
  },
});
