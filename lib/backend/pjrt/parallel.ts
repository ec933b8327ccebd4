/**
 * Data parallel over replicas, independent of PJRT: a padded batch is bucketed in sequence length, split into
 * contiguous row blocks (one per replica, padded with dummy rows to equal size), run, and gathered back in
 * prompt order with the sequence bucket sliced off. Because rows never interact (attention is per row; every
 * other op is per token) and padding is on the right, the records equal a single-replica run's.
 *
 * A {@link ReplicaRunner} does the running: PJRT devices in production (runner.ts), the StableHLO evaluator in
 * tests — so this logic is tested numerically without an accelerator.
 *
 * @example
 * ```ts
 * import { forwardDataParallel, seqBucket } from "./parallel.ts";
 * console.log(seqBucket(100)); // 128
 * // const out = await forwardDataParallel(batch, [0, 2], [0, 2], runner, hidden);
 * ```
 */
import type { TokenBatch } from "../../types.ts";

/** Inputs of one replica. */
export interface ReplicaInput {
  ids: Int32Array;
  lengths: Int32Array;
}

/** Runs the compiled graph for one (per-replica batch, seq) shape on every replica at once. */
export interface ReplicaRunner {
  /** Number of replicas every call runs (devices). */
  readonly replicas: number;
  /** `inputs[r]` for replica r; returns `[replica][graph output]`, each `[batch, seq, hidden]` f32. */
  run(shape: { batch: number; seq: number }, inputs: ReplicaInput[]): Promise<Float32Array[][]>;
  close(): Promise<void>;
}

/** Sequence bucket: powers of two from 16 up to 256, then multiples of 256 (bounds recompilation). */
export function seqBucket(seqLen: number): number {
  if (seqLen <= 256) {
    let b = 16;
    while (b < seqLen) b *= 2;
    return b;
  }
  return Math.ceil(seqLen / 256) * 256;
}

/** Token id used for padding rows and positions the model never reads. */
const PAD_ID = 0;

/**
 * Split `batch` over `runner.replicas`, run, and gather `[batch, seqLen, hidden]` per requested layer.
 * `graphLayers` are the layers the graph outputs (sorted); `layers` must be a subset of them.
 */
export async function forwardDataParallel(
  batch: TokenBatch,
  layers: number[],
  graphLayers: number[],
  runner: ReplicaRunner,
  hidden: number,
): Promise<Map<number, Float32Array>> {
  const { batch: B, seqLen: S } = batch;
  const R = runner.replicas;
  const per = Math.max(1, Math.ceil(B / R));
  const SB = seqBucket(S);
  const inputs: ReplicaInput[] = [];
  for (let r = 0; r < R; r++) {
    const ids = new Int32Array(per * SB).fill(PAD_ID);
    const lengths = new Int32Array(per).fill(1); // dummy rows: one pad token each
    for (let i = 0; i < per; i++) {
      const b = r * per + i;
      if (b >= B) break;
      ids.set(batch.ids.subarray(b * S, (b + 1) * S), i * SB);
      lengths[i] = batch.lengths[b];
    }
    inputs.push({ ids, lengths });
  }
  const outs = await runner.run({ batch: per, seq: SB }, inputs);
  const result = new Map<number, Float32Array>();
  for (const layer of layers) {
    const k = graphLayers.indexOf(layer);
    if (k < 0) throw new Error(`layer ${layer} was not built into this backend (built: ${graphLayers})`);
    const dst = new Float32Array(B * S * hidden);
    for (let b = 0; b < B; b++) {
      const r = Math.floor(b / per), i = b % per;
      const src = outs[r][k];
      dst.set(src.subarray(i * SB * hidden, (i * SB + S) * hidden), b * S * hidden);
    }
    result.set(layer, dst);
  }
  return result;
}
