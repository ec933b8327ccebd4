/**
 * `deno task read DIR [--layer L] [--task_id T] [--sample_idx N] [--out FILE.npy]`: a summary table of a
 * dataset by default; with filters, one line per matching record; with `--out`, the first matching activation
 * as a .npy file (numpy.load reads it). DIR may be `gs://bucket/prefix`. With `--sample_idx`, uncompressed
 * safetensors shards are read by range (the header, then only the matching tensors; the shard is picked from the
 * metadata's per-shard sample ranges), so one record costs a few KiB of header plus its own bytes.
 */
import { runCli } from "../lib/cli/run.ts";
import { numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { ActshardError, usageError } from "../lib/errors.ts";
import { Dataset, type RecordFilter } from "../lib/shard/reader.ts";
import { encodeNpy } from "../lib/shard/npy.ts";
import { shardLocation } from "../lib/shard/metadata.ts";

/** Run read; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("read", args, {
    layer: { type: "string", help: "only this layer", metavar: "L" },
    task_id: { type: "string", help: "only this task", metavar: "T" },
    sample_idx: { type: "string", help: "only this sample (global prompt index)", metavar: "N" },
    out: { type: "string", help: "write the first matching activation as .npy", metavar: "FILE.npy" },
  }, { positionals: "DIR", description: "Summarize a dataset, list records, or export one activation." });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  if (f.positionals.length !== 1) {
    throw usageError("give exactly one dataset directory", "deno task read DIR");
  }
  const filter: RecordFilter = {
    layer: numberFlag("layer", f.values.layer, { integer: true, min: 0 }),
    task_id: f.values.task_id as string | undefined,
    sample_idx: numberFlag("sample_idx", f.values.sample_idx, { integer: true, min: 0 }),
  };
  const ds = await Dataset.open(f.positionals[0]);
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
    throw new ActshardError("no record matches the filter", {
      where: ds.store.url,
      kind: "input",
      hint: "see the summary: deno task read DIR",
    });
  }
  if (filtered) {
    const widths = [Math.max(WIDTHS[0], ...ds.shards.map((n) => n.length)), ...WIDTHS.slice(1)];
    console.log(
      table([["shard", "layer", "task_id", "sample_idx", "shape", "dtype", "mean", "std"]], widths),
    );
    let n = 0;
    for await (const r of ds.records(filter)) {
      let s = 0, s2 = 0;
      for (const v of r.activation) {
        s += v;
        s2 += v * v;
      }
      const mean = s / r.activation.length;
      const std = Math.sqrt(Math.max(0, s2 / r.activation.length - mean * mean));
      console.log(
        table([[
          r.shard,
          String(r.layer),
          r.task_id || "-",
          String(r.sample_idx),
          `(${r.shape})`,
          r.dtype,
          mean.toFixed(4),
          std.toFixed(4),
        ]], widths),
      );
      n++;
    }
    console.log(`${n} records`);
    return n ? 0 : 1;
  }
  await summary(ds);
  return 0;
}

const WIDTHS = [26, 6, 12, 11, 14, 9, 10, 10];
/** Columns at least WIDTHS wide, wider where a cell needs it (e.g. "safetensors", merged worker-…/shard paths). */
function table(rows: string[][], widths: number[] = WIDTHS): string {
  const w = widths.map((n, i) => Math.max(n, ...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i] ?? 10)).join(" ").trimEnd()).join("\n");
}

async function summary(ds: Dataset): Promise<void> {
  const m = ds.metadata;
  // Shapes and dtype come from the first record (one shard opened, not the whole dataset).
  let first = null;
  for await (const r of ds.records()) {
    first = r;
    break;
  }
  console.log(
    `dataset ${ds.store.url}${
      m ? ` (${m.status ?? "seed"}, ${m.tool ?? "seed metadata"})` : " (no metadata.json)"
    }`,
  );
  if (first) {
    console.log(
      `first record: layer ${first.layer} shape (${first.shape}) dtype ${first.dtype}; hidden ${
        first.shape[1]
      }`,
    );
  }
  if (!m) {
    console.log(`${ds.shards.length} shard files: ${ds.shards.join(", ")}`);
    return;
  }
  const rows = [["shard", "format", "codec", "dtype", "layers", "records", "samples", "MiB"]];
  let bytes = 0;
  for (const e of m.shards) {
    const b = e.bytes ?? e.file_size_mb * 2 ** 20;
    bytes += b;
    const layers = e.layers?.length ? `${Math.min(...e.layers)}-${Math.max(...e.layers)}` : "-";
    const samples = typeof e.sample_idx_min === "number" ? `${e.sample_idx_min}..${e.sample_idx_max}` : "-";
    rows.push([
      shardLocation(e),
      e.format ?? "pickle",
      e.codec ?? "-",
      e.dtype ?? first?.dtype ?? "-",
      layers,
      String(e.total_samples_in_shard),
      samples,
      (b / 2 ** 20).toFixed(2),
    ]);
  }
  console.log(
    table([["shard", "format", "codec", "dtype", "layers", "records", "samples", "MiB"], ...rows.slice(1)]),
  );
  const allLayers = [...new Set(m.shards.flatMap((e) => e.layers ?? []))].sort((a, b) => a - b);
  console.log(
    `${m.total_shards} shards, ${m.total_samples} records, layers ${allLayers.join(",")}, ${
      (bytes / 2 ** 20).toFixed(2)
    } MiB`,
  );
}

if (import.meta.main) await runCli("read", main);
