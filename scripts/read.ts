/**
 * `deno task read DIR [--layer L] [--task_id T] [--sample_idx N] [--out FILE.npy]`: a summary table of a
 * dataset by default; with filters, one line per matching record; with `--out`, the first matching activation
 * as a .npy file (numpy.load reads it). DIR may be `gs://bucket/prefix`. With `--sample_idx`, uncompressed
 * safetensors shards are read by range (the header, then only the matching tensors; the shard is picked from the
 * metadata's per-shard sample ranges), so one record costs a few KiB of header plus its own bytes.
 */
import { runCli } from "../lib/cli/run.ts";
import { GCS_HELP, numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { ActshardError, usageError } from "../lib/errors.ts";
import { Dataset, type RecordFilter } from "../lib/shard/reader.ts";
import { encodeNpy } from "../lib/shard/npy.ts";
import { shardLocation } from "../lib/shard/metadata.ts";
import { kindFromFileName } from "../lib/shard/formats/mod.ts";

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
    const widths = [Math.max(WIDTHS[0], ...ds.shards.map((n) => n.length)), ...WIDTHS.slice(1)];
    let n = 0;
    for await (const r of ds.records(filter)) {
      if (n === 0) {
        console.log(
          table([["shard", "layer", "task_id", "sample_idx", "shape", "dtype", "mean", "std"]], widths),
        );
      }
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
    if (n === 0) throw noMatch(ds, filter);
    console.log(`${n} records`);
    return 0;
  }
  await summary(ds);
  return 0;
}

/** What the index says exists, as text: "layers 10-23; sample_idx 0..95". */
function indexFacts(ds: Dataset): { layers: number[]; range: [number, number] | null; text: string } {
  const shards = ds.metadata?.shards ?? [];
  const layers = [...new Set(shards.flatMap((e) => e.layers ?? []))].sort((a, b) => a - b);
  const mins = shards.map((e) => e.sample_idx_min).filter((x) => typeof x === "number");
  const maxs = shards.map((e) => e.sample_idx_max).filter((x) => typeof x === "number");
  const range: [number, number] | null = mins.length ? [Math.min(...mins), Math.max(...maxs)] : null;
  const parts = [];
  if (layers.length) parts.push(`layers ${rangeText(layers)}`);
  if (range) parts.push(`sample_idx ${range[0]}..${range[1]}`);
  return { layers, range, text: parts.join("; ") };
}

/** "10-23" for a contiguous run, else "1,3,5". */
function rangeText(xs: number[]): string {
  const contiguous = xs.every((x, i) => i === 0 || x === xs[i - 1] + 1);
  return contiguous && xs.length > 2 ? `${xs[0]}-${xs[xs.length - 1]}` : xs.join(",");
}

/** Fail before reading any shard when the index says the filter cannot match, naming what exists. */
function checkFilterAgainstIndex(ds: Dataset, filter: RecordFilter): void {
  const facts = indexFacts(ds);
  if (filter.layer !== undefined && facts.layers.length && !facts.layers.includes(filter.layer)) {
    throw usageError(
      `--layer ${filter.layer} is not in this dataset`,
      `it has ${facts.text}`,
      ds.store.url,
    );
  }
  const r = facts.range;
  if (filter.sample_idx !== undefined && r && (filter.sample_idx < r[0] || filter.sample_idx > r[1])) {
    throw usageError(
      `--sample_idx ${filter.sample_idx} is not in this dataset`,
      `it has ${facts.text}`,
      ds.store.url,
    );
  }
}

/** Nothing matched: say what was asked and what exists. */
function noMatch(ds: Dataset, filter: RecordFilter): ActshardError {
  const asked = Object.entries(filter).filter(([, v]) => v !== undefined).map(([k, v]) => `--${k} ${v}`);
  const facts = indexFacts(ds).text;
  return new ActshardError(`no record matches ${asked.join(" ") || "the filter"}`, {
    where: ds.store.url,
    kind: "input",
    hint: `${facts ? `it has ${facts}; ` : ""}the summary lists the shards: deno task read ${ds.store.url}`,
  });
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
    // seed entries name no format/codec: show what the reader takes from the file name
    const named = kindFromFileName(e.filename);
    bytes += b;
    const layers = e.layers?.length ? `${Math.min(...e.layers)}-${Math.max(...e.layers)}` : "-";
    const samples = typeof e.sample_idx_min === "number" ? `${e.sample_idx_min}..${e.sample_idx_max}` : "-";
    rows.push([
      shardLocation(e),
      e.format ?? named?.format ?? "-",
      e.codec ?? named?.codec ?? "-",
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
