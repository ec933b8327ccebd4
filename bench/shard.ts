/**
 * `deno task bench shard`: shard-writer throughput per format × codec on activation-like float32 data
 * (gaussian × per-channel scales, a few outlier channels), next to a Python baseline writing the same arrays the
 * seed's way (`pickle.dump` into `gzip.open`, default level 9) in the same run; raw deflate engines
 * (fflate, node:zlib, CompressionStream) single-threaded; and peak RSS writing 2 GB with `--shard_size_gb 1`
 * vs `0.01` (each in a child process).
 */
import { gzipSync as fflateGzip } from "fflate";
import { constants as zlibConstants, gzipSync as zlibGzip, zstdCompressSync } from "node:zlib";
import { ShardWriter } from "../lib/shard/writer.ts";
import { ACTIVATION_DTYPES, encodeActivation } from "../lib/util/dtype.ts";
import type { ActivationRecord } from "../lib/types.ts";
import { activation } from "../tests/_shard_fixtures.ts";
import { runShardStage } from "./shard_stage.ts";

const TOKENS = 600, HIDDEN = 896, LAYERS = 8;
const MB = 1e6;

function records(prompts: number, distinct = true): ActivationRecord[][] {
  const pool = distinct ? null : Array.from({ length: LAYERS }, (_, l) => activation(TOKENS, HIDDEN, l));
  return Array.from({ length: prompts }, (_, s) =>
    Array.from({ length: LAYERS }, (_, l) => ({
      task_id: `t${s}`,
      sample_idx: s,
      layer: 10 + l,
      activation: pool ? pool[l] : activation(TOKENS, HIDDEN, s * 100 + l),
      shape: [TOKENS, HIDDEN] as [number, number],
      prompt: `prompt ${s}`,
    })));
}

async function writeAll(
  dir: string,
  groups: ActivationRecord[][],
  format: "pickle" | "safetensors",
  codec: "gzip" | "zstd" | "none",
  shardGb = 1,
) {
  const w = await ShardWriter.open({
    dir,
    format,
    codec,
    dtype: "float32",
    shardSizeBytes: shardGb * 2 ** 30,
    base: { shard_size_gb: shardGb },
  });
  for (const g of groups) await w.write(g);
  return await w.close();
}

async function pythonBaseline(
  groups: ActivationRecord[][],
  dir: string,
): Promise<{ mbps: number; ratio: number; cpuPerGb: number } | null> {
  const raw = `${dir}/raw.f32`;
  const f = await Deno.open(raw, { write: true, create: true });
  for (const g of groups) for (const r of g) await f.write(new Uint8Array(r.activation.buffer));
  f.close();
  const code = `
import gzip, pickle, time, sys, os
import numpy as np
P, L, T, H = ${groups.length}, ${LAYERS}, ${TOKENS}, ${HIDDEN}
a = np.fromfile(sys.argv[1], dtype=np.float32).reshape(P, L, T, H)
data = {10 + l: [] for l in range(L)}
for s in range(P):
    for l in range(L):
        data[10 + l].append({'task_id': f't{s}', 'sample_idx': s, 'activation': a[s, l].copy(), 'shape': (T, H), 'prompt': f'prompt {s}'})
t, c = time.perf_counter(), time.process_time()
with gzip.open(sys.argv[2], 'wb') as f:
    pickle.dump(data, f)
dt, dc = time.perf_counter() - t, time.process_time() - c
print(a.nbytes / dt / 1e6, os.path.getsize(sys.argv[2]) / a.nbytes, dc / (a.nbytes / 1e9))
`;
  for (const exe of ["python3", "/usr/bin/python3"]) {
    try {
      const out = await new Deno.Command(exe, {
        args: ["-c", code, raw, `${dir}/base.pkl.gz`],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) continue;
      const [mbps, ratio, cpuPerGb] = new TextDecoder().decode(out.stdout).trim().split(" ").map(Number);
      return { mbps, ratio, cpuPerGb };
    } catch { /* try the next python */ }
  }
  return null;
}

async function engines(): Promise<void> {
  const data = new Uint8Array(activation(4 * TOKENS, HIDDEN, 9).buffer as ArrayBuffer); // ≈ 8.6 MB
  const time = (fn: () => Uint8Array | Promise<Uint8Array>) => async () => {
    const t = performance.now();
    const out = await fn();
    return { mbps: data.length / MB / ((performance.now() - t) / 1000), ratio: out.length / data.length };
  };
  const cases: [string, () => Promise<{ mbps: number; ratio: number }>][] = [
    ["fflate gzipSync level 6", time(() => fflateGzip(data, { level: 6, mtime: 0 }))],
    ["node:zlib gzipSync level 6", time(() => zlibGzip(data, { level: 6 }))],
    ["node:zlib gzipSync level 9", time(() => zlibGzip(data, { level: 9 }))],
    ["node:zlib level 6 Z_RLE", time(() => zlibGzip(data, { level: 6, strategy: zlibConstants.Z_RLE }))],
    ...[1, 3].map((level): [string, () => Promise<{ mbps: number; ratio: number }>] => [
      `node:zlib zstd level ${level}`,
      time(() => zstdCompressSync(data, { params: { [zlibConstants.ZSTD_c_compressionLevel]: level } })),
    ]),
    [
      "CompressionStream gzip",
      time(async () =>
        new Uint8Array(
          await new Response(new Blob([data]).stream().pipeThrough(new CompressionStream("gzip")))
            .arrayBuffer(),
        )
      ),
    ],
  ];
  console.log(
    "engines, one thread (gzip: all emit a fixed header; fflate with mtime 0); zstd shards use level 1",
  );
  for (const [name, fn] of cases) {
    const r = await fn();
    console.log(
      `  ${name.padEnd(28)} ${r.mbps.toFixed(1).padStart(7)} MB/s  size ratio ${r.ratio.toFixed(3)}`,
    );
  }
}

/** Split each `width`-byte element into byte planes (plane k holds byte k of every element). */
function byteShuffle(b: Uint8Array, width: number): Uint8Array {
  const n = b.length / width, out = new Uint8Array(b.length);
  for (let k = 0; k < width; k++) for (let i = 0; i < n; i++) out[k * n + i] = b[i * width + k];
  return out;
}

/**
 * Bytes per activation value for each stored dtype × codec on activation-like data (the ratios the writer gets:
 * the same engines and levels), and what a byte-shuffle filter before zstd (not a codec today) would give.
 */
export function bytesPerValue(): void {
  const values = activation(4 * TOKENS, HIDDEN, 11); // ≈ 2.15M values
  const zstd = (b: Uint8Array) =>
    zstdCompressSync(b, { params: { [zlibConstants.ZSTD_c_compressionLevel]: 1 } }).length;
  const gzip = (b: Uint8Array) => zlibGzip(b, { level: 6, strategy: zlibConstants.Z_RLE }).length;
  console.log(
    `bytes per activation value (${values.length} activation-like values; gzip = level 6 Z_RLE, zstd = level 1, ` +
      `as the writer; "shuffle" = byte planes before zstd, measured only, not a codec):`,
  );
  for (const dtype of ACTIVATION_DTYPES) {
    const b = encodeActivation(values, dtype), w = dtype === "float32" ? 4 : 2;
    const per = (n: number) => (n / values.length).toFixed(2).padStart(5);
    const t = performance.now();
    const sh = byteShuffle(b, w);
    const shMs = performance.now() - t;
    console.log(
      `  ${dtype.padEnd(9)} none ${per(b.length)}  gzip ${per(gzip(b))}  zstd ${per(zstd(b))}  ` +
        `shuffle+zstd ${per(zstd(sh))}  (shuffle ${(b.length / 1e3 / shMs).toFixed(0)} MB/s, one thread)`,
    );
  }
}

async function peakRss(shardGb: number): Promise<number> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, "--rss-child", String(shardGb)],
    stdout: "piped",
  }).output();
  return Number(new TextDecoder().decode(out.stdout).trim());
}

async function rssChild(shardGb: number): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "actshard-bench-" });
  try {
    const per = TOKENS * HIDDEN * 4 * LAYERS;
    const groups = records(1, false)[0];
    const w = await ShardWriter.open({
      dir,
      format: "pickle",
      codec: "zstd",
      dtype: "float32",
      shardSizeBytes: shardGb * 2 ** 30,
      base: {},
    });
    for (let s = 0; s * per < 2e9; s++) await w.write(groups.map((r) => ({ ...r, sample_idx: s })));
    await w.close();
    const status = await Deno.readTextFile("/proc/self/status");
    console.log(Number(status.match(/VmHWM:\s+(\d+)/)![1]) / 1024);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Print the benchmark. */
export async function run(): Promise<void> {
  await engines();
  bytesPerValue();
  const groups = records(24); // 24 prompts × 8 layers × 600 × 896 float32 ≈ 413 MB
  const payload = groups.length * LAYERS * TOKENS * HIDDEN * 4;
  const dir = await Deno.makeTempDir({ prefix: "actshard-bench-" });
  try {
    const base = await pythonBaseline(groups, dir);
    console.log(
      `writer, ${(payload / MB).toFixed(0)} MB float32 payload, ${navigator.hardwareConcurrency} cores`,
    );
    if (base) {
      console.log(
        `  python baseline (pickle.dump → gzip.open, level 9)  ${
          base.mbps.toFixed(1).padStart(7)
        } MB/s  size ratio ${base.ratio.toFixed(3)}`,
      );
    } else console.log("  python baseline: no python3 with numpy; ratios not printed");
    for (const format of ["pickle", "safetensors"] as const) {
      for (const codec of ["gzip", "zstd", "none"] as const) {
        const out = `${dir}/${format}-${codec}`;
        const t = performance.now();
        const meta = await writeAll(out, groups, format, codec);
        const mbps = payload / MB / ((performance.now() - t) / 1000);
        const bytes = meta.shards.reduce((s, e) => s + e.bytes, 0);
        const vs = base ? `  ${(mbps / base.mbps).toFixed(2)}× baseline` : "";
        console.log(
          `  ${`${format} + ${codec}`.padEnd(50)} ${mbps.toFixed(1).padStart(7)} MB/s  size ratio ${
            (bytes / payload).toFixed(3)
          }${vs}`,
        );
        await Deno.remove(out, { recursive: true });
      }
    }
    await runShardStage(groups, base, () => pythonBaseline(groups, dir));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  const big = await peakRss(1), small = await peakRss(0.01);
  console.log(
    `peak RSS writing 2 GB (pickle + zstd): --shard_size_gb 1: ${big.toFixed(0)} MiB, 0.01: ${
      small.toFixed(0)
    } MiB, ratio ${(big / small).toFixed(3)} (target ≤ 1.10)`,
  );
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--rss-child");
  if (i >= 0) await rssChild(Number(Deno.args[i + 1]));
  else await run();
}
