/**
 * Stored activation dtypes: conversion between the in-memory float32 and the bytes a shard holds
 * (little-endian float32, IEEE float16, bfloat16). Rounding is round-to-nearest-even, as numpy and torch do.
 *
 * @example
 * ```ts
 * import { encodeActivation, decodeActivation } from "./dtype.ts";
 * const bytes = encodeActivation(new Float32Array([1.5, -2]), "float16"); // 4 bytes
 * console.log(decodeActivation(bytes, "float16")); // Float32Array [1.5, -2]
 * ```
 */
import type { ActivationDType } from "../types.ts";

/** Every stored dtype, in the order flags and tables list them (the formats' registry says which each holds). */
export const ACTIVATION_DTYPES: readonly ActivationDType[] = ["float32", "float16", "bfloat16"];

/** Bytes per stored element. */
export function dtypeSize(dtype: ActivationDType): number {
  return dtype === "float32" ? 4 : 2;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 → IEEE half bits (round to nearest even; overflow → ±Inf; NaN kept). */
export function f32ToF16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h; // a carry into the exponent (even to Inf) is the correct rounding
}

/** float32 → bfloat16 bits (round to nearest even; NaN stays a quiet NaN with its sign), as encodeActivation. */
export function f32ToBf16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0];
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return (x >>> 16) | 0x40;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE half bits → number. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Encode float32 values as the stored dtype's little-endian bytes (float32: a view on `values`, no copy). */
export function encodeActivation(values: Float32Array, dtype: ActivationDType): Uint8Array {
  if (dtype === "float32") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new Uint16Array(values.length);
  if (dtype === "float16") {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < values.length; i++) {
      const x = bits[i];
      const exp = (x >>> 23) & 0xff;
      // Inline fast path for values that are normal halves (exponent 113..142), the bulk of activations: rebias
      // the exponent, then round to nearest even by adding below bit 13 (a carry into the exponent, even to
      // Inf, is the correct rounding, as in f32ToF16Bits). Everything else goes through f32ToF16Bits.
      if (exp >= 113 && exp <= 142) {
        const y = (x & 0x7fffffff) - (112 << 23);
        out[i] = ((x >>> 16) & 0x8000) | ((y + 0x0fff + ((y >>> 13) & 1)) >>> 13);
      } else out[i] = f32ToF16Bits(values[i]);
    }
  } else {
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < values.length; i++) {
      const x = bits[i];
      if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) out[i] = (x >>> 16) | 0x40;
      else out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  }
  return new Uint8Array(out.buffer);
}

/** Buffers {@link decodeOwnedActivation} has already handed out as a result. */
const claimed = new WeakSet<ArrayBufferLike>();

/**
 * {@link decodeActivation} for bytes the decoder read into a buffer of their own (offset 0, the whole buffer):
 * the first call on a buffer takes it as the float32 result without a copy; any later call on the same buffer
 * (a record decoded twice, a pickle that shares one bytes object between arrays) gets a copy, so no two results
 * share memory.
 */
export function decodeOwnedActivation(bytes: Uint8Array, dtype: ActivationDType): Float32Array {
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength &&
    !claimed.has(bytes.buffer);
  const out = decodeActivation(bytes, dtype, own);
  if (out.buffer === bytes.buffer) claimed.add(bytes.buffer);
  return out;
}

/**
 * Decode stored little-endian bytes into float32 values. `owned`: the caller gives `bytes`' buffer away
 * (nothing else uses it), so aligned float32 bytes become the result without a copy.
 */
export function decodeActivation(bytes: Uint8Array, dtype: ActivationDType, owned = false): Float32Array {
  const n = bytes.byteLength / dtypeSize(dtype);
  if (dtype === "float32") {
    if (owned && bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    // Otherwise exactly one copy into a buffer of its own (an unaligned view's slice already is one).
    return new Float32Array(bytes.slice().buffer);
  }
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  const src = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
  const out = new Float32Array(n);
  if (dtype === "float16") {
    for (let i = 0; i < n; i++) out[i] = f16BitsToF32(src[i]);
  } else {
    const o = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o[i] = src[i] << 16;
  }
  return out;
}
