/**
 * Run one backend over fixed token rows and write every requested layer's activations (real tokens only) —
 * the device check's workhorse (scripts/device-check.sh, docs/pjrt.md). The rows come from a JSON file so the
 * accelerator machine needs no tokenizer: `{"rows": [[id, ...], ...]}`.
 *
 * Writes `<out>/layer_<l>.f32` (float32 little endian, rows concatenated, `[sum(lengths), hidden]`) and
 * `<out>/meta.json` (layers, hidden, lengths, seconds, tokens_per_s, backend details), and prints one summary line.
 *
 * @example
 * ```sh
 * deno run -A scripts/pjrt_forward.ts --model_path tiny --rows rows.json --layers 0 1 --backend pjrt --out out/
 * ```
 */
import { join } from "node:path";
import { choiceFlag, numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { runCli } from "../lib/cli/run.ts";
import { ActshardError, usageError } from "../lib/errors.ts";
import type { Backend, TokenBatch } from "../lib/types.ts";
import { createPjrtBackend, parsePjrtOptions } from "../lib/backend/pjrt/index.ts";
import type { NamedValue } from "../native/pjrt/mod.ts";
import type { ComputeDtype } from "../lib/backend/pjrt/emit.ts";

/** Parse flags, run the rows in batches, write the activations. */
export async function main(args: string[]): Promise<number> {
  const f = parseFlags("pjrt-forward", args, {
    model_path: { type: "string", help: "checkpoint directory (config.json + safetensors)", metavar: "DIR" },
    rows: { type: "string", help: 'JSON file {"rows": [[token ids], ...]}', metavar: "FILE" },
    layers: { type: "string", list: true, help: "layers to write", metavar: "L" },
    out: { type: "string", help: "output directory", metavar: "DIR" },
    backend: { type: "string", default: "pjrt", help: "pjrt | onnx" },
    batch_size: { type: "string", default: "4", help: "rows per forward call", metavar: "N" },
    pjrt_plugin: {
      type: "string",
      help: "PJRT plugin (.so); default: search the usual places",
      metavar: "PATH",
    },
    pjrt_option: {
      type: "string",
      list: true,
      metavar: "NAME=VALUE",
      help: "PJRT client create options, e.g. cpu_device_count=4",
    },
    data_parallel: { type: "boolean", default: true, negatable: true, help: "split batches over devices" },
    compute_dtype: { type: "string", default: "float32", help: "float32 | bfloat16 (pjrt only)" },
    repeat: { type: "string", default: "1", help: "timed passes over the rows (the first also compiles)" },
    verbose: { type: "boolean", default: false, help: "print plugin/device lines on stderr" },
  }, { description: "Run a backend over fixed token rows; write per-layer activations and tokens/s." });
  if (f.help) {
    console.log(f.help);
    return 0;
  }
  const v = f.values;
  for (const k of ["model_path", "rows", "layers", "out"]) {
    if (!v[k]) throw usageError(`--${k} is required`, "see --help", `--${k}`);
  }
  const layers = String(v.layers).split(",").map((x) => numberFlag("layers", x, { integer: true, min: 0 })!);
  const batchSize = numberFlag("batch_size", v.batch_size, { integer: true, min: 1 })!;
  const repeat = numberFlag("repeat", v.repeat, { integer: true, min: 1 })!;
  const backendName = choiceFlag("backend", v.backend, ["pjrt", "onnx"] as const);
  const computeDtype = choiceFlag("compute_dtype", v.compute_dtype, ["float32", "bfloat16"] as const);
  const rows = await readRows(String(v.rows));
  const modelDir = String(v.model_path);
  const backend = await openBackend(backendName, modelDir, layers, {
    pluginPath: (v.pjrt_plugin as string | undefined) ?? null,
    clientOptions: parsePjrtOptions(v.pjrt_option as string | undefined),
    dataParallel: v.data_parallel !== false,
    computeDtype,
    log: v.verbose ? (l: string) => console.error(l) : undefined,
    pluginLogs: v.verbose === true,
  });
  try {
    const outs = new Map(layers.map((l) => [l, [] as Float32Array[]]));
    let seconds = 0, firstSeconds = 0;
    for (let pass = 0; pass < repeat; pass++) {
      const t0 = performance.now();
      for (let i = 0; i < rows.length; i += batchSize) {
        const chunk = rows.slice(i, i + batchSize);
        const batch = padRows(chunk);
        const res = await backend.forward(batch, layers);
        if (pass > 0) continue;
        for (const l of layers) {
          const a = res.get(l)!;
          chunk.forEach((r, b) => {
            const o = b * batch.seqLen * backend.hiddenSize;
            outs.get(l)!.push(a.slice(o, o + r.length * backend.hiddenSize));
          });
        }
      }
      const dt = (performance.now() - t0) / 1000;
      if (pass === 0) firstSeconds = dt;
      else seconds += dt;
    }
    const tokens = rows.reduce((s, r) => s + r.length, 0);
    const timed = repeat > 1 ? seconds / (repeat - 1) : firstSeconds;
    await Deno.mkdir(String(v.out), { recursive: true });
    for (const [l, parts] of outs) {
      const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
      let o = 0;
      for (const p of parts) all.set(p, (o += p.length) - p.length);
      await Deno.writeFile(join(String(v.out), `layer_${l}.f32`), new Uint8Array(all.buffer));
    }
    const meta = {
      backend: backendName,
      compute_dtype: computeDtype,
      layers,
      hidden: backend.hiddenSize,
      lengths: rows.map((r) => r.length),
      first_pass_seconds: firstSeconds,
      seconds_per_pass: timed,
      tokens_per_s: tokens / timed,
    };
    await Deno.writeTextFile(join(String(v.out), "meta.json"), JSON.stringify(meta, null, 2));
    console.log(
      `${backendName}: ${rows.length} rows, ${tokens} tokens, ${(tokens / timed).toFixed(1)} tokens/s ` +
        `(first pass incl. compile ${firstSeconds.toFixed(2)} s) -> ${v.out}`,
    );
    return 0;
  } finally {
    await backend.close();
  }
}

async function openBackend(
  name: "pjrt" | "onnx",
  modelDir: string,
  layers: number[],
  o: {
    pluginPath: string | null;
    clientOptions: Record<string, NamedValue>;
    pluginLogs: boolean;
    dataParallel: boolean;
    computeDtype: ComputeDtype;
    log?: (line: string) => void;
  },
): Promise<Backend> {
  if (name === "pjrt") return await createPjrtBackend(modelDir, { layers, ...o });
  const { createOnnxBackend } = await import("../lib/backend/onnx/index.ts");
  return await createOnnxBackend(modelDir, { layers });
}

async function readRows(path: string): Promise<number[][]> {
  let rows: unknown;
  try {
    rows = JSON.parse(await Deno.readTextFile(path)).rows;
  } catch (e) {
    throw new ActshardError("cannot read token rows", {
      where: path,
      cause: e,
      hint: 'expected {"rows": [[ids]]}',
    });
  }
  if (!Array.isArray(rows) || rows.length === 0 || !rows.every((r) => Array.isArray(r) && r.length > 0)) {
    throw new ActshardError("token rows must be a non-empty list of non-empty id lists", { where: path });
  }
  return rows as number[][];
}

/** Right-pad rows into a {@link TokenBatch}. */
export function padRows(rows: number[][]): TokenBatch {
  const seqLen = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(rows.length * seqLen);
  rows.forEach((r, b) => ids.set(r, b * seqLen));
  return { ids, lengths: Int32Array.from(rows, (r) => r.length), batch: rows.length, seqLen };
}

if (import.meta.main) await runCli("pjrt-forward", main);
