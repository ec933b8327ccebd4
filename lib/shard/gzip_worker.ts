/**
 * Worker for parallel compression: compresses one independent gzip member (or zstd frame) per message, with the
 * engine asked for (see {@link CompressEngine}). The gzip engines emit a fixed header (mtime 0, no name), so the
 * same input always gives the same bytes.
 * Message in: `{id, data, level, engine}`; out: `{id, out, crc, input}` (crc = CRC-32C of `out`; `input` is
 * handed back for reuse) or `{id, error}`.
 */
import { crc32c } from "../util/crc32c.ts";
import { type CompressEngine, compressMember } from "./gzip_member.ts";

export { type CompressEngine, compressMember } from "./gzip_member.ts";

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
