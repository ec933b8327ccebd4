/**
 * Staging: bytes of any size copied into fixed-size buffers, each handed on when full — the one write loop of
 * the none/gzip chunker (codecs.ts) and both zstd engines (zstd_mt.ts, zstd_stream.ts).
 *
 * @example
 * ```ts
 * import { type Stage, stageBytes } from "./staging.ts";
 * const full: number[] = [];
 * const st: Stage = { buf: new Uint8Array(4), n: 0 };
 * const next = () => (full.push(st.n), st.buf = new Uint8Array(4), st.n = 0, Promise.resolve());
 * await stageBytes(st, new Uint8Array(10), next);
 * console.log(full, st.n); // [4, 4] 2
 * ```
 */

/** A staging buffer and how many of its bytes are filled. */
export interface Stage {
  buf: Uint8Array;
  n: number;
}

/**
 * Copy `chunk` into `stage.buf` from `stage.n` on; each time the buffer fills, await `full()`, which hands it on
 * and puts a fresh buffer (and `n = 0`) in `stage`.
 */
export async function stageBytes(stage: Stage, chunk: Uint8Array, full: () => Promise<void>): Promise<void> {
  let off = 0;
  while (off < chunk.length) {
    const k = Math.min(chunk.length - off, stage.buf.length - stage.n);
    stage.buf.set(chunk.subarray(off, off + k), stage.n);
    stage.n += k;
    off += k;
    if (stage.n === stage.buf.length) await full();
  }
}
