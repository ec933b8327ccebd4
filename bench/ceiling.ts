/**
 * The host pipeline's ceiling (`deno task bench pipeline`, first part; alone: `deno run -A bench/ceiling.ts`):
 * the real extract pipeline (`runExtract`: batching, cutting records, encoding, compression, hashing, writing,
 * fsync, metadata) fed by an instant backend — recorded activation-like float32 handed over with no compute and
 * no wait — so what is measured is only what an accelerator host spends per byte on its CPUs.
 *
 * Every case runs in a child process (a fresh heap; `process.cpuUsage()` there counts the main thread and every
 * Worker) with all cores and, for float32, also pinned to 1, 2, 4, … cores (`taskset`; the pools size
 * themselves from `navigator.hardwareConcurrency`, which follows the affinity mask). Figures: MB/s of float32
 * activations in (real tokens × hidden × 4 × layers, whatever the stored dtype) → committed shards, wall clock
 * of the forward/write loop, and CPU-seconds per GB of float32 in. The box is shared, so each case runs
 * `REPS` times and the spread is printed.
 *
 * Data: a checkpoint directory with Qwen2.5-0.5B's config (hidden 896, 24 layers; its weights file is a small
 * stand-in that is never read), the real Qwen tokenizer, generated ARC tasks, 14 stored layers (10..23, the
 * default), batch 4. The instant backend's activations come from the activation-like generator of
 * tests/_shard_fixtures.ts (gaussian × per-channel scales with outlier channels, the bench's data throughout:
 * it compresses like the seed's real shards, ≈ 0.93 with zstd), four distinct buffers cycled over the layers.
 */
import { join } from "node:path";
import process from "node:process";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import { syntheticArcTasks } from "../lib/arc/synthetic.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";
import { runExtract } from "../lib/pipeline/extract.ts";
import type { Backend, TokenBatch } from "../lib/types.ts";
import { activation } from "../tests/_shard_fixtures.ts";
import { crcPoolSize, hashPoolSize } from "../lib/shard/file_sink.ts";
import { convertPoolSize } from "../lib/shard/convert_pool.ts";
import { shardFormat } from "../lib/shard/formats/mod.ts";
import { ACTIVATION_DTYPES } from "../lib/util/dtype.ts";

const HIDDEN = 896;
const BATCH = 4;
const MAX_SEQ = 2048;
const REPS = Number(Deno.env.get("ACTSHARD_BENCH_REPS") ?? 2);
/** Generated ARC tasks (two prompts each, ≤ 2048 tokens): ≈ 60 MB of float32 per prompt over 14 layers. */
const TASKS = Number(Deno.env.get("ACTSHARD_BENCH_TASKS") ?? 6);

/**
 * A stand-in for an accelerator that computes instantly: every forward returns views of the same recorded
 * activation-like buffers (the pipeline only reads backend outputs). Not a model.
 */
export class InstantBackendForBench implements Backend {
  readonly name = "instant";
  readonly numLayers = 24;
  /** float32 bytes of real tokens handed over so far. */
  realBytes = 0;
  #pool: Float32Array[] = [];
  constructor(readonly hiddenSize: number, maxTokens: number) {
    for (let i = 0; i < 4; i++) this.#pool.push(activation(maxTokens, hiddenSize, 7000 + i));
  }
  /** Called once, at the first forward. */
  onFirstForward?: () => void;
  forward(tb: TokenBatch, layers: number[]): Promise<Map<number, Float32Array>> {
    if (this.onFirstForward) {
      this.onFirstForward();
      this.onFirstForward = undefined;
    }
    const n = tb.batch * tb.seqLen * this.hiddenSize;
    const real = tb.lengths.reduce((s, x) => s + x, 0);
    this.realBytes += real * this.hiddenSize * 4 * layers.length;
    return Promise.resolve(new Map(layers.map((l, i) => [l, this.#pool[i % 4].subarray(0, n)])));
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** One case's figures. */
interface CaseResult {
  mb: number;
  wall: number;
  cpu: number;
  outMb: number;
  /** CPU seconds per thread name during the run (Linux /proc; sampled, so short-lived threads may be missed). */
  threads: Record<string, number>;
  /** CPU seconds of the busiest serial stage (see {@link ThreadCpu.busiest}). */
  busiest: number;
}

/**
 * Per-thread CPU time of this process from /proc/self/task (Linux), sampled: Worker threads exit when the
 * writer closes, so the last sample before that is what they used. Threads alive at construction count from
 * then on. The profile's "where the time goes": `deno` is the main thread (the thread whose id is the pid),
 * `worker-N` the Workers in creation order (a ShardWriter creates its file sink's Worker first, then the sink's
 * CRC pool — `crcPoolSize()` Workers, none where ISA-L loads —, then its hash Workers — `hashPoolSize()` —,
 * then, for float16/bfloat16, its conversion pool — `convertPoolSize()` —, then its codec Workers), other `deno` threads libzstd's compression
 * threads (created from the main thread, whose name they inherit), `tokio-*` Deno's blocking pool (write
 * syscalls, fsync, and the nonblocking libzstd calls that feed those threads).
 */
export class ThreadCpu {
  #base = new Map<string, number>();
  #last = new Map<string, { name: string; cpu: number }>();
  constructor() {
    this.#read((tid, _n, cpu) => this.#base.set(tid, cpu));
  }
  #read(f: (tid: string, name: string, cpu: number) => void): void {
    try {
      for (const e of Deno.readDirSync("/proc/self/task")) {
        try {
          const stat = Deno.readTextFileSync(`/proc/self/task/${e.name}/stat`);
          let name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
          if (name === "deno" && e.name !== String(Deno.pid)) name = "zstd-mt";
          const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
          f(e.name, name, (Number(fields[11]) + Number(fields[12])) / 100);
        } catch { /* the thread just exited */ }
      }
    } catch { /* not Linux */ }
  }
  sample(): void {
    this.#read((tid, name, cpu) => this.#last.set(tid, { name, cpu: cpu - (this.#base.get(tid) ?? 0) }));
  }
  /**
   * The busiest serial stage's CPU seconds: the busiest single thread, or the blocking pool's total (one file's
   * writes are chained, so they are serial whichever pool threads run them). A hash Worker is serial over its
   * files, so it counts by itself (the two take alternate shards: each carries about half of the SHA-256).
   */
  busiest(convertWorkers = 0): number {
    let io = 0, max = 0;
    const crcWorkers = crcPoolSize(), first = 2 + crcWorkers + hashPoolSize();
    for (const { name, cpu } of this.#last.values()) {
      const worker = name.startsWith("worker-") ? Number(name.slice(7)) : 0;
      // Pools that grow with the cores are not serial stages: libzstd's threads, the sink's CRC Workers, the
      // conversion Workers.
      const pooled = name === "zstd-mt" || (worker >= 2 && worker <= 1 + crcWorkers) ||
        (worker >= first && worker < first + convertWorkers);
      if (name.startsWith("tokio")) io += cpu;
      else if (!name.startsWith("V8") && !pooled) max = Math.max(max, cpu);
    }
    return Math.max(io, max);
  }
  /**
   * CPU seconds per role: main, sink (worker-1), crc (the sink's CRC pool), hash (its SHA-256 Workers), conv
   * (the float16/bfloat16 conversion pool, `convertWorkers` of them), codec (other Workers, libzstd's threads),
   * io (blocking pool), v8 (GC/JIT).
   */
  byName(convertWorkers = 0): Record<string, number> {
    const out: Record<string, number> = {};
    const crcWorkers = crcPoolSize(), hashWorkers = hashPoolSize();
    const first = 2 + crcWorkers + hashWorkers;
    for (const { name, cpu } of this.#last.values()) {
      const worker = name.startsWith("worker-") ? Number(name.slice(7)) : 0;
      const key = name === "deno"
        ? "main"
        : worker === 1
        ? "sink"
        : worker >= 2 && worker <= 1 + crcWorkers
        ? "crc"
        : worker > 1 + crcWorkers && worker <= 1 + crcWorkers + hashWorkers
        ? "hash"
        : worker >= first && worker < first + convertWorkers
        ? "conv"
        : worker > 0 || name === "zstd-mt"
        ? "codec"
        : name.startsWith("tokio")
        ? "io"
        : name.startsWith("V8")
        ? "v8"
        : "other";
      if (cpu > 0.005) out[key] = (out[key] ?? 0) + cpu;
    }
    return out;
  }
}

/** Model dir (full-shape config, stand-in weights) and dataset under `root`. */
export async function fixtures(root: string): Promise<{ model: string; dataset: string }> {
  const model = join(root, "model"), dataset = join(root, "tasks.json");
  await writeTinyModel(model, { hidden: 64, layers: 2, heads: 4, kvHeads: 2, vocab: 4096 });
  const cfgPath = join(model, "config.json");
  const cfg = JSON.parse(await Deno.readTextFile(cfgPath));
  Object.assign(cfg, {
    hidden_size: HIDDEN,
    intermediate_size: 4864,
    num_hidden_layers: 24,
    max_window_layers: 24,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    vocab_size: 151936,
  });
  await Deno.writeTextFile(cfgPath, JSON.stringify(cfg, null, 2));
  await Deno.writeTextFile(
    dataset,
    JSON.stringify(syntheticArcTasks({ nTasks: TASKS, seed: 5, maxSide: 16, trainPairs: 3 })),
  );
  return { model, dataset };
}

/** Child: run one case, print its figures as JSON. */
async function child(root: string, format: string, codec: string, dtype: string): Promise<void> {
  const out = await Deno.makeTempDir({ dir: root, prefix: "out-" });
  try {
    const c = parseExtractFlags([
      ...["--model_path", join(root, "model"), "--dataset_path", join(root, "tasks.json")],
      ...["--output_dir", out, "--batch_size", String(BATCH), "--shard_size_gb", "0.25"],
      ...["--format", format, "--codec", codec, "--dtype", dtype],
      ...["--predictions_per_task", "2", "--max_seq_length", String(MAX_SEQ)],
    ]);
    if ("help" in c) throw new Error("unexpected --help");
    const backend = new InstantBackendForBench(HIDDEN, BATCH * MAX_SEQ);
    // CPU counts from the first forward: the run's setup (tokenizer, prompts) is not the pipeline's cost.
    let threads: ThreadCpu | null = null, u0: NodeJS.CpuUsage | null = null;
    backend.onFirstForward = () => {
      threads = new ThreadCpu();
      u0 = process.cpuUsage();
    };
    const timer = setInterval(() => threads?.sample(), 50);
    const s = await runExtract(c, { backend, log: () => {}, progress: { tty: false, write: () => {} } });
    const u = process.cpuUsage(u0!);
    clearInterval(timer);
    threads!.sample();
    const r: CaseResult = {
      mb: backend.realBytes / 1e6,
      wall: s.loop_s,
      cpu: (u.user + u.system) / 1e6,
      outMb: s.bytes / 1e6,
      threads: threads!.byName(dtype === "float32" ? 0 : convertPoolSize()),
      busiest: threads!.busiest(dtype === "float32" ? 0 : convertPoolSize()),
    };
    console.log(JSON.stringify(r));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

async function runCase(
  root: string,
  cores: number | null,
  format: string,
  codec: string,
  dtype: string,
): Promise<CaseResult> {
  const self = new URL(import.meta.url).pathname;
  const args = ["run", "-A", self, "--child", root, format, codec, dtype];
  const cmd = cores
    ? new Deno.Command("taskset", {
      args: ["-c", `0-${cores - 1}`, Deno.execPath(), ...args],
      stdout: "piped",
    })
    : new Deno.Command(Deno.execPath(), { args, stdout: "piped" });
  const o = await cmd.output();
  if (!o.success) throw new Error(`bench case ${format}/${codec}/${dtype} failed`);
  const lines = new TextDecoder().decode(o.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]);
}

function fmtCase(rs: CaseResult[]): string {
  const mbps = rs.map((r) => r.mb / r.wall), cpg = rs.map((r) => r.cpu / (r.mb / 1e3));
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const span = (xs: number[], d: number) =>
    xs.length > 1 ? ` [${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}]` : "";
  return `${med(mbps).toFixed(0).padStart(5)} MB/s${span(mbps, 0).padEnd(12)} ${
    med(cpg).toFixed(2).padStart(5)
  } CPU-s/GB${span(cpg, 2).padEnd(14)} ${(4 * rs[0].outMb / rs[0].mb).toFixed(2)} B/value  ${profile(rs)}`;
}

/** Where the CPU went, per GB of float32 in, averaged over the reps: main/sink/crc/hash/conv/codec/io/v8. */
function profile(rs: CaseResult[]): string {
  const roles = ["main", "sink", "crc", "hash", "conv", "codec", "io", "v8"];
  return roles.map((k) => {
    const v = rs.reduce((s, r) => s + (r.threads[k] ?? 0) / (r.mb / 1e3), 0) / rs.length;
    return `${k} ${v.toFixed(2)}`;
  }).join(" ");
}

/** Print the ceiling table (with bytes per activation value) and the scaling over core counts. */
export async function run(): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "actshard-bench-ceiling-" });
  try {
    await fixtures(root);
    const cores = navigator.hardwareConcurrency;
    const probe = await runCase(root, null, "pickle", "none", "float32");
    console.log(
      `ceiling: runExtract with an instant backend (no compute, no wait), ${
        (probe.mb / 1e3).toFixed(2)
      } GB of float32 ` +
        `activations (14 layers × hidden ${HIDDEN}, batch ${BATCH}) per case, ${REPS} reps [min–max]; ` +
        `MB/s and CPU-s are per GB of float32 in; the profile splits CPU-s/GB by thread: main (records, ` +
        `encoding), sink (file Worker: ordering, CRC-32C; the write syscalls below 4 cores), crc (the JS CRC-32C pool, where ISA-L does ` +
        `not load), hash (the SHA-256 Workers, each written chunk), conv (the float16/bfloat16 conversion ` +
        `Workers), codec (libzstd's ` +
        `threads, or the node:zlib zstd Worker; gzip Workers), io (Deno's blocking pool: write syscalls from 4 cores, ` +
        `fsync, libzstd calls), v8 (GC, JIT)`,
    );
    const rows: [string, string, string][] = [];
    // Every format × codec × dtype the formats' registry allows (pickle cannot hold bfloat16).
    for (const format of ["pickle", "safetensors"]) {
      for (const codec of ["none", "zstd", "gzip"]) {
        for (const dtype of ACTIVATION_DTYPES) {
          if (shardFormat(format).dtypes[dtype] === true) rows.push([format, codec, dtype]);
        }
      }
    }
    // float32 rows at 1, 2, 4, … and all cores; the others at all cores.
    const counts = [...new Set([...[1, 2, 4, 8, 16, 32, 64].filter((c) => c < cores), cores])];
    const scaling: { key: string; by: Map<number, CaseResult[]> }[] = [];
    for (const [format, codec, dtype] of rows) {
      const key = `${format}/${codec}/${dtype}`;
      const by = new Map<number, CaseResult[]>();
      for (const n of dtype === "float32" ? counts : [cores]) {
        const rs: CaseResult[] = [];
        for (let i = 0; i < REPS; i++) {
          rs.push(await runCase(root, n === cores ? null : n, format, codec, dtype));
        }
        by.set(n, rs);
        const label = `${n} core${n > 1 ? "s" : ""}:`.padEnd(9);
        console.log(`  ${(n === [...by.keys()][0] ? key : "").padEnd(27)} ${label} ${fmtCase(rs)}`);
      }
      if (dtype === "float32") scaling.push({ key, by });
    }
    console.log(
      `scaling (float32, best reps; efficiency = speedup over 1 core / cores). Model for C cores: ` +
        `min(C / total CPU-s/GB, 1 / busiest serial stage's CPU-s/GB) GB/s — the busiest serial stage (the ` +
        `sink, one hash Worker's SHA-256 of its alternate shards, the main thread, the blocking pool's write ` +
        `syscalls and libzstd calls, the node:zlib zstd Worker's frame; measured on the most cores, where the ` +
        `pools are sized as on a big host; ` +
        `not the pools: libzstd's threads, CRC and gzip Workers) caps one writer, whatever the cores. ` +
        `Wall-clock speedups on a shared, overloaded box are noise (efficiency > 1 happens); CPU-s/GB is stable:`,
    );
    for (const s of scaling) {
      const best = (rs: CaseResult[]) => Math.max(...rs.map((r) => r.mb / r.wall));
      const one = s.by.get(1)!;
      const cpg = Math.min(...one.map((r) => r.cpu / (r.mb / 1e3)));
      const parts = [...s.by.entries()].filter(([n]) => n > 1).map(([n, rs]) => {
        const sp = best(rs) / best(one);
        return `${n} cores ×${sp.toFixed(2)} (eff ${(sp / n).toFixed(2)})`;
      });
      // gzip's members compress on a pool as large as the cores: its codec threads are not a serial stage.
      const serial = (r: CaseResult) =>
        s.key.includes("/gzip/")
          ? Math.max(r.threads.main ?? 0, r.threads.sink ?? 0, r.threads.io ?? 0)
          : r.busiest;
      // The serial stage from the run on the most cores: the pools size themselves by the cores (one hash
      // Worker on one core, two from two), so a 1-core run would count all of SHA-256 as one thread's.
      const most = s.by.get(Math.max(...s.by.keys()))!;
      const busiest = Math.min(...most.map((r) => serial(r) / (r.mb / 1e3)));
      const model = (c: number) => Math.min(c / cpg, 1 / busiest) * 1e3;
      console.log(
        `  ${s.key.padEnd(27)} ${parts.join(", ")}; ${cpg.toFixed(2)} CPU-s/GB = ${(1e3 / cpg).toFixed(0)} ` +
          `MB/s per core; busiest serial stage ${busiest.toFixed(2)} s/GB; modelled 16 cores ${
            model(16).toFixed(0)
          } MB/s, 100 cores ${model(100).toFixed(0)} MB/s`,
      );
    }
  } finally {
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  const i = Deno.args.indexOf("--child");
  if (i >= 0) {
    const [root, format, codec, dtype] = Deno.args.slice(i + 1);
    await child(root, format, codec, dtype);
  } else await run();
}
