/**
 * Worker for parallel compression: compresses one independent gzip member (or zstd frame) per message, with the
 * engine asked for (see {@link CompressEngine}). The gzip engines emit a fixed header (mtime 0, no name), so the
 * same input always gives the same bytes.
 * Message in: `{id, data, level, engine}`; out: `{id, out, crc, input}` (crc = CRC-32C of `out`; `input` is
 * handed back for reuse) or `{id, error}`.
 */
import { constants, gzipSync as zlibGzipSync, zstdCompressSync } from "node:zlib";
import { gzipSync as fflateGzipSync } from "fflate";
import { crc32c } from "../util/crc32c.ts";

interface Job {
  id: number;
  data: Uint8Array;
  level: number;
  engine: CompressEngine;
}

// deno-lint-ignore no-explicit-any
const ctx = self as any;
ctx.onmessage = (ev: MessageEvent<Job>) => {
  const { id, data, level, engine } = ev.data;
  try {
    const out = compressMember(data, level, engine);
    // The input goes back too, so the main thread can reuse it (no garbage per chunk).
    ctx.postMessage({ id, out, crc: crc32c(out), input: data }, [out.buffer, data.buffer]);
  } catch (e) {
    ctx.postMessage({ id, error: e instanceof Error ? e.message : String(e) });
  }
};

/**
 * Compression engines: `zlib-rle` = node:zlib deflate with the Z_RLE strategy (same ratio as the default strategy
 * on float activations, ≈3× faster: their redundancy is in exponent bytes and zero runs, not long matches),
 * `zlib` = node:zlib default strategy, `fflate` = pure JS, `zstd` = node:zlib zstd.
 */
export type CompressEngine = "zlib-rle" | "zlib" | "fflate" | "zstd";

/** One gzip member / zstd frame (also used on the main thread when no worker is wanted). */
export function compressMember(data: Uint8Array, level: number, engine: CompressEngine): Uint8Array {
  if (engine === "zstd") {
    const z = zstdCompressSync(data, { params: { [constants.ZSTD_c_compressionLevel]: level } });
    return owned(z);
  }
  if (engine === "fflate") {
    // deno-lint-ignore no-explicit-any
    return fflateGzipSync(data, { level: level as any, mtime: 0 });
  }
  return owned(
    zlibGzipSync(data, { level, ...(engine === "zlib-rle" ? { strategy: constants.Z_RLE } : {}) }),
  );
}

/** A Uint8Array that owns its whole buffer (transferable without copying when it already does). */
function owned(b: Uint8Array): Uint8Array {
  const v = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? v : v.slice();
}
