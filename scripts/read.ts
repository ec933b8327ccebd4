/**
 * `deno task read DIR [--layer L] [--task_id T] [--sample_idx N] [--out FILE.npy]`: a summary table of a
 * dataset by default; with filters, one line per matching record; with `--out`, the first matching activation
 * as a .npy file (numpy.load reads it). DIR may be `gs://bucket/prefix`. With `--sample_idx`, uncompressed
 * safetensors shards are read by range (the header, then only the matching tensors; the shard is picked from the
 * metadata's per-shard sample ranges), so one record costs a few KiB of header plus its own bytes.
 */
import { runCli } from "../lib/cli/run.ts";
import { GCS_HELP, numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { applyGcsNetworkFlags, GCS_NETWORK_FLAGS } from "../lib/cli/gcs_flags.ts";
import { usageError } from "../lib/errors.ts";
import { Dataset, type RecordFilter } from "../lib/shard/reader.ts";
import { encodeNpy } from "../lib/shard/npy.ts";
import {
  checkFilterAgainstIndex,
  datasetSummary,
  noMatch,
  recordLines,
} from "../lib/shard/dataset_report.ts";

/** Run read; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("read", args, {
    layer: { type: "string", help: "only this layer", metavar: "L" },
    task_id: { type: "string", help: "only this task", metavar: "T" },
    sample_idx: { type: "string", help: "only this sample (global prompt index)", metavar: "N" },
    out: {
      type: "string",
      help: "write the first matching activation as .npy",
      metavar: "FILE.npy",
      path: true,
    },
    ...GCS_NETWORK_FLAGS,
  }, {
    positionals: "DIR|gs://BUCKET/PREFIX",
    positionalPaths: true,
    description: "Summarize a dataset, list records, or export one activation.",
    epilog: GCS_HELP,
  });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  applyGcsNetworkFlags(f.values);
  if (f.positionals.length !== 1) {
    throw usageError("give exactly one dataset: a directory or gs://BUCKET/PREFIX", "deno task read DIR");
  }
  const filter: RecordFilter = {
    layer: numberFlag("layer", f.values.layer, { integer: true, min: 0 }),
    task_id: f.values.task_id as string | undefined,
    sample_idx: numberFlag("sample_idx", f.values.sample_idx, { integer: true, min: 0 }),
  };
  const ds = await Dataset.open(f.positionals[0]);
  checkFilterAgainstIndex(ds, filter);
  const filtered = filter.layer !== undefined || filter.task_id !== undefined ||
    filter.sample_idx !== undefined;
  if (f.values.out) {
    for await (const r of ds.records(filter)) {
      await Deno.writeFile(f.values.out as string, encodeNpy(r.activation, r.shape));
      console.log(
        `wrote ${f.values.out}: layer ${r.layer} task ${
          r.task_id || "-"
        } sample ${r.sample_idx} shape (${r.shape}) float32 (stored ${r.dtype}) from ${r.shard}`,
      );
      return 0;
    }
    throw noMatch(ds, filter);
  }
  if (filtered) {
    let n = 0;
    for await (const line of recordLines(ds, filter)) {
      console.log(line);
      n++;
    }
    if (n === 0) throw noMatch(ds, filter);
    console.log(`${n - 1} records`);
    return 0;
  }
  for (const line of await datasetSummary(ds)) console.log(line);
  return 0;
}

if (import.meta.main) await runCli("read", main);
