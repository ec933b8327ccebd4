/**
 * One independent gzip member (or zstd frame) from a chunk, with the engine asked for. A module of its own,
 * without Worker side effects, so the gzip Worker (gzip_worker.ts), a pool without Workers (codecs.ts) and the
 * read Worker (which imports the codec table) can all import it.
 *
 * @example
 * ```ts
 * import { compressMember } from "./gzip_member.ts";
 * const member = compressMember(new Uint8Array(1000), 6, "zlib-rle");
 * console.log(member[0] === 0x1f && member[1] === 0x8b); // true: a gzip header
 * ```
 */
import { constants, gzipSync as zlibGzipSync, zstdCompressSync } from "node:zlib";
import { gzipSync as fflateGzipSync } from "fflate";

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
