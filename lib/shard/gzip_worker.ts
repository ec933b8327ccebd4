/**
 * Worker for parallel compression: compresses one independent gzip member (or zstd frame) per message, with the
 * engine asked for (`zlib` = Deno's native node:zlib, `fflate` = pure JS, `zstd` = node:zlib zstd). Both emit a fixed header (mtime 0, no name), so the same
 * input always gives the same bytes. Message in: `{id, data, level, engine}`; out: `{id, out}` or `{id, error}`.
 */
import { constants, gzipSync as zlibGzipSync, zstdCompressSync } from "node:zlib";
import { gzipSync as fflateGzipSync } from "fflate";

interface Job {
  id: number;
  data: Uint8Array;
  level: number;
  engine: "zlib" | "fflate" | "zstd";
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
export function compressMember(
  data: Uint8Array,
  level: number,
  engine: "zlib" | "fflate" | "zstd",
): Uint8Array {
  if (engine === "zstd") {
    const z = zstdCompressSync(data, { params: { [constants.ZSTD_c_compressionLevel]: level } });
    return new Uint8Array(z.buffer, z.byteOffset, z.byteLength).slice();
  }
  if (engine === "fflate") {
    // deno-lint-ignore no-explicit-any
    return fflateGzipSync(data, { level: level as any, mtime: 0 });
  }
  const b = zlibGzipSync(data, { level });
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();
}
