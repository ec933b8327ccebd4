/**
 * Fixtures for the shard tests: synthetic activation-like records (gaussian, per-channel scales, a few outlier
 * channels; deterministic), a dataset writer, and Python runners (`python3` with numpy 2.x, `/usr/bin/python3`
 * with numpy 1.24) used to check that other tools read what we write.
 */
import type { ActivationRecord } from "../lib/types.ts";
import { ShardWriter, type ShardWriterOptions } from "../lib/shard/writer.ts";
import type { DatasetMetadata } from "../lib/shard/metadata.ts";
import { mulberry32 } from "../lib/util/seeded.ts";

/** Activation-like values: gaussian × per-channel scale, with outlier channels. */
export function activation(tokens: number, hidden: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const scale = new Float32Array(hidden);
  const sr = mulberry32(12345);
  for (let c = 0; c < hidden; c++) scale[c] = 0.2 + sr() * 2 + (c % 97 === 5 ? 40 : 0);
  const a = new Float32Array(tokens * hidden);
  for (let i = 0; i < a.length; i += 2) {
    const u = Math.max(r(), 1e-12), v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    a[i] = m * Math.cos(2 * Math.PI * v) * scale[i % hidden];
    if (i + 1 < a.length) a[i + 1] = m * Math.sin(2 * Math.PI * v) * scale[(i + 1) % hidden];
  }
  return a;
}

/** One prompt's records over `layers`. */
export function promptRecords(
  sampleIdx: number,
  layers: number[],
  tokens = 7,
  hidden = 32,
): ActivationRecord[] {
  return layers.map((layer) => ({
    task_id: `task${Math.floor(sampleIdx / 2)}`,
    sample_idx: sampleIdx,
    layer,
    activation: activation(tokens + (sampleIdx % 3), hidden, sampleIdx * 1000 + layer),
    shape: [tokens + (sampleIdx % 3), hidden] as [number, number],
    prompt: `prompt ${sampleIdx} ✓ ${"x".repeat(sampleIdx % 5)}`,
  }));
}

/** Write `n` prompts over `layers` into `dir`. */
export async function writeDataset(
  dir: string,
  n: number,
  layers: number[],
  opts: Partial<ShardWriterOptions> = {},
): Promise<DatasetMetadata> {
  const w = await ShardWriter.open({
    dir,
    format: "pickle",
    codec: "gzip",
    dtype: "float32",
    shardSizeBytes: 1 << 30,
    base: { shard_size_gb: 1 },
    gzipWorkers: 2,
    ...opts,
  });
  for (let s = 0; s < n; s++) await w.write(promptRecords(s, layers));
  return await w.close();
}

/** `bytes` as a stream of `size`-byte chunks (the last shorter): decoders must not care where reads cut. */
export function chunkedStream(bytes: Uint8Array, size: number): ReadableStream<Uint8Array> {
  let o = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (o >= bytes.length) return c.close();
      c.enqueue(bytes.slice(o, o += size));
    },
  });
}

/** Run a Python snippet; returns stdout (throws with stderr on failure). */
export async function python(exe: string, code: string, args: string[] = []): Promise<string> {
  const out = await new Deno.Command(exe, {
    args: ["-W", "error", "-c", code, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (!out.success) throw new Error(`${exe} failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).trim();
}

/** The two Pythons the pickle format must satisfy. */
export const PYTHONS: { exe: string; label: string }[] = [
  { exe: "python3", label: "numpy 2.x" },
  { exe: "/usr/bin/python3", label: "numpy 1.24" },
];

/** SHA-256 hex of bytes. */
export async function sha256Hex(b: Uint8Array): Promise<string> {
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", b.slice()));
  return [...h].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** Run a script in a subprocess: exit code and stderr/stdout text. */
export async function runScript(
  script: string,
  args: string[],
  env?: Record<string, string>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(`../scripts/${script}`, import.meta.url).pathname, ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}
