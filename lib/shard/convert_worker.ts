/**
 * A Worker of the writer's conversion pool (convert_pool.ts): float32 activations → the shard's float16 or
 * bfloat16 bytes, with the one conversion function the writer uses on its own thread (lib/util/dtype.ts), so
 * the bytes are the same either way. Messages: `{id, buf, n, dtype}` (buf transferred, its first n float32) →
 * `{id, out, buf}` (both transferred: the stored bytes, and buf back for reuse) or `{id, error, buf}`.
 */
import { encodeActivation } from "../util/dtype.ts";

// deno-lint-ignore no-explicit-any
const ctx = self as any;
ctx.onmessage = (
  ev: MessageEvent<{ id: number; buf: ArrayBuffer; n: number; dtype: "float16" | "bfloat16" }>,
) => {
  const { id, buf, n, dtype } = ev.data;
  try {
    const out = encodeActivation(new Float32Array(buf, 0, n), dtype);
    ctx.postMessage({ id, out, buf }, [out.buffer, buf]);
  } catch (e) {
    ctx.postMessage({ id, error: e instanceof Error ? e.message : String(e), buf }, [buf]);
  }
};
