/**
 * `deno task demo`: the whole job on a fresh clone, in well under a minute, with nothing downloaded. It writes a
 * tiny random-weight Qwen2 checkpoint (real Qwen tokenizer), a few generated ARC-format tasks, starts the
 * built-in GCS emulator, runs extract with upload, verifies the local and the uploaded dataset, reads a few
 * records back, and prints where everything is. `--out DIR` (default ./demo_out) is replaced on each run.
 */
import { join, resolve } from "node:path";
import { runCli } from "../lib/cli/run.ts";
import { parseFlags } from "../lib/cli/flags.ts";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { ActshardError } from "../lib/errors.ts";
import { syntheticArcTasks } from "../lib/arc/synthetic.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { runExtract } from "../lib/pipeline/extract.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";

const BUCKET = "actshard-demo";
const PREFIX = "activations";

/** Run the demo; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("demo", args, {
    out: {
      type: "string",
      default: "./demo_out",
      metavar: "DIR",
      path: true,
      help: "where the demo writes everything",
    },
  }, {
    description:
      "Tiny checkpoint + generated ARC tasks → extract (with upload to a local GCS emulator) → verify → read.",
  });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  const root = resolve(f.values.out as string);
  const t0 = performance.now();
  await clearDemoDir(root);
  const model = join(root, "model"), dataset = join(root, "arc_tasks.json"), out = join(root, "activations");
  const gcsDir = join(root, "gcs");

  step("1/5", `tiny Qwen2 checkpoint (random weights, real Qwen tokenizer) → ${model}`);
  await writeTinyModel(model, { hidden: 64, layers: 4, heads: 4, kvHeads: 2, seed: 1 });
  step("2/5", `4 generated ARC-format tasks → ${dataset}`);
  await Deno.writeTextFile(dataset, JSON.stringify(syntheticArcTasks({ nTasks: 4, seed: 2026 }), null, 1));

  const emu = await startGcsEmulator({ port: 0, dir: gcsDir, buckets: [BUCKET] });
  try {
    const extractArgs = [
      "--model_path",
      model,
      "--dataset_path",
      dataset,
      "--output_dir",
      out,
      "--layers_to_extract",
      "1",
      "2",
      "3",
      "--predictions_per_task",
      "2",
      "--batch_size",
      "4",
      "--shard_size_gb",
      "0.002",
      "--upload_to_gcs",
      "--gcs_bucket",
      BUCKET,
      "--gcs_prefix",
      PREFIX,
    ];
    step("3/5", `extract, uploading to the GCS emulator at ${emu.url}:`);
    console.log(`    deno task extract ${extractArgs.map(shellQuote).join(" ")}`);
    const config = parseExtractFlags(extractArgs);
    if ("help" in config) throw new ActshardError("unexpected --help", { kind: "internal" });
    const summary = await runExtract(config, { gcsEndpoint: emu.url, progress: { tty: false } });

    step("4/5", "verify (local, deep) and verify (gs://, by CRC-32C)");
    const local = await verifyDataset(new LocalStore(out), { deep: true });
    const remoteStore = await GcsStore.open(BUCKET, PREFIX, { apiEndpoint: emu.url });
    const remote = await verifyDataset(remoteStore);
    for (const [name, r] of [[out, local], [`gs://${BUCKET}/${PREFIX}`, remote]] as const) {
      console.log(
        `    ${r.ok ? "✓" : "✗"} ${name}: ${r.shards.length} shards, ${r.records} records, ` +
          `${r.issues.filter((i) => i.level === "error").length} errors`,
      );
      for (const i of r.issues.filter((i) => i.level === "error")) {
        console.log(`      ${i.shard ?? ""} ${i.message}`);
      }
    }

    step("5/5", "read the first records back");
    let n = 0;
    for await (const r of (await Dataset.open(out)).records()) {
      const head = [...r.activation.subarray(0, 4)].map((v) => v.toFixed(4)).join(", ");
      console.log(
        `    task ${r.task_id} sample ${r.sample_idx} layer ${r.layer} shape [${r.shape}] [${head}, …]`,
      );
      if (++n === 4) break;
    }

    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    console.log(`
demo done in ${secs}s: ${summary.records} records in ${summary.shards} shards.
  checkpoint      ${model}
  ARC tasks       ${dataset}
  activations     ${out}   (metadata.json + shard_NNNN.pkl.gz)
  uploaded to     gs://${BUCKET}/${PREFIX}  (emulator state: ${gcsDir})
next:
  deno task read ${shellQuote(out)}
  deno task verify ${shellQuote(out)} --deep
  python3 -c "import gzip,pickle; d=pickle.load(gzip.open('${out}/shard_0001.pkl.gz')); print({k: len(v) for k, v in d.items()})"
  rerun the extract command above: it finds the output complete and does nothing`);
    return local.ok && remote.ok ? 0 : 1;
  } finally {
    await emu.close();
  }
}

/** What a demo run writes under `--out`: only a directory holding nothing else is replaced. */
const DEMO_ENTRIES = new Set(["model", "arc_tasks.json", "activations", "gcs"]);

/** Remove a previous demo's output; refuse a directory holding anything else (`--out .` must not wipe it). */
async function clearDemoDir(root: string): Promise<void> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(root)) names.push(e.name);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return;
    throw e;
  }
  const foreign = names.filter((n) => !DEMO_ENTRIES.has(n));
  if (foreign.length) {
    throw new ActshardError(
      `--out holds files the demo did not write (${foreign.slice(0, 3).join(", ")}${
        foreign.length > 3 ? ", …" : ""
      }); the demo replaces its --out`,
      { where: root, kind: "usage", hint: "give a new or empty directory (default ./demo_out)" },
    );
  }
  await Deno.remove(root, { recursive: true });
}

function step(n: string, text: string): void {
  console.log(`\n[${n}] ${text}`);
}

function shellQuote(s: string): string {
  return /^[\w./:=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

if (import.meta.main) await runCli("demo", main);
