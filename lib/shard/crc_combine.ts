/**
 * CRC-32C of a concatenation from the parts' CRCs (zlib's `crc32_combine`, for the Castagnoli polynomial). Lets
 * the file sink's CRC pool and the compression Workers checksum chunks in parallel while the file's CRC-32C is
 * still exact: the sink only combines, in file order.
 *
 * The method is zlib 1.2.12's (multiplication modulo the polynomial by x^(8·len), from a table of x^(2^k)):
 * ≈ 1 µs per combine, so combining every 256 KiB chunk of a file costs the serial sink nothing measurable (the
 * GF(2) matrix-squaring method it replaces took ≈ 20–50 µs per call).
 *
 * @example
 * ```ts
 * import { crc32cCombine } from "./crc_combine.ts";
 * import { crc32c } from "../util/crc32c.ts";
 * const a = new Uint8Array([1, 2]), b = new Uint8Array([3]);
 * console.log(crc32cCombine(crc32c(a), crc32c(b), b.length) === crc32c(new Uint8Array([1, 2, 3]))); // true
 * ```
 */

/** CRC-32C polynomial, reflected. */
const POLY = 0x82f63b78;

/** a(x)·b(x) modulo the polynomial (reflected bit order: bit 31 is x^0). */
function multModP(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** X2N[k] = x^(2^k) modulo the polynomial. */
const X2N: Uint32Array = (() => {
  const t = new Uint32Array(32);
  let p = 1 << 30; // x^1
  t[0] = p;
  for (let n = 1; n < 32; n++) t[n] = p = multModP(p, p);
  return t;
})();

/** x^(n·2^k) modulo the polynomial. */
function x2nModP(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n) {
    if (n % 2) p = multModP(X2N[k & 31], p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** CRC-32C of `A ‖ B` given crc(A), crc(B) and |B|. */
export function crc32cCombine(crcA: number, crcB: number, lenB: number): number {
  if (lenB <= 0) return crcA >>> 0;
  return (multModP(x2nModP(lenB, 3), crcA >>> 0) ^ crcB) >>> 0;
}
