/** CRC-32C combine (lib/shard/crc_combine.ts): exact against the CRC of the concatenation, for any split. */
import { assertEquals } from "./_assert.ts";
import { crc32cCombine } from "../lib/shard/crc_combine.ts";
import { crc32c } from "../lib/util/crc32c.ts";
import { mulberry32 } from "../lib/util/seeded.ts";

Deno.test("crc32cCombine equals the CRC-32C of A ‖ B for every kind of split (empty, 1 byte, odd, > 1 MiB)", () => {
  const rand = mulberry32(3);
  const all = new Uint8Array((1 << 21) + 77).map(() => Math.floor(rand() * 256));
  const whole = crc32c(all);
  for (const cut of [0, 1, 2, 3, 255, 4096, 65537, 1 << 20, (1 << 21) - 1, all.length - 1, all.length]) {
    const a = all.subarray(0, cut), b = all.subarray(cut);
    assertEquals(crc32cCombine(crc32c(a), crc32c(b), b.length), whole, `cut at ${cut}`);
  }
});

Deno.test("crc32cCombine chains in order: a file's CRC from many chunk CRCs", () => {
  const rand = mulberry32(9);
  const all = new Uint8Array(300_000).map(() => Math.floor(rand() * 256));
  let crc = 0, off = 0;
  while (off < all.length) {
    const n = Math.min(all.length - off, 1 + Math.floor(rand() * 40_000));
    crc = crc32cCombine(crc, crc32c(all.subarray(off, off + n)), n);
    off += n;
  }
  assertEquals(crc, crc32c(all));
  // a known value: CRC-32C("123456789") = e3069283, from its halves
  const t = new TextEncoder().encode("123456789");
  assertEquals(crc32cCombine(crc32c(t.subarray(0, 4)), crc32c(t.subarray(4)), 5), 0xe3069283);
});
