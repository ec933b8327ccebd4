/**
 * Worker for parallel gzip: compresses one independent gzip member per message, with the engine asked for
 * (`zlib` = Deno's native node:zlib, `fflate` = pure JS). Both emit a fixed header (mtime 0, no name), so the same
 * input always gives the same bytes. Message in: `{id, data, level, engine}`; out: `{id, out}` or `{id, error}`.
 */
import { gzipSync as zlibGzipSync } from "node:zlib";
import { gzipSync as fflateGzipSync } from "fflate";

interface Job {
  id: number;
  data: Uint8Array;
  level: number;
  engine: "zlib" | "fflate";
}

// deno-lint-ignore no-explicit-any
const ctx = self as any;
ctx.onmessage = (ev: MessageEvent<Job>) => {
  const { id, data, level, engine } = ev.data;
  try {
    const out = compressMember(data, level, engine);
    ctx.postMessage({ id, out }, [out.buffer]);
  } catch (e) {
    ctx.postMessage({ id, error: e instanceof Error ? e.message : String(e) });
  }
};

/** One gzip member (also used on the main thread when no worker is wanted). */
export function compressMember(data: Uint8Array, level: number, engine: "zlib" | "fflate"): Uint8Array {
  if (engine === "fflate") {
    // deno-lint-ignore no-explicit-any
    return fflateGzipSync(data, { level: level as any, mtime: 0 });
  }
  const b = zlibGzipSync(data, { level });
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();
}
