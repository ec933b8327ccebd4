/**
 * The writer's float16/bfloat16 conversion pool (lib/shard/convert_pool.ts) gives the bytes of the one
 * conversion function (lib/util/dtype.ts) for every kind of float32: normals, halfway ties, subnormals, zeros,
 * infinities, NaNs with payloads, values that overflow float16.
 */
import { assert, assertEquals } from "./_assert.ts";
import { ConvertPool, convertPoolSize } from "../lib/shard/convert_pool.ts";
import { encodeActivation } from "../lib/util/dtype.ts";

function tricky(n: number): Float32Array {
  const bits = new Uint32Array(n);
  let x = 0x9e3779b9;
  for (let i = 0; i < n; i++) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    bits[i] = x;
  }
  const special = [
    0x00000000,
    0x80000000,
    0x7f800000,
    0xff800000,
    0x7fc00000,
    0x7f800001,
    0xffc12345,
    0x00000001,
    0x007fffff,
    0x33800000,
    0x387fe000,
    0x38800000,
    0x477fe000,
    0x477ff000,
    0x47800000,
    0x3f808000,
    0x3f818000,
    0x3f7fffff,
  ];
  special.forEach((b, i) => (bits[i] = b));
  // Activation-like values too: most land in the fast paths.
  const f = new Float32Array(bits.buffer);
  for (let i = special.length; i < n; i += 3) f[i] = Math.sin(i) * 7;
  return f;
}

Deno.test("ConvertPool: float16 and bfloat16 bytes equal encodeActivation's, for every kind of float32, in any order of completion", async () => {
  for (const dtype of ["float16", "bfloat16"] as const) {
    const pool = new ConvertPool(dtype, 3);
    try {
      const inputs = [1, 17, 4096, 100_003, 5].map((n, k) => tricky(n + k));
      const got = await Promise.all(inputs.map((v) => pool.convert(v)));
      for (const [k, v] of inputs.entries()) {
        assertEquals(got[k], encodeActivation(v, dtype), `${dtype} input ${k}`);
      }
      // Buffers come back for reuse: a second round with the same sizes gives the same bytes.
      const again = await Promise.all(inputs.map((v) => pool.convert(v)));
      assertEquals(again, got);
    } finally {
      pool.close();
    }
  }
});

Deno.test("ConvertPool: sized to the cores (none on one core: the writer converts on its own thread)", () => {
  assertEquals(convertPoolSize(1), 0);
  assertEquals(convertPoolSize(2), 2);
  assertEquals(convertPoolSize(64), 8);
  assert(convertPoolSize() >= 0);
});
