/**
 * Buffers of exact sizes kept for reuse, between whoever gives a buffer up and whoever needs one of that size:
 * in the `shard` stage, the file sink gives back the activation arrays it was handed (once written and hashed)
 * and the reader takes them for the next records' arrays (byte_source.ts's `takeOwned`). A new array is not
 * free: its memory is zeroed, faulted in page by page (the kernel's time), and counted as new external memory
 * of its isolate, which sets off V8's full GCs. Records of one prompt share a size (one per layer), so most
 * come back in time for the prompt's later layers. Bounded ({@link REUSABLE_BYTES}), and kept only for sizes
 * that were asked for (a process that gives buffers nobody takes, such as an extract writing float16 through its
 * conversion pool, keeps none); a buffer given here must not be used by its giver again.
 *
 * @example
 * ```ts
 * import { giveBuffer, takeBuffer } from "./reusable_buffers.ts";
 * const a = takeBuffer(1024); // new: nothing of that size was given yet (the size is now asked for)
 * giveBuffer(a);
 * console.log(takeBuffer(1024) === a, takeBuffer(1024) === a); // true false
 * ```
 */

/** Bytes kept at most (beyond that a given buffer is left to the GC). */
export const REUSABLE_BYTES = 64 << 20;

const bySize = new Map<number, Uint8Array[]>();
let kept = 0;
/** Sizes {@link takeBuffer} was asked for (forgotten all at once past {@link ASKED_SIZES}). */
const asked = new Set<number>();
const ASKED_SIZES = 1024;

/** A buffer of exactly `n` bytes (offset 0, the whole of its ArrayBuffer): a reused one if any, else new. */
export function takeBuffer(n: number): Uint8Array {
  markAsked(n);
  const list = bySize.get(n);
  const b = list?.pop();
  if (!b) return new Uint8Array(n);
  if (list!.length === 0) bySize.delete(n);
  kept -= n;
  return b;
}

/**
 * A reused buffer of exactly `n` bytes, or undefined where none was given back (nothing is allocated); the size
 * counts as asked for, as with {@link takeBuffer}.
 *
 * @example
 * ```ts
 * import { giveBuffer, takeReusedBuffer } from "./reusable_buffers.ts";
 * console.log(takeReusedBuffer(2048)); // undefined (and 2048 is now kept when given)
 * giveBuffer(new Uint8Array(2048));
 * console.log(takeReusedBuffer(2048)?.length); // 2048
 * ```
 */
export function takeReusedBuffer(n: number): Uint8Array | undefined {
  if (bySize.has(n)) return takeBuffer(n);
  markAsked(n);
  return undefined;
}

function markAsked(n: number): void {
  if (asked.has(n)) return;
  if (asked.size >= ASKED_SIZES) asked.clear();
  asked.add(n);
}

/**
 * Keep `b` (a whole ArrayBuffer, not detached) for a later {@link takeBuffer} of its size, while there is room
 * and that size has been asked for.
 */
export function giveBuffer(b: Uint8Array): void {
  const n = b.byteLength;
  if (n === 0 || b.byteOffset !== 0 || n !== b.buffer.byteLength || kept + n > REUSABLE_BYTES) return;
  if (!asked.has(n)) return;
  const list = bySize.get(n);
  if (list) list.push(b);
  else bySize.set(n, [b]);
  kept += n;
}
