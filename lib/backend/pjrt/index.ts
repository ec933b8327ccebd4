/**
 * The `pjrt` backend: the Qwen2 graph emitted as StableHLO, compiled and run through the PJRT C API (TPU via
 * libtpu.so, GPU via xla_cuda_plugin.so), data parallel over every addressable device unless disabled.
 * Plugin problems surface as one-line {@link ActshardError}s. See docs/pjrt.md.
 *
 * @example
 * ```ts
 * import { createPjrtBackend } from "./index.ts";
 * const backend = await createPjrtBackend("models/qwen", { layers: [0, 12], computeDtype: "float32" });
 * const acts = await backend.forward(batch, [0, 12]); // Map(layer -> Float32Array [batch, seq, hidden])
 * await backend.close();
 * ```
 */
import { ActshardError } from "../../errors.ts";
import type { Backend, TokenBatch } from "../../types.ts";
import { loadModelConfig, type Qwen2Config } from "../../model/config.ts";
import { buildQwen2Graph, validateLayers } from "../../model/qwen2.ts";
import { CheckpointWeights } from "../../model/safetensors.ts";
import { type NamedValue, PjrtApi, PjrtClient, PjrtError, PjrtLoadError } from "../../../native/pjrt/mod.ts";
import { findPjrtPlugin, prepareCudaPlugin } from "./discover.ts";
import type { ComputeDtype } from "./emit.ts";
import { forwardDataParallel, type ReplicaRunner } from "./parallel.ts";
import { PjrtRunner } from "./runner.ts";

export { findPjrtPlugin, pjrtPluginCandidates } from "./discover.ts";
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
  computeDtype?: ComputeDtype;
  /** Plugin-specific `PJRT_Client_Create` options (e.g. `{ preallocate: false }` on GPU). */
  clientOptions?: Record<string, NamedValue>;
  /** Progress/diagnostic lines (default: none). */
  log?: (line: string) => void;
}

/** A {@link Backend} over any {@link ReplicaRunner} (the PJRT one, or the StableHLO evaluator in tests). */
export function createReplicaBackend(
  name: string,
  cfg: Qwen2Config,
  graphLayers: number[],
  runner: ReplicaRunner,
  onClose: () => Promise<void> = () => Promise.resolve(),
): Backend {
  return {
    name,
    hiddenSize: cfg.hidden_size,
    numLayers: cfg.num_hidden_layers,
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

/** Open the plugin, create a client, upload the checkpoint's weights to every device used. */
export async function createPjrtBackend(modelDir: string, opts: PjrtBackendOptions): Promise<Backend> {
  const cfg = await loadModelConfig(modelDir);
  const layers = validateLayers(cfg, opts.layers);
  const graph = buildQwen2Graph(cfg, layers);
  const path = findPjrtPlugin(opts.pluginPath);
  for (const note of prepareCudaPlugin(path)) opts.log?.(note);
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
  let client: PjrtClient;
  try {
    client = PjrtClient.create(api, opts.clientOptions ?? {});
  } catch (e) {
    api.close();
    if (e instanceof PjrtError) {
      throw new ActshardError(
        `PJRT client could not be created: ${e.codeName}: ${e.pjrtMessage.split("\n")[0]}`,
        {
          where: path,
        },
      );
    }
    throw e;
  }
  const devices = opts.dataParallel === false ? client.devices.slice(0, 1) : client.devices;
  if (devices.length === 0) {
    client.close();
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
    );
  } catch (e) {
    client.close();
    api.close();
    throw e instanceof PjrtError
      ? new ActshardError(`uploading weights failed: ${e.message}`, { where: path })
      : e;
  } finally {
    weights.close();
  }
  return createReplicaBackend("pjrt", cfg, layers, runner, () => {
    client.close();
    api.close();
    return Promise.resolve();
  });
}
