/**
 * Fixture for the merge tests: worker directories written as `extract --num_workers N` lays them out (the real
 * ShardWriter, the real work split), from generated records whose values are a function of (sample, layer).
 */
import { join } from "node:path";
import { ShardWriter } from "../lib/shard/writer.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { splitAll, workerDirName } from "../lib/pipeline/work_split.ts";
import type { ActivationRecord } from "../lib/types.ts";

export const LAYERS = [1, 2];
export const HIDDEN = 8;
export const N_PROMPTS = 14;

/** Prompt i has 1 + (i*7 % 5) tokens; its record values are a function of (i, layer, position). */
export function recordsOf(i: number): ActivationRecord[] {
  const n = 1 + ((i * 7) % 5);
  return LAYERS.map((layer) => {
    const a = new Float32Array(n * HIDDEN);
    for (let k = 0; k < a.length; k++) a[k] = i * 1000 + layer * 100 + k / 7;
    return {
      task_id: `task${i % 4}`,
      sample_idx: i,
      layer,
      activation: a,
      shape: [n, HIDDEN],
      prompt: `p${i}`,
    };
  });
}

export const CONFIG = { model_sha256: "m", dataset_sha256: "d", layers_to_extract: LAYERS, format: "pickle" };

/** Writes worker dirs as `extract --num_workers n` would; `complete` false leaves a worker in progress. */
export async function writeWorkers(
  root: string,
  n: number,
  opts: { skip?: number[]; incomplete?: number[]; config?: (i: number) => Record<string, unknown> } = {},
): Promise<void> {
  const parts = splitAll(
    Array.from({ length: N_PROMPTS }, (_, i) => ({ sample_idx: i, n_tokens: recordsOf(i)[0].shape[0] })),
    n,
  );
  for (let w = 0; w < n; w++) {
    if (opts.skip?.includes(w)) continue;
    const config = {
      ...CONFIG,
      num_workers: n,
      worker_index: w,
      n_prompts: parts[w].length,
      ...opts.config?.(w),
    };
    const writer = await ShardWriter.open({
      dir: join(root, workerDirName(w, n)),
      format: "pickle",
      codec: "none",
      dtype: "float32",
      shardSizeBytes: 600, // a few prompts per shard: several shards per worker
      base: { shard_size_gb: 600 / 2 ** 30, config },
      gzipWorkers: 1,
    });
    for (const i of parts[w]) await writer.write(recordsOf(i));
    if (opts.incomplete?.includes(w)) await writer.abort();
    else await writer.close();
  }
}

export async function allRecords(location: string) {
  const ds = await Dataset.open(location);
  const out: string[] = [];
  for await (const r of ds.records()) {
    out.push(`${r.task_id}|${r.sample_idx}|${r.layer}|${r.shape}|${Array.from(r.activation).join(",")}`);
  }
  return out.sort();
}

export function expectedRecords(): string[] {
  const out: string[] = [];
  for (let i = 0; i < N_PROMPTS; i++) {
    for (const r of recordsOf(i)) {
      out.push(`${r.task_id}|${r.sample_idx}|${r.layer}|${r.shape}|${Array.from(r.activation).join(",")}`);
    }
  }
  return out.sort();
}
