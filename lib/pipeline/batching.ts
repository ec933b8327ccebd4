/**
 * Batching for the extract job: which prompts share a forward pass, and in what order the passes run.
 *
 * Records never depend on the batching: a record is one prompt's real tokens (the backend contract says real
 * tokens' values do not depend on padding), keyed by its global `sample_idx`. Batching only decides how much
 * padding the forward pass wastes. Length-aware batching sorts prompts by length inside a window of
 * `window × batchSize` consecutive prompts (so the reorder buffer that restores `sample_idx` order before the
 * writer holds at most one window), and runs the window's batches in order of their first prompt.
 *
 * The plan is a pure function of the prompt list, so a resumed run rebuilds exactly the same batches (same
 * padded shapes, hence the same bytes under `--keep_padding` and the same numerics everywhere) and merely skips
 * the prompts that are already durable. It is always planned over the WHOLE run's prompt list, also by a worker
 * of an N-host run, which then runs the batches holding at least one of its prompts ({@link batchesTouching}):
 * every prompt gets the same batch partners as in a single-host run, so its records are bit-identical to that
 * run's (onnxruntime's last bits depend on the partners, and under `--keep_padding` the stored shape does).
 * The price is the batches straddling a worker boundary, computed by both neighbours ({@link partnerCost}).
 *
 * @example
 * ```ts
 * import { planBatches } from "./batching.ts";
 * const plan = planBatches([5, 90, 7, 80], { batchSize: 2, window: 2 });
 * // [[0, 2], [1, 3]]: short prompts together, long prompts together (positions in the prompt list)
 * batchesTouching(plan, 2, 4); // [[0, 2], [1, 3]]: a worker owning positions 2-3 runs both (with 0 and 1)
 * ```
 */
import type { TokenBatch } from "../types.ts";

/** Options for {@link planBatches}. */
export interface BatchPlanOptions {
  /** Prompts per forward pass (`--batch_size`). */
  batchSize: number;
  /**
   * Sort window in batches: 1 = consecutive prompts in order (the seed's batching, used with
   * `--keep_padding`); larger windows waste less padding but hold more records in the reorder buffer.
   */
  window: number;
}

/**
 * Group positions `0..lengths.length-1` of the prompt list into batches. Within each window the positions are
 * sorted by length (ties by position); batches are returned in order of their smallest position, and each
 * batch's positions are ascending.
 */
export function planBatches(lengths: readonly number[], opts: BatchPlanOptions): number[][] {
  const bs = Math.max(1, Math.floor(opts.batchSize));
  const span = bs * Math.max(1, Math.floor(opts.window));
  const out: number[][] = [];
  for (let start = 0; start < lengths.length; start += span) {
    const end = Math.min(lengths.length, start + span);
    const pos = Array.from({ length: end - start }, (_, i) => start + i);
    pos.sort((a, b) => lengths[a] - lengths[b] || a - b);
    const batches: number[][] = [];
    for (let i = 0; i < pos.length; i += bs) batches.push(pos.slice(i, i + bs).sort((a, b) => a - b));
    batches.sort((a, b) => a[0] - b[0]);
    out.push(...batches);
  }
  return out;
}

/**
 * The batches of a whole-run `plan` that hold at least one position in `[first, end)` (a worker's own
 * prompts), in plan order. Positions outside the range are the batch partners the worker computes but does not
 * write.
 */
export function batchesTouching(plan: readonly number[][], first: number, end: number): number[][] {
  return plan.filter((b) => b.some((p) => p >= first && p < end));
}

/** What running a worker's batches costs beyond its own prompts (see {@link partnerCost}). */
export interface PartnerCost {
  /** Batches that hold positions outside the worker's range (shared with a neighbouring worker). */
  batches: number;
  /** Prompts computed only as batch partners (not written by this worker). */
  prompts: number;
  /** Their real tokens. */
  tokens: number;
}

/** The partner rows of `batches` (positions outside `[first, end)`), with `lengths` the prompt lengths. */
export function partnerCost(
  batches: readonly number[][],
  first: number,
  end: number,
  lengths: readonly number[],
): PartnerCost {
  const cost: PartnerCost = { batches: 0, prompts: 0, tokens: 0 };
  for (const b of batches) {
    const outside = b.filter((p) => p < first || p >= end);
    if (outside.length === 0) continue;
    cost.batches++;
    cost.prompts += outside.length;
    cost.tokens += outside.reduce((s, p) => s + lengths[p], 0);
  }
  return cost;
}

/** Right-pad the given token sequences into one {@link TokenBatch} (seqLen = the longest). */
export function makeTokenBatch(seqs: readonly Int32Array[], padId: number): TokenBatch {
  const batch = seqs.length;
  let seqLen = 1;
  for (const s of seqs) seqLen = Math.max(seqLen, s.length);
  const ids = new Int32Array(batch * seqLen).fill(padId);
  const lengths = new Int32Array(batch);
  seqs.forEach((s, b) => {
    ids.set(s, b * seqLen);
    lengths[b] = s.length;
  });
  return { ids, lengths, batch, seqLen };
}

/**
 * Restores list order for results that complete out of order: `put(position, value)` stores a value,
 * `take()` returns the values that are now contiguous from the next expected position.
 */
export class ReorderBuffer<T> {
  #next: number;
  #pending = new Map<number, T>();

  /** @param start the first position expected (after a resume, the first prompt not yet durable). */
  constructor(start = 0) {
    this.#next = start;
  }

  /** Values waiting for an earlier position. */
  get size(): number {
    return this.#pending.size;
  }

  /** The next position {@link take} will return. */
  get next(): number {
    return this.#next;
  }

  put(position: number, value: T): void {
    if (position < this.#next || this.#pending.has(position)) {
      throw new Error(`reorder buffer: position ${position} given twice`);
    }
    this.#pending.set(position, value);
  }

  /** Values at positions next, next+1, … that are present, removed from the buffer. */
  take(): T[] {
    const out: T[] = [];
    while (this.#pending.has(this.#next)) {
      out.push(this.#pending.get(this.#next)!);
      this.#pending.delete(this.#next++);
    }
    return out;
  }
}
