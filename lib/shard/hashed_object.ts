/**
 * The raw bytes of one object, hashed as they pass to a decoder (verify's one read per shard): size, CRC-32C
 * and SHA-256 always cover every byte of the object, however far the decoder reads.
 *
 * @example
 * ```ts
 * import { hashObject } from "./hashed_object.ts";
 * const bytes = new TextEncoder().encode("a shard's bytes, and some after the decoder's last read");
 * const hashed = hashObject(new Blob([bytes]).stream());
 * const decoder = hashed.stream.getReader();
 * await decoder.read(); // a decoder may stop early, or fail half-way …
 * await decoder.cancel();
 * const h = await hashed.finish(); // … the hashes still cover every byte
 * console.log(h.size === bytes.length, h.crc32c, h.sha256);
 * ```
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { BlobStore } from "../storage/types.ts";
import { Crc32c } from "../util/crc32c.ts";

/** Size and checksums of a whole object. */
export interface Hashes {
  size: number;
  crc32c: number;
  sha256: string;
}

/**
 * The raw bytes of one object, hashed as they pass to the decoder, whatever the decoder does: it may stop at the
 * pickle's STOP opcode or fail half-way, and {@link HashedObject.finish} still reads and hashes the rest, so size,
 * crc32c and sha256 always cover every byte of the object (one read, no second download).
 */
export interface HashedObject {
  /** The bytes for the decoder; cancelling it does not stop the hashing. */
  stream: ReadableStream<Uint8Array>;
  /** Read whatever the decoder left, then the hashes of the whole object. */
  finish(): Promise<Hashes>;
}

/** Hash `raw` as the decoder reads it (see {@link HashedObject}). */
export function hashObject(raw: ReadableStream<Uint8Array>): HashedObject {
  const reader = raw.getReader();
  const crc = new Crc32c();
  const sha = createHash("sha256");
  let size = 0;
  let ended = false;
  let inflight: Promise<unknown> = Promise.resolve();
  const next = async (): Promise<Uint8Array | null> => {
    const r = await reader.read();
    if (r.done) {
      ended = true;
      return null;
    }
    crc.update(r.value);
    sha.update(r.value);
    size += r.value.length;
    return r.value;
  };
  const stream = new ReadableStream<Uint8Array>({
    async pull(ctl) {
      const p = next();
      inflight = p.catch(() => {});
      const chunk = await p;
      try {
        if (chunk) ctl.enqueue(chunk);
        else ctl.close();
      } catch { /* the decoder cancelled meanwhile: the chunk is hashed all the same */ }
    },
    cancel() {/* keep the object open: finish() hashes the rest */},
  }, { highWaterMark: 0 });
  return {
    stream,
    async finish() {
      await inflight;
      while (!ended) await next();
      return { size, crc32c: crc.value(), sha256: sha.digest("hex") };
    },
  };
}

/** A store view whose `openRead` of `name` is the hashed object's stream. */
export function tappedStore(store: BlobStore, name: string, obj: HashedObject): BlobStore {
  return {
    url: store.url,
    list: () => store.list(),
    stat: (n) => store.stat(n),
    read: (n) => store.read(n),
    readRange: (n, a, b) => store.readRange(n, a, b),
    openRead: (n) => n === name ? Promise.resolve(obj.stream) : store.openRead(n),
  };
}
