/**
 * `.npy` writer (NPY format 1.0) for `read --out`: one float32 (or float16) array that `numpy.load` reads.
 *
 * @example
 * ```ts
 * import { encodeNpy } from "./npy.ts";
 * const bytes = encodeNpy(new Float32Array([1, 2, 3, 4]), [2, 2]);
 * const path = await Deno.makeTempFile({ suffix: ".npy" }); // e.g. `read --out a.npy`
 * await Deno.writeFile(path, bytes); // numpy.load(path) → float32 [[1, 2], [3, 4]]
 * await Deno.remove(path);
 * ```
 */

/** A complete .npy file holding `values` (little-endian float32) with `shape`. */
export function encodeNpy(values: Float32Array, shape: readonly number[]): Uint8Array {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${dims}), }`;
  const total = 10 + dict.length + 1;
  dict += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const head = new TextEncoder().encode(dict);
  const out = new Uint8Array(10 + head.length + values.byteLength);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  out[8] = head.length & 0xff;
  out[9] = head.length >>> 8;
  out.set(head, 10);
  out.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), 10 + head.length);
  return out;
}
