/**
 * Backend selection for the extract job: `--backend onnx` (onnxruntime-node on CPU), `pjrt` (a PJRT plugin:
 * libtpu, the CUDA plugin, or an XLA CPU plugin), or `auto` (pjrt when an accelerator plugin — TPU with TPU
 * hardware present, CUDA — is found, else onnx: measured on CPU, onnxruntime is faster than XLA-CPU, see
 * docs/pjrt.md). Backends are imported lazily so
 * a CPU run never loads the FFI binding and vice versa.
 *
 * @example
 * ```ts
 * import { createBackend } from "./backend_select.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import type { ExtractConfig } from "./config.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 }); // the real vocab: prompts use all of it
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags([
 *   "--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`, "--output_dir", `${dir}/out`,
 *   "--layers_to_extract", "0", "1", "--predictions_per_task", "1",
 * ]) as ExtractConfig;
 * const backend = await createBackend(config, `${dir}/model`, [0, 1], console.error); // --backend onnx (default)
 * console.log(backend.name, backend.numLayers);
 * await backend.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type { ExtractConfig } from "./config.ts";
import type { Backend } from "../types.ts";

/** Which backend `config.backend` means on this machine (`auto`: pjrt when an accelerator plugin is found). */
export async function chooseBackend(config: ExtractConfig): Promise<"onnx" | "pjrt"> {
  if (config.backend !== "auto") return config.backend;
  const { findPjrtPlugin } = await import("../backend/pjrt/index.ts");
  try {
    // an explicit --pjrt_plugin is taken as given; a search looks for accelerators only
    findPjrtPlugin(config.pjrt_plugin, Deno.env, { kinds: ["tpu", "cuda"] });
    return "pjrt";
  } catch {
    return "onnx";
  }
}

/**
 * Create the backend the config asks for, compiled for `layers`. `onPhase` hears what start-up is doing
 * (converting weights, building the session) for the progress line.
 */
export async function createBackend(
  config: ExtractConfig,
  modelDir: string,
  layers: number[],
  log?: (line: string) => void,
  onPhase?: (text: string) => void,
): Promise<Backend> {
  if ((await chooseBackend(config)) === "pjrt") {
    const { createPjrtBackend, parsePjrtOptions } = await import("../backend/pjrt/index.ts");
    return await createPjrtBackend(modelDir, {
      layers,
      pluginPath: config.pjrt_plugin,
      clientOptions: parsePjrtOptions(config.pjrt_option),
      pluginLogs: config.verbose,
      dataParallel: !config.no_data_parallel,
      computeDtype: config.compute_dtype,
      log: config.verbose ? log : undefined,
    });
  }
  const { createOnnxBackend } = await import("../backend/onnx/index.ts");
  return await createOnnxBackend(modelDir, { layers, onPhase });
}
