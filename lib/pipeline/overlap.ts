/**
 * The extract job's core loop: forward passes and record writing overlapped in time.
 *
 * Two stages joined by a {@link BoundedQueue}: the forward stage runs batch n+1 on the backend while the write
 * stage cuts batch n's outputs into per-prompt records and hands them to the writer (encode, compress, write,
 * upload). Backends run natively (onnxruntime threads, PJRT devices), so awaiting a forward frees the event loop
 * for the write stage. The queue depth bounds memory: at most `queueDepth + 1 + F` batches of outputs exist at once
 * (F = `backend.concurrentForwards`, default 1, being computed — the PJRT backend runs 2 so one batch's
 * device→host copies overlap the next one's execute —, `queueDepth` waiting, one being cut), plus the batches of
 * the reorder buffer's prompts (records are views into their batch's output; at most one batching window),
 * whatever the shard size.
 *
 * Records reach `write` one prompt at a time in list order (the writer's contract), whatever order batches ran in.
 *
 * @example
 * ```ts
 * import { runBatches } from "./overlap.ts";
 * import { prepareRun } from "./prepare.ts";
 * import { createOnnxBackend } from "../backend/onnx/index.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import type { ExtractConfig } from "../pipeline/config.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 }); // the real vocab: prompts use all of it
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags([
 *   "--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`, "--output_dir", `${dir}/out`,
 *   "--layers_to_extract", "0", "1", "--predictions_per_task", "1",
 * ]) as ExtractConfig;
 * const { items, plan, padId, modelDir } = await prepareRun(config); // prompts, tokens and the batch plan
 * const backend = await createOnnxBackend(modelDir, { layers: [0, 1], weightCacheDir: null });
 * let records = 0;
 * const stats = await runBatches({
 *   items, plan, start: 0, backend, layers: [0, 1], padId, keepPadding: false,
 *   write: async (group) => void (records += group.length), // a ShardWriter's write() in the extract job
 * });
 * console.log(records, stats.forwardSeconds); // 2 records (layers) per prompt
 * await backend.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type { ActivationRecord, Backend, TokenBatch } from "../types.ts";
import { makeTokenBatch, ReorderBuffer } from "./batching.ts";
import { BoundedQueue } from "./queue.ts";

/** One prompt as the loop needs it. */
export interface PromptTokens {
  task_id: string;
  sample_idx: number;
  /** The full prompt text (records keep its first 200 characters). */
  prompt: string;
  input_ids: Int32Array;
}

/** Options for {@link runBatches}. */
export interface RunBatchesOptions {
  /**
   * The prompts the plan's positions index, in `sample_idx` order: the whole run's list (a worker's batches
   * hold prompts of its neighbours as batch partners).
   */
  items: readonly PromptTokens[];
  /** Batches of positions (see `planBatches`, `batchesTouching`); covers every position of `[start, end)`. */
  plan: readonly number[][];
  /**
   * Positions whose records are written: `[start, end)`. `start` is the first position not yet durable (this
   * worker's first prompt, or later after a resume), `end` the end of this worker's range (default: all of
   * `items`). Positions outside are computed with their batch but never written; batches with no position in
   * the range are not run.
   */
  start: number;
  end?: number;
  /** Records (leading layers) of position `start` already durable, dropped before writing (resume). */
  skipRecords?: number;
  backend: Backend;
  layers: number[];
  padId: number;
  /** Store the padded batch length (the seed's behaviour) instead of real tokens only. */
  keepPadding: boolean;
  /** Receives one prompt's records (all layers, ascending), in position order. */
  write(group: ActivationRecord[]): Promise<void>;
  /** Called after each forward pass. */
  onForward?(info: { batch: number; seqLen: number; tokens: number; seconds: number }): void;
  /** Called after a prompt's records were written; `position` is its index in `items` (in `[start, end)`). */
  onWritten?(position: number): void;
  /** Batches of outputs that may wait for the write stage (default 1). */
  queueDepth?: number;
}

/** What the loop did. */
export interface RunBatchesStats {
  batches: number;
  prompts: number;
  /** Real tokens run through the model. */
  tokens: number;
  /** Seconds spent awaiting forward passes (summed per pass: overlapping passes both count). */
  forwardSeconds: number;
  /** Largest number of prompts held in the reorder buffer. */
  maxReorder: number;
}

interface ForwardResult {
  positions: readonly number[];
  tb: TokenBatch;
  out: Map<number, Float32Array>;
}

/**
 * Cut one row of a forward output into records. Activations are views into the backend's output (no copy: a
 * backend hands over fresh buffers per forward, and the writer only reads them); a batch's buffers are freed
 * once its last row is written.
 */
export function recordsForRow(
  item: PromptTokens,
  row: number,
  tb: TokenBatch,
  out: Map<number, Float32Array>,
  layers: number[],
  keepPadding: boolean,
): ActivationRecord[] {
  const n = keepPadding ? tb.seqLen : tb.lengths[row];
  return layers.map((layer) => {
    const all = out.get(layer);
    if (!all) throw new Error(`backend returned no output for layer ${layer}`);
    const hidden = all.length / (tb.batch * tb.seqLen);
    const off = row * tb.seqLen * hidden;
    return {
      task_id: item.task_id,
      sample_idx: item.sample_idx,
      layer,
      activation: all.subarray(off, off + n * hidden),
      shape: [n, hidden] as [number, number],
      prompt: item.prompt.slice(0, 200),
    };
  });
}

/** Run every batch of `plan` that has positions in `[start, end)`, overlapping forwards with writes. */
export async function runBatches(o: RunBatchesOptions): Promise<RunBatchesStats> {
  const end = o.end ?? o.items.length;
  const loop: Loop = {
    o,
    end,
    written: (p: number) => p >= o.start && p < end,
    layers: [...o.layers].sort((a, b) => a - b),
    queue: new BoundedQueue<ForwardResult>(o.queueDepth ?? 1),
    stats: { batches: 0, prompts: 0, tokens: 0, forwardSeconds: 0, maxReorder: 0 },
  };
  const results = await Promise.allSettled([forwardStage(loop), writeStage(loop)]);
  const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult | undefined;
  if (failed) throw failed.reason;
  return loop.stats;
}

/** What the two stages of one {@link runBatches} share. */
interface Loop {
  o: RunBatchesOptions;
  end: number;
  /** Whether position `p` is written (in `[start, end)`). */
  written: (p: number) => boolean;
  /** Ascending. */
  layers: number[];
  queue: BoundedQueue<ForwardResult>;
  stats: RunBatchesStats;
}

/**
 * Forward the batches holding written positions, in plan order, keeping up to the backend's
 * `concurrentForwards` in flight, and push their outputs into the queue in plan order.
 */
async function forwardStage(loop: Loop): Promise<void> {
  const { o, queue } = loop;
  // Forwards in flight at once (PJRT: 2, so batch n's device→host copies overlap batch n+1's execute); results
  // are pushed in plan order, so at most `inFlight + queueDepth + 1` batches of outputs exist at once.
  const inFlight = Math.max(1, Math.min(o.backend.concurrentForwards ?? 1, 4));
  const running: Promise<ForwardResult>[] = [];
  try {
    for (const positions of o.plan) {
      // A partly durable batch, or one shared with a neighbouring worker, is still run whole: the same
      // partners and padded shapes as the uninterrupted, single-host run.
      if (!positions.some(loop.written)) continue;
      const next = forwardBatch(loop, positions);
      next.catch(() => {}); // handled below (awaited in order); not an unhandled rejection meanwhile
      running.push(next);
      if (running.length >= inFlight) await queue.push(await running.shift()!);
    }
    while (running.length) await queue.push(await running.shift()!);
    queue.close();
  } catch (e) {
    await Promise.allSettled(running); // let the other forward in flight finish before failing
    queue.fail(e);
    throw e;
  }
}

/** One forward pass over the prompts at `positions`, counted in the stats and reported to `onForward`. */
async function forwardBatch(loop: Loop, positions: readonly number[]): Promise<ForwardResult> {
  const { o, stats } = loop;
  const tb = makeTokenBatch(positions.map((p) => o.items[p].input_ids), o.padId);
  const t = performance.now();
  const out = await o.backend.forward(tb, loop.layers);
  const seconds = (performance.now() - t) / 1000;
  const tokens = tb.lengths.reduce((s, x) => s + x, 0);
  stats.forwardSeconds += seconds;
  stats.tokens += tokens;
  stats.batches++;
  o.onForward?.({ batch: tb.batch, seqLen: tb.seqLen, tokens, seconds });
  return { positions, tb, out };
}

/** Cut each batch's written rows into records and hand them to `write` one prompt at a time, in list order. */
async function writeStage(loop: Loop): Promise<void> {
  const { o, queue, stats } = loop;
  const reorder = new ReorderBuffer<{ position: number; group: ActivationRecord[] }>(o.start);
  try {
    for await (const r of queue) {
      r.positions.forEach((p, row) => {
        if (loop.written(p)) {
          const group = recordsForRow(o.items[p], row, r.tb, r.out, loop.layers, o.keepPadding);
          reorder.put(p, { position: p, group });
        }
      });
      stats.maxReorder = Math.max(stats.maxReorder, reorder.size);
      for (const { position, group } of reorder.take()) {
        await o.write(position === o.start && o.skipRecords ? group.slice(o.skipRecords) : group);
        stats.prompts++;
        o.onWritten?.(position);
      }
    }
    if (reorder.size > 0) throw new Error(`reorder buffer: ${reorder.size} prompts never became writable`);
    if (reorder.next < loop.end) throw new Error(`batch plan: position ${reorder.next} is in no batch`);
  } catch (e) {
    queue.fail(e);
    throw e;
  }
}
