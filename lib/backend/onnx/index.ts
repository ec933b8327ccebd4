/**
 * The CPU backend: the Qwen2 graph emitted as ONNX and run by onnxruntime-node. F32 weights are read in place
 * from the checkpoint's safetensors (ONNX external data through a link in the cache directory); BF16/F16 weights
 * are converted to f32 once per checkpoint and kept in the weight cache (weight_cache.ts), so later runs start
 * without converting. Batch and sequence length are dynamic; the requested layers are graph outputs.
 *
 * @example
 * ```ts
 * import { createOnnxBackend } from "./index.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * const ids = Int32Array.from([9, 11, 17]), lengths = Int32Array.from([3]);
 * const be = await createOnnxBackend(dir, { layers: [0, 1], weightCacheDir: null });
 * const out = await be.forward({ ids, lengths, batch: 1, seqLen: ids.length }, [0, 1]);
 * console.log(out.get(1)!.length); // 96: [batch 1, seq 3, hidden 32]
 * await be.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { basename, dirname, join } from "node:path";
import { ActshardError } from "../../errors.ts";
import { writeAll } from "../../util/write_all.ts";
import type { Backend, TokenBatch } from "../../types.ts";
import { loadModelConfig, type Qwen2Config } from "../../model/config.ts";
import { graphWeights } from "../../model/ir.ts";
import { buildQwen2Graph, layerOutputName, validateLayers } from "../../model/qwen2.ts";
import { CheckpointWeights } from "../../model/safetensors.ts";
import { emitOnnx, type ExternalRef } from "./emit.ts";
import { cachedF32Weights, defaultWeightCacheDir } from "./weight_cache.ts";
import { WorkerSession } from "./session.ts";

/** Options for {@link createOnnxBackend}. */
export interface OnnxBackendOptions {
  /** Layers the graph outputs; `forward` may ask for any subset. */
  layers: number[];
  /** Intra-op threads (default: all cores). */
  threads?: number;
  /** Where model.onnx and converted weights go (default: a temp dir removed on close). */
  cacheDir?: string;
  /** onnxruntime's fused GroupQueryAttention instead of standard ops (default true; see emit.ts). */
  fusedAttention?: boolean;
  /**
   * Where BF16/F16 checkpoints' f32 conversions are kept across runs (default {@link defaultWeightCacheDir});
   * `null`: convert into `cacheDir` for this run only.
   */
  weightCacheDir?: string | null;
  /** Hears what start-up is doing ("converting BF16 weights…", "building the onnxruntime session"). */
  onPhase?: (text: string) => void;
}

/**
 * Build the ONNX model for `modelDir` and open an onnxruntime session on it.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { createOnnxBackend } from "./index.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * const backend = await createOnnxBackend(dir, { layers: [1], weightCacheDir: null });
 * const batch = { ids: Int32Array.from([5, 6, 7, 0]), lengths: Int32Array.from([2, 1]), batch: 2, seqLen: 2 };
 * const acts = await backend.forward(batch, [1]); // Map(layer -> Float32Array [batch, seq, hidden])
 * assert(acts.get(1)!.length === 2 * 2 * backend.hiddenSize);
 * await backend.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function createOnnxBackend(modelDir: string, opts: OnnxBackendOptions): Promise<Backend> {
  const cfg = await loadModelConfig(modelDir);
  const layers = validateLayers(cfg, opts.layers);
  const graph = buildQwen2Graph(cfg, layers);
  const ownDir = opts.cacheDir === undefined;
  const dir = opts.cacheDir ?? await Deno.makeTempDir({ prefix: "actshard-onnx-" });
  await Deno.mkdir(dir, { recursive: true });
  const weights = await CheckpointWeights.open(modelDir);
  let modelPath: string, cleanup: string[];
  try {
    opts.onPhase?.("reading the weights");
    const weightCache = opts.weightCacheDir === undefined ? defaultWeightCacheDir() : opts.weightCacheDir;
    const prep = await prepareWeights(weights, graphWeights(graph), dir, weightCache, cfg, opts.onPhase);
    // A unique name: model.onnx may have to live next to the checkpoint, shared with other runs.
    modelPath = join(prep.modelDir, `.actshard-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}.onnx`);
    cleanup = [...prep.cleanup, modelPath];
    await Deno.writeFile(
      modelPath,
      emitOnnx(graph, (name) => prep.refs.get(name)!, {
        fusedAttention: opts.fusedAttention ?? true,
      }),
    );
  } finally {
    weights.close();
  }
  let session: WorkerSession;
  opts.onPhase?.("building the onnxruntime session");
  try {
    // In a Worker: onnxruntime-node's run blocks its thread for the whole forward (see session_worker.ts).
    session = await WorkerSession.create(modelPath, {
      intraOpNumThreads: opts.threads ?? navigator.hardwareConcurrency,
      interOpNumThreads: 1,
      executionMode: "sequential",
      graphOptimizationLevel: "all",
      // Fatal only: a failed run already rejects with onnxruntime's message (one line at the CLI edge), and an
      // exit during a run (Ctrl-C) would otherwise print the kernel errors of the torn-down worker after it.
      logSeverityLevel: 4,
    });
  } catch (e) {
    for (const f of cleanup) await Deno.remove(f).catch(() => {});
    throw new ActshardError(`onnxruntime could not load the model: ${String((e as Error).message ?? e)}`, {
      where: modelPath,
      kind: "internal",
      cause: e,
    });
  }
  // The session holds the weights now (read or mapped): drop the files made for it, so nothing is left next to
  // the checkpoint even if the process is killed later.
  for (const f of cleanup) await Deno.remove(f).catch(() => {});
  const available = new Set(layers);
  return {
    name: "onnx",
    hiddenSize: cfg.hidden_size,
    numLayers: cfg.num_hidden_layers,
    async forward(batch: TokenBatch, want: number[]): Promise<Map<number, Float32Array>> {
      for (const l of want) {
        if (!available.has(l)) {
          throw new ActshardError(`layer ${l} was not built into this backend`, {
            kind: "usage",
            hint: `built layers: ${layers.join(",")}`,
          });
        }
      }
      checkBatch(batch, cfg.vocab_size);
      const names = want.map(layerOutputName);
      let outs: Float32Array[];
      try {
        outs = await session.run(batch.ids, batch.lengths, [batch.batch, batch.seqLen], names);
      } catch (e) {
        throw new ActshardError(`onnxruntime failed on a batch of ${batch.batch} x ${batch.seqLen}`, {
          kind: "internal",
          cause: e,
          hint: (e as Error).message,
        });
      }
      return new Map(want.map((l, i) => [l, outs[i]]));
    },
    async close() {
      await session.release();
      if (ownDir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

function checkBatch(b: TokenBatch, vocab: number): void {
  if (b.ids.length !== b.batch * b.seqLen || b.lengths.length !== b.batch || b.seqLen < 1) {
    throw new ActshardError(`token batch is inconsistent: ${b.ids.length} ids for ${b.batch} x ${b.seqLen}`, {
      kind: "internal",
    });
  }
  for (let i = 0; i < b.batch; i++) {
    if (!(b.lengths[i] >= 1 && b.lengths[i] <= b.seqLen)) {
      throw new ActshardError(`row ${i} has length ${b.lengths[i]} outside 1..${b.seqLen}`, {
        kind: "internal",
      });
    }
  }
  for (const id of b.ids) {
    if (!(id >= 0 && id < vocab)) {
      throw new ActshardError(`token id ${id} is outside the vocabulary (size ${vocab})`, { kind: "data" });
    }
  }
}

/**
 * External-data references for every weight, and the directory model.onnx must be written to (onnxruntime only
 * reads external data under the model's own directory, after resolving links). An all-F32 checkpoint is used in
 * place: hard-linked into `dir` when on the same filesystem, else model.onnx goes next to the real safetensors
 * file, else (read-only) the file is copied. Any BF16/F16 weight → all weights are converted once to
 * `dir/weights.f32.bin`.
 */
async function prepareWeights(
  weights: CheckpointWeights,
  nodes: { name: string; shape: (number | string)[] }[],
  dir: string,
  weightCache: string | null,
  cfg: Qwen2Config,
  onPhase?: (text: string) => void,
): Promise<{ refs: Map<string, ExternalRef>; modelDir: string; cleanup: string[] }> {
  const infos = nodes.map((n) => weights.info(n.name, n.shape as number[]));
  const refs = new Map<string, ExternalRef>();
  const files = [...new Set(infos.map((t) => t.file))];
  if (infos.every((t) => t.dtype === "F32")) {
    const real = await Promise.all(files.map((f) => Deno.realPath(f)));
    const names = new Map(files.map((f, i) => [f, `weights${i}.safetensors`]));
    let linked = true;
    for (const [i, f] of files.entries()) {
      const dst = join(dir, names.get(f)!);
      await Deno.remove(dst).catch(() => {});
      try {
        await Deno.link(real[i], dst);
      } catch {
        linked = false;
        break;
      }
    }
    if (!linked && new Set(real.map((r) => dirname(r))).size === 1 && await writable(dirname(real[0]))) {
      for (const [i, t] of infos.entries()) {
        refs.set(nodes[i].name, {
          location: basename(real[files.indexOf(t.file)]),
          offset: t.offset,
          length: t.byteLength,
        });
      }
      return { refs, modelDir: dirname(real[0]), cleanup: [] };
    }
    if (!linked) {
      for (const [i, f] of files.entries()) await Deno.copyFile(real[i], join(dir, names.get(f)!));
    }
    for (const [i, t] of infos.entries()) {
      refs.set(nodes[i].name, { location: names.get(t.file)!, offset: t.offset, length: t.byteLength });
    }
    return { refs, modelDir: dir, cleanup: [...names.values()].map((n) => join(dir, n)) };
  }
  if (weightCache !== null) {
    // One entry per checkpoint, holding every block's weights, so any --layers_to_extract reuses it.
    const all = graphWeights(buildQwen2Graph(cfg, [cfg.num_hidden_layers - 1])).map((n) => n.name);
    const entry = await cachedF32Weights(weights, all, weightCache, onPhase);
    const refs = new Map(nodes.map((n) => [n.name, entry.refs.get(n.name)!]));
    return { refs, modelDir: entry.dir, cleanup: [] };
  }
  onPhase?.("converting the weights to f32");
  const converted = join(dir, "weights.f32.bin");
  const out = await Deno.open(converted, { write: true, create: true, truncate: true });
  let pos = 0;
  try {
    for (const [i, t] of infos.entries()) {
      const f32 = await weights.read(nodes[i].name);
      const bytes = new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
      await writeAll(out, bytes);
      refs.set(t.name === nodes[i].name ? t.name : nodes[i].name, {
        location: "weights.f32.bin",
        offset: pos,
        length: bytes.length,
      });
      pos += bytes.length;
    }
  } finally {
    out.close();
  }
  return { refs, modelDir: dir, cleanup: [converted] };
}

async function writable(dir: string): Promise<boolean> {
  const probe = join(dir, `.actshard-probe-${Deno.pid}`);
  try {
    await Deno.writeFile(probe, new Uint8Array());
    await Deno.remove(probe);
    return true;
  } catch {
    return false;
  }
}
