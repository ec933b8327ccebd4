/**
 * Test support for the GCS tests: a small generated local dataset (several ~300 KB shards: multi-chunk at a
 * 256 KiB chunk size) and a runner for the stage scripts with an environment.
 */
import { ShardWriter } from "../lib/shard/writer.ts";
import type { DatasetMetadata } from "../lib/shard/metadata.ts";
import { spawnScript } from "./_extract_fixture.ts";

/** A local dataset of 12 (or `records`) records in `dir`; `config` becomes its run fingerprint, `seed` varies the values. */
export async function makeDataset(
  dir: string,
  opts: {
    format?: "pickle" | "safetensors";
    config?: Record<string, unknown>;
    seed?: number;
    records?: number;
  } = {},
): Promise<DatasetMetadata> {
  const format = opts.format ?? "pickle";
  const w = await ShardWriter.open({
    dir,
    format,
    codec: format === "pickle" ? "gzip" : "none",
    dtype: "float32",
    shardSizeBytes: 300_000,
    base: opts.config ? { config: opts.config } : {},
  });
  let x = opts.seed ?? 7;
  for (let i = 0; i < (opts.records ?? 12); i++) {
    const act = new Float32Array(16 * 1000).map(() => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5);
    await w.write([{
      task_id: `t${i}`,
      sample_idx: i,
      layer: 3,
      activation: act,
      shape: [16, 1000],
      prompt: "p",
    }]);
  }
  return await w.close();
}

/** Run `scripts/<script> ARGS` to the end with extra environment. */
export async function runScript(
  script: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await spawnScript(script, args, env).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** stderr lines that are not progress notices ("gcs: … retrying in …", "gcs: … waiting up to …"). */
export function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() && !/^gcs: /.test(l));
}
