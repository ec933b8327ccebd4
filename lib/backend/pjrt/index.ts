/**
 * The `pjrt` backend: the Qwen2 graph emitted as StableHLO, compiled and run through the PJRT C API (TPU via
 * libtpu.so, GPU via xla_cuda_plugin.so, CPU via an XLA CPU plugin), data parallel over every addressable device
 * unless disabled (an XLA CPU plugin gets one device unless `cpu_device_count` is given). Plugin problems
 * surface as one-line {@link ActshardError}s. See docs/pjrt.md.
 *
 * @example
 * ```ts
 * import { createPjrtBackend, findPjrtPlugin } from "./index.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * // An XLA CPU plugin (CI installs the xla-cpu-pjrt wheel); libtpu or the CUDA plugin run the same way.
 * const pluginPath = findPjrtPlugin(null, Deno.env, { kinds: ["cpu"] });
 * const backend = await createPjrtBackend(dir, { layers: [0, 1], pluginPath, computeDtype: "float32" });
 * const batch = { ids: Int32Array.from([5, 6, 7]), lengths: Int32Array.from([3]), batch: 1, seqLen: 3 };
 * const acts = await backend.forward(batch, [0, 1]); // Map(layer -> Float32Array [batch, seq, hidden])
 * console.log(acts.get(1)!.length); // 96
 * await backend.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { ActshardError, usageError } from "../../errors.ts";
import type { Backend, TokenBatch } from "../../types.ts";
import { loadModelConfig, type Qwen2Config } from "../../model/config.ts";
import { buildQwen2Graph, validateLayers } from "../../model/qwen2.ts";
import { CheckpointWeights } from "../../model/safetensors.ts";
import {
  BINDING_API_VERSION,
  type NamedValue,
  parseCreateOption,
  PjrtApi,
  PjrtClient,
  PjrtError,
  PjrtLoadError,
  PjrtStructSizeError,
} from "../../../native/pjrt/mod.ts";
import { checkTpuHost, findPjrtPlugin, pluginKind, prepareCudaPlugin } from "./discover.ts";
import type { ComputeDtype } from "./emit.ts";
import { forwardDataParallel, type ReplicaRunner } from "./parallel.ts";
import { PjrtRunner } from "./runner.ts";

export {
  checkTpuHost,
  findPjrtPlugin,
  pjrtPluginCandidates,
  type PluginKind,
  pluginKind,
  tpuHardwarePresent,
} from "./discover.ts";
export { type ComputeDtype, emitStableHlo } from "./emit.ts";
export { forwardDataParallel, type ReplicaRunner, seqBucket } from "./parallel.ts";

/** Options of {@link createPjrtBackend}. */
export interface PjrtBackendOptions {
  /** Layers the graph outputs; `forward` may ask for any subset. */
  layers: number[];
  /** `--pjrt_plugin`; null/undefined searches the usual places. */
  pluginPath?: string | null;
  /** Split each batch over all addressable devices (default true). */
  dataParallel?: boolean;
  /** Arithmetic dtype on the device (default float32; activations come back as float32 either way). */
  computeDtype?: ComputeDtype;
  /** Plugin-specific `PJRT_Client_Create` options (e.g. `{ preallocate: false }` on GPU). */
  clientOptions?: Record<string, NamedValue>;
  /** Progress/diagnostic lines (default: none). */
  log?: (line: string) => void;
  /** Let the plugin's own log lines reach stderr (default: only its errors). */
  pluginLogs?: boolean;
}

/**
 * Keep the plugin's own log lines (XLA's `I0000 … cpu_device_count set…`, libtpu's metadata-server retries,
 * the CUDA plugin's `failed call to cuInit` before its error) off the terminal: the variables XLA's and libtpu's
 * loggers read when the plugin is loaded, at FATAL only — every failure still reaches the user as our one line,
 * carrying the plugin's message. A value the user set wins; `--verbose` skips this.
 */
export function quietPluginLogs(): void {
  for (
    const [k, v] of [["TF_CPP_MIN_LOG_LEVEL", "3"], ["TPU_STDERR_LOG_LEVEL", "3"], ["TPU_MIN_LOG_LEVEL", "3"]]
  ) {
    if (Deno.env.get(k) === undefined) Deno.env.set(k, v);
  }
}

/**
 * `--pjrt_option` values as typed create options. The CLI joins a list flag's values with commas, so a piece
 * without "=" continues the previous value (an int64 list such as `visible_devices=0,1`).
 */
export function parsePjrtOptions(joined: string | null | undefined): Record<string, NamedValue> {
  const out: Record<string, NamedValue> = {};
  if (!joined) return out;
  const items: string[] = [];
  for (const piece of joined.split(",")) {
    if (piece.includes("=") || items.length === 0) items.push(piece);
    else items[items.length - 1] += `,${piece}`;
  }
  for (const item of items) {
    try {
      const [k, v] = parseCreateOption(item.trim());
      out[k] = v;
    } catch (e) {
      throw usageError(
        `--pjrt_option: ${(e as Error).message}`,
        "e.g. --pjrt_option cpu_device_count=4 memory_fraction=0.5 my_flag:bool=true",
        "--pjrt_option",
      );
    }
  }
  return out;
}

/** Format a StableHLO version attribute ([1, 9, 3] → "1.9.3"). */
function versionText(v: unknown): string {
  return Array.isArray(v) ? v.join(".") : String(v ?? "?");
}

/** One line for a failed `PJRT_Client_Create` (no TPU / no GPU said in our words, the plugin's reason kept). */
export function clientProblem(e: PjrtError, path: string): ActshardError {
  if (e instanceof PjrtStructSizeError) {
    return new ActshardError(e.message, {
      where: path,
      hint: "use a plugin built for an older PJRT C API, or update native/pjrt/api.ts to the newer header",
      cause: e,
    });
  }
  const first = e.pjrtMessage.split("\n")[0];
  if (pluginKind(path) === "tpu" && (e.codeName === "NOT_FOUND" || /TPU|jellyfish/i.test(first))) {
    return new ActshardError(`no TPU found: run on a TPU VM (libtpu: ${e.codeName}: ${first})`, {
      where: path,
      hint: "on a CPU host use --backend onnx",
      cause: e,
    });
  }
  if (pluginKind(path) === "cuda" && /No visible GPU|cuInit|CUDA/i.test(first)) {
    return new ActshardError(
      `no GPU found: run on a machine with an NVIDIA GPU (CUDA plugin: ${e.codeName}: ${first})`,
      { where: path, hint: "on a CPU host use --backend onnx", cause: e },
    );
  }
  return new ActshardError(`PJRT client could not be created: ${e.codeName}: ${first}`, {
    where: path,
    cause: e,
  });
}

/**
 * Create the client. On an XLA CPU plugin (platform "cpu") without an explicit `cpu_device_count`, the
 * client is made again with one device: XLA's default of 4 CPU "devices" with data parallel on means 4 copies
 * of the weights in RAM sharing the same cores, for no speed-up.
 */
function createClient(api: PjrtApi, options: Record<string, NamedValue>, path: string): PjrtClient {
  try {
    let client = PjrtClient.create(api, options);
    if (client.platformName === "cpu" && client.devices.length > 1 && !("cpu_device_count" in options)) {
      void client.close();
      client = PjrtClient.create(api, { ...options, cpu_device_count: { int64: 1 } });
    }
    return client;
  } catch (e) {
    if (e instanceof PjrtError) throw clientProblem(e, path);
    if (e instanceof TypeError) throw new ActshardError(e.message, { kind: "usage", where: "--pjrt_option" });
    throw e;
  }
}

/** A {@link Backend} over any {@link ReplicaRunner} (the PJRT one, or the StableHLO evaluator in tests). */
export function createReplicaBackend(
  name: string,
  cfg: Qwen2Config,
  graphLayers: number[],
  runner: ReplicaRunner,
  onClose: () => Promise<void> = () => Promise.resolve(),
  concurrentForwards = 1,
): Backend {
  return {
    name,
    hiddenSize: cfg.hidden_size,
    numLayers: cfg.num_hidden_layers,
    concurrentForwards,
    forward(batch: TokenBatch, layers: number[]) {
      return forwardDataParallel(batch, layers, graphLayers, runner, cfg.hidden_size);
    },
    async close() {
      await runner.close();
      await onClose();
    },
  };
}

function loadProblem(e: PjrtLoadError): ActshardError {
  const hint = e.problem === "version" || e.problem === "table"
    ? "use a plugin built for PJRT C API 0.x (jax-cuda13-pjrt / libtpu from 2024 or later)"
    : "check the path, and that the plugin's own libraries are installed";
  return new ActshardError(e.message, { where: e.path, hint, cause: e });
}

/**
 * Open the plugin, create a client, upload the checkpoint's weights to every device used.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { createPjrtBackend, findPjrtPlugin } from "./index.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * const pluginPath = findPjrtPlugin(null, Deno.env, { kinds: ["cpu"] }); // the XLA CPU plugin CI installs
 * const backend = await createPjrtBackend(dir, { layers: [1], pluginPath, dataParallel: false });
 * const batch = { ids: Int32Array.from([5, 6, 7, 0]), lengths: Int32Array.from([2, 1]), batch: 2, seqLen: 2 };
 * const acts = await backend.forward(batch, [1]);
 * assert(acts.get(1)!.length === 2 * 2 * backend.hiddenSize);
 * await backend.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function createPjrtBackend(modelDir: string, opts: PjrtBackendOptions): Promise<Backend> {
  const cfg = await loadModelConfig(modelDir);
  const layers = validateLayers(cfg, opts.layers);
  const graph = buildQwen2Graph(cfg, layers);
  const path = findPjrtPlugin(opts.pluginPath);
  checkTpuHost(path);
  for (const note of prepareCudaPlugin(path)) opts.log?.(note);
  if (!opts.pluginLogs) quietPluginLogs();
  let api: PjrtApi;
  try {
    api = PjrtApi.open(path);
  } catch (e) {
    if (e instanceof PjrtLoadError) throw loadProblem(e);
    if (e instanceof PjrtError) {
      throw new ActshardError(`PJRT plugin failed to initialize: ${e.message}`, { where: path });
    }
    throw e;
  }
  const attrs = api.attributes();
  opts.log?.(
    `pjrt: ${path}: C API ${api.version.major}.${api.version.minor}, StableHLO ${
      versionText(attrs.stablehlo_minimum_version)
    }..${versionText(attrs.stablehlo_current_version)}${
      attrs.xla_version ? `, xla_version ${attrs.xla_version}` : ""
    }${
      api.version.minor > BINDING_API_VERSION.minor
        ? ` (newer than the binding's ${BINDING_API_VERSION.major}.${BINDING_API_VERSION.minor}: ` +
          "our structs are sent at that header's sizes; a refused one is named)"
        : ""
    }`,
  );
  let client: PjrtClient;
  try {
    client = createClient(api, opts.clientOptions ?? {}, path);
  } catch (e) {
    api.close();
    throw e;
  }
  const devices = opts.dataParallel === false ? client.devices.slice(0, 1) : client.devices;
  if (devices.length === 0) {
    await client.close();
    api.close();
    throw new ActshardError("the PJRT plugin reports no addressable devices", { where: path });
  }
  opts.log?.(
    `pjrt: ${client.platformName} ${client.platformVersion}, ${devices.length} device(s) (${
      devices[0].kind
    })`,
  );
  const weights = await CheckpointWeights.open(modelDir);
  let runner: PjrtRunner;
  try {
    runner = await PjrtRunner.create(
      client,
      devices,
      graph,
      (n, s) => weights.read(n, s),
      opts.computeDtype ?? "float32",
      attrs,
    );
  } catch (e) {
    await client.close();
    api.close();
    throw e instanceof PjrtError
      ? new ActshardError(`uploading weights failed: ${e.message}`, { where: path })
      : e;
  } finally {
    weights.close();
  }
  // Two forwards in flight: batch n's device→host copies overlap batch n+1's upload and execute
  // (`ACTSHARD_PJRT_OVERLAP=0` turns it off, e.g. to measure the difference).
  const overlap = Deno.env.get("ACTSHARD_PJRT_OVERLAP") === "0" ? 1 : 2;
  return createReplicaBackend("pjrt", cfg, layers, runner, async () => {
    await client.close();
    api.close();
  }, overlap);
}
