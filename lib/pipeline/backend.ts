/**
 * Backend selection for the extract job: `--backend onnx` (onnxruntime-node on CPU), `pjrt` (a PJRT plugin:
 * libtpu or the CUDA plugin), or `auto` (pjrt when a plugin is found, else onnx). Backends are imported lazily so
 * a CPU run never loads the FFI binding and vice versa.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend.ts";
 * const backend = await createBackend(config, "/models/qwen", [10, 11]);
 * ```
 */
import type { ExtractConfig } from "../cli/extract_flags.ts";
import { ActshardError } from "../errors.ts";
import type { Backend } from "../types.ts";

/** Which backend `config.backend` means on this machine. */
export async function chooseBackend(
  config: ExtractConfig,
): Promise<{ kind: "onnx" | "pjrt"; plugin: string | null }> {
  if (config.backend === "onnx") return { kind: "onnx", plugin: null };
  const pjrt = await import("../backend/pjrt/index.ts").catch(() => null);
  const plugin = pjrt ? await pjrt.findPjrtPlugin(config.pjrt_plugin) : null;
  if (config.backend === "pjrt" && !plugin) {
    throw new ActshardError("no PJRT plugin found", {
      where: "--backend pjrt",
      hint:
        "pass --pjrt_plugin PATH or set PJRT_PLUGIN_LIBRARY_PATH / TPU_LIBRARY_PATH (or use --backend onnx)",
    });
  }
  return plugin ? { kind: "pjrt", plugin } : { kind: "onnx", plugin: null };
}

/** Create the backend the config asks for, compiled for `layers`. */
export async function createBackend(
  config: ExtractConfig,
  modelDir: string,
  layers: number[],
): Promise<Backend> {
  const choice = await chooseBackend(config);
  if (choice.kind === "pjrt") {
    const { createPjrtBackend } = await import("../backend/pjrt/index.ts");
    return await createPjrtBackend(modelDir, {
      layers,
      pluginPath: choice.plugin,
      dataParallel: !config.no_data_parallel,
      computeDtype: config.compute_dtype,
    });
  }
  const { createOnnxBackend } = await import("../backend/onnx/index.ts");
  return await createOnnxBackend(modelDir, { layers });
}
