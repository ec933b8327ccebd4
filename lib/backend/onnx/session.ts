/**
 * The main thread's handle on the onnxruntime session that runs in a Worker (session_worker.ts): `create`
 * builds it there, `run` sends one batch and resolves with the requested outputs (transferred, not copied),
 * `release` frees it and ends the Worker. Runs are answered in order; a Worker that dies fails every pending run.
 *
 * @example
 * ```ts
 * import { WorkerSession } from "./session.ts";
 * import { emitOnnx } from "./emit.ts";
 * import { buildQwen2Graph } from "../../model/qwen2.ts";
 * import { loadModelConfig } from "../../model/config.ts";
 * import { CheckpointWeights } from "../../model/safetensors.ts";
 * import { writeTinyModel } from "../../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * // What createOnnxBackend does: the graph as ONNX, its weights read in place from model.safetensors.
 * const weights = await CheckpointWeights.open(dir);
 * const graph = buildQwen2Graph(await loadModelConfig(dir), [1]);
 * await Deno.writeFile(`${dir}/model.onnx`, emitOnnx(graph, (name) => {
 *   const t = weights.info(name);
 *   return { location: "model.safetensors", offset: t.offset, length: t.byteLength };
 * }));
 * weights.close();
 * const ids = Int32Array.from([97, 11, 187]), lengths = Int32Array.from([3]);
 * const s = await WorkerSession.create(`${dir}/model.onnx`, { intraOpNumThreads: 2 });
 * const [layer1] = await s.run(ids, lengths, [1, ids.length], ["layer_1"]);
 * console.log(layer1.length); // 96: [1, 3, hidden 32]
 * await s.release();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type * as ort from "onnxruntime-node";

interface Pending {
  resolve(outs: Float32Array[]): void;
  reject(e: Error): void;
}

/** An onnxruntime session in a Worker thread. */
export class WorkerSession {
  #worker: Worker;
  #pending = new Map<number, Pending>();
  #next = 0;
  #released: ((ok: boolean) => void) | null = null;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  /** Start the Worker and build the session on `modelPath`; rejects with onnxruntime's message. */
  static async create(
    modelPath: string,
    options: ort.InferenceSession.SessionOptions,
  ): Promise<WorkerSession> {
    const worker = new Worker(new URL("./session_worker.ts", import.meta.url), { type: "module" });
    const s = new WorkerSession(worker);
    const ready = new Promise<void>((resolve, reject) => {
      worker.onmessage = (ev: MessageEvent) => {
        if (ev.data.type === "ready") resolve();
        else reject(new Error(ev.data.error ?? "the onnxruntime worker did not start"));
      };
      worker.onerror = (ev: ErrorEvent) => {
        ev.preventDefault();
        reject(new Error(ev.message));
      };
    });
    worker.postMessage({ type: "init", path: modelPath, options });
    try {
      await ready;
    } catch (e) {
      worker.terminate();
      throw e;
    }
    worker.onmessage = (ev: MessageEvent) => s.#onMessage(ev.data);
    worker.onerror = (ev: ErrorEvent) => {
      ev.preventDefault();
      s.#failAll(new Error(`the onnxruntime worker failed: ${ev.message}`));
    };
    return s;
  }

  /** Run one batch; resolves with the outputs `names`, in order. */
  run(
    ids: Int32Array,
    lengths: Int32Array,
    dims: [number, number],
    names: string[],
  ): Promise<Float32Array[]> {
    const id = this.#next++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ type: "run", id, ids, lengths, dims, names });
    });
  }

  /** Release the session and end the Worker. */
  async release(): Promise<void> {
    const done = new Promise<boolean>((r) => (this.#released = r));
    this.#worker.postMessage({ type: "release" });
    await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
    this.#worker.terminate();
    this.#failAll(new Error("the onnxruntime session was released"));
  }

  #onMessage(m: { type: string; id?: number; outs?: Float32Array[]; error?: string }): void {
    if (m.type === "released") {
      this.#released?.(true);
      return;
    }
    if (m.id === undefined) return;
    const p = this.#pending.get(m.id);
    if (!p) return;
    this.#pending.delete(m.id);
    if (m.error !== undefined) p.reject(new Error(m.error));
    else p.resolve(m.outs!);
  }

  #failAll(e: Error): void {
    for (const p of this.#pending.values()) p.reject(e);
    this.#pending.clear();
  }
}
