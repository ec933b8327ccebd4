/**
 * Types shared across pipeline stages (see docs/architecture.md). Each stage lives in its own folder of `lib/`;
 * these are the contracts between them.
 */

/** Activation dtypes a shard can store. Records are always handed around as float32 in memory. */
export type ActivationDType = "float32" | "float16" | "bfloat16";

/**
 * One activation record: the residual stream of one prompt after one decoder block
 * (HF `hidden_states[layer + 1]`), every stored token.
 */
export interface ActivationRecord {
  /** The ARC task id the prompt came from. */
  task_id: string;
  /** Global prompt index in the run's prompt list (independent of batching and workers). */
  sample_idx: number;
  /** Decoder block index (0-based): the residual stream after this block. */
  layer: number;
  /** Row-major `[n_tokens, hidden]`, float32 in memory whatever the stored dtype. */
  activation: Float32Array;
  /** `[n_tokens, hidden]`. */
  shape: [number, number];
  /** The first 200 characters of the prompt. */
  prompt: string;
  /** Other descriptive keys found in a record (e.g. the seed's `text_preview`), carried through unchanged. */
  extra?: Record<string, unknown>;
}

/** A right-padded batch of token ids, as handed to a backend. */
export interface TokenBatch {
  /** `[batch, seqLen]` row-major, padded with `padId`. */
  ids: Int32Array;
  /** Real (unpadded) length of each row. */
  lengths: Int32Array;
  /** Number of rows. */
  batch: number;
  /** Padded row length (columns of `ids`). */
  seqLen: number;
}

/** A model runner: onnx (CPU) or pjrt (TPU/GPU). */
export interface Backend {
  /** `onnx` or `pjrt` (with the plugin kind), as printed in progress lines. */
  readonly name: string;
  /** The model's hidden size: the last dimension of every activation. */
  readonly hiddenSize: number;
  /** Number of decoder blocks; valid layers are `0 .. numLayers - 1`. */
  readonly numLayers: number;
  /**
   * Run one padded batch; returns, per requested layer, a Float32Array `[batch, seqLen, hidden]`
   * (the residual stream after that decoder block). Real tokens' values never depend on padding. The arrays
   * stay valid after later calls (records are views into them until written): a backend must not reuse them.
   */
  forward(batch: TokenBatch, layers: number[]): Promise<Map<number, Float32Array>>;
  /**
   * How many `forward` calls may usefully be in flight at once (default 1). The PJRT backend says 2: the
   * device→host copies of batch n then overlap the upload and execute of batch n+1 (the extract loop keeps at
   * most this many running, so memory stays bounded).
   */
  readonly concurrentForwards?: number;
  /** Release the session, device buffers and workers; the backend is unusable afterwards. */
  close(): Promise<void>;
}
