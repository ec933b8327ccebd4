import { assertEquals } from "./_assert.ts";
import { encodeActivation, f32ToF16Bits } from "../lib/util/dtype.ts";
import { mulberry32 } from "../lib/util/seeded.ts";

Deno.test("float16 encoding: the inline fast path equals f32ToF16Bits bit for bit (random bits, every rounding edge)", () => {
  const r = mulberry32(17);
  const bits: number[] = [];
  for (let i = 0; i < 1 << 20; i++) bits.push(Math.floor(r() * 2 ** 32) >>> 0);
  // Every exponent, with the mantissas where rounding decides: ties (even/odd), just below/above, all ones.
  for (let exp = 0; exp < 256; exp++) {
    for (const mant of [0, 1, 0xfff, 0x1000, 0x1001, 0x2fff, 0x3000, 0x3001, 0x7fe000, 0x7ff000, 0x7fffff]) {
      for (const sign of [0, 0x80000000]) bits.push((sign | (exp << 23) | mant) >>> 0);
    }
  }
  const values = new Float32Array(new Uint32Array(bits).buffer);
  const got = new Uint16Array(encodeActivation(values, "float16").buffer);
  const want = Uint16Array.from(values, (v) => f32ToF16Bits(v));
  let diff = 0;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) diff++;
  assertEquals(diff, 0);
});
