/**
 * CRC-32C of a concatenation from the parts' CRCs (zlib's `crc32_combine`, GF(2) matrix method, for the
 * Castagnoli polynomial). Lets the compression Workers checksum their own output in parallel while the file's
 * CRC-32C is still exact.
 *
 * @example
 * ```ts
 * import { crc32cCombine } from "./crc_combine.ts";
 * import { crc32c } from "../util/crc32c.ts";
 * const a = new Uint8Array([1, 2]), b = new Uint8Array([3]);
 * console.log(crc32cCombine(crc32c(a), crc32c(b), b.length) === crc32c(new Uint8Array([1, 2, 3]))); // true
 * ```
 */

function times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
  return sum >>> 0;
}

function square(out: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) out[n] = times(mat, mat[n]);
}

/** CRC-32C of `A ‖ B` given crc(A), crc(B) and |B|. */
export function crc32cCombine(crcA: number, crcB: number, lenB: number): number {
  if (lenB <= 0) return crcA >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0x82f63b78;
  for (let n = 1; n < 32; n++) odd[n] = 1 << (n - 1);
  square(even, odd); // 2 zero bits
  square(odd, even); // 4 zero bits
  let crc = crcA >>> 0;
  let len = lenB;
  for (;;) {
    square(even, odd);
    if (len % 2) crc = times(even, crc);
    len = Math.floor(len / 2);
    if (!len) break;
    square(odd, even);
    if (len % 2) crc = times(odd, crc);
    len = Math.floor(len / 2);
    if (!len) break;
  }
  return (crc ^ crcB) >>> 0;
}
