/**
 * What `deno task read` prints about a dataset, as text: the summary table (from metadata.json and one record),
 * one line per matching record (with its mean and std), and the errors that name what the index holds when a
 * filter cannot match. The script only parses flags and prints these lines.
 *
 * @example
 * ```ts
 * import { datasetSummary } from "./dataset_report.ts";
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "none", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 3, prompt: "p", activation: new Float32Array(8), shape: [2, 4] }]);
 * await w.close();
 * for (const line of await datasetSummary(await Dataset.open(dir))) console.log(line);
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { ActshardError, usageError } from "../errors.ts";
import { kindFromFileName } from "./formats/mod.ts";
import { shardLocation } from "./metadata.ts";
import type { Dataset, ReadRecord, RecordFilter } from "./reader.ts";

/**
 * What the index says exists: its layers, its sample_idx range, and both as text ("layers 10-23; sample_idx
 * 0..95").
 *
 * @example
 * ```ts
 * import { indexFacts } from "./dataset_report.ts";
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "none", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * for (const i of [0, 1]) {
 *   await w.write([{ task_id: "t", sample_idx: i, layer: 3, prompt: "p", activation: new Float32Array(8), shape: [2, 4] }]);
 * }
 * await w.close();
 * console.log(indexFacts(await Dataset.open(dir)).text); // "layers 3; sample_idx 0..1"
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function indexFacts(ds: Dataset): { layers: number[]; range: [number, number] | null; text: string } {
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

/**
 * Throw a usage error, before any shard is read, when the index says the filter cannot match (naming what
 * exists).
 *
 * @example
 * ```ts
 * import assert from "node:assert";
 * import { checkFilterAgainstIndex } from "./dataset_report.ts";
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "none", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * for (const i of [0, 1]) {
 *   await w.write([{ task_id: "t", sample_idx: i, layer: 3, prompt: "p", activation: new Float32Array(8), shape: [2, 4] }]);
 * }
 * await w.close();
 * const ds = await Dataset.open(dir);
 * checkFilterAgainstIndex(ds, { layer: 3 }); // fine
 * assert.throws(() => checkFilterAgainstIndex(ds, { layer: 7 }), /--layer 7 is not in this dataset/);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function checkFilterAgainstIndex(ds: Dataset, filter: RecordFilter): void {
  const facts = indexFacts(ds);
  if (filter.layer !== undefined && facts.layers.length && !facts.layers.includes(filter.layer)) {
    throw usageError(`--layer ${filter.layer} is not in this dataset`, `it has ${facts.text}`, ds.store.url);
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

/**
 * The error for a filter nothing matched: what was asked, what exists, where the summary is.
 *
 * @example
 * ```ts
 * import { noMatch } from "./dataset_report.ts";
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "none", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * for (const i of [0, 1]) {
 *   await w.write([{ task_id: "t", sample_idx: i, layer: 3, prompt: "p", activation: new Float32Array(8), shape: [2, 4] }]);
 * }
 * await w.close();
 * console.log(noMatch(await Dataset.open(dir), { task_id: "nope" }).message); // no record matches --task_id nope
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export function noMatch(ds: Dataset, filter: RecordFilter): ActshardError {
  const asked = Object.entries(filter).filter(([, v]) => v !== undefined).map(([k, v]) => `--${k} ${v}`);
  const facts = indexFacts(ds).text;
  return new ActshardError(`no record matches ${asked.join(" ") || "the filter"}`, {
    where: ds.store.url,
    kind: "input",
    hint: `${facts ? `it has ${facts}; ` : ""}the summary lists the shards: deno task read ${ds.store.url}`,
  });
}

const WIDTHS = [26, 6, 12, 11, 14, 9, 10, 10];

/**
 * Rows as columns at least `widths` wide, wider where a cell needs it (e.g. "safetensors", merged worker-…/shard
 * paths).
 *
 * @example
 * ```ts
 * import { table } from "./dataset_report.ts";
 * console.log(table([["a", "bb"], ["ccc", "d"]], [2, 2])); // "a   bb\nccc d"
 * ```
 */
export function table(rows: string[][], widths: number[] = WIDTHS): string {
  const w = widths.map((n, i) => Math.max(n, ...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i] ?? 10)).join(" ").trimEnd()).join("\n");
}

/**
 * One line per record matching `filter` (shard, layer, task, sample, shape, dtype, mean, std), after a header
 * line; nothing at all when none matches.
 *
 * @example
 * ```ts
 * import { recordLines } from "./dataset_report.ts";
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "none", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * for (const i of [0, 1]) {
 *   await w.write([{ task_id: "t", sample_idx: i, layer: 3, prompt: "p", activation: new Float32Array(8), shape: [2, 4] }]);
 * }
 * await w.close();
 * for await (const line of recordLines(await Dataset.open(dir), { sample_idx: 1 })) console.log(line);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function* recordLines(ds: Dataset, filter: RecordFilter): AsyncGenerator<string> {
  const widths = [Math.max(WIDTHS[0], ...ds.shards.map((n) => n.length)), ...WIDTHS.slice(1)];
  let n = 0;
  for await (const r of ds.records(filter)) {
    if (n++ === 0) {
      yield table([["shard", "layer", "task_id", "sample_idx", "shape", "dtype", "mean", "std"]], widths);
    }
    const { mean, std } = meanStd(r);
    yield table([[
      r.shard,
      String(r.layer),
      r.task_id || "-",
      String(r.sample_idx),
      `(${r.shape})`,
      r.dtype,
      mean.toFixed(4),
      std.toFixed(4),
    ]], widths);
  }
}

function meanStd(r: ReadRecord): { mean: number; std: number } {
  let s = 0, s2 = 0;
  for (const v of r.activation) {
    s += v;
    s2 += v * v;
  }
  const mean = s / r.activation.length;
  return { mean, std: Math.sqrt(Math.max(0, s2 / r.activation.length - mean * mean)) };
}

/**
 * The summary: the dataset's status, its first record's shape and dtype (one shard opened, not the whole
 * dataset), a row per shard from metadata.json, and the totals.
 *
 * @example
 * ```ts
 * import { datasetSummary } from "./dataset_report.ts";
 * import { Dataset } from "./reader.ts";
 * import { ShardWriter } from "./writer.ts";
 * const dir = await Deno.makeTempDir();
 * const w = await ShardWriter.open({ dir, format: "pickle", codec: "none", dtype: "float32", shardSizeBytes: 1 << 20, base: {} });
 * for (const i of [0, 1]) {
 *   await w.write([{ task_id: "t", sample_idx: i, layer: 3, prompt: "p", activation: new Float32Array(8), shape: [2, 4] }]);
 * }
 * await w.close();
 * const lines = await datasetSummary(await Dataset.open(dir));
 * console.log(lines.at(-1)); // "1 shards, 2 records, layers 3, 0.00 MiB"
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function datasetSummary(ds: Dataset): Promise<string[]> {
  const m = ds.metadata;
  let first = null;
  for await (const r of ds.records()) {
    first = r;
    break;
  }
  const out = [
    `dataset ${ds.store.url}${
      m ? ` (${m.status ?? "seed"}, ${m.tool ?? "seed metadata"})` : " (no metadata.json)"
    }`,
  ];
  if (first) {
    out.push(
      `first record: layer ${first.layer} shape (${first.shape}) dtype ${first.dtype}; hidden ${
        first.shape[1]
      }`,
    );
  }
  if (!m) return [...out, `${ds.shards.length} shard files: ${ds.shards.join(", ")}`];
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
  out.push(table(rows));
  const allLayers = [...new Set(m.shards.flatMap((e) => e.layers ?? []))].sort((a, b) => a - b);
  out.push(
    `${m.total_shards} shards, ${m.total_samples} records, layers ${allLayers.join(",")}, ${
      (bytes / 2 ** 20).toFixed(2)
    } MiB`,
  );
  return out;
}
