import { assertEquals } from "./_assert.ts";
import { Crc32c, crc32c, crc32cBase64, crc32cFromBase64 } from "../lib/util/crc32c.ts";

Deno.test("crc32c: standard check value and GCS base64 form", () => {
  const data = new TextEncoder().encode("123456789");
  assertEquals(crc32c(data), 0xe3069283);
  assertEquals(crc32cBase64(0xe3069283), "4waSgw==");
  assertEquals(crc32cFromBase64("4waSgw=="), 0xe3069283);
  assertEquals(crc32c(new Uint8Array(0)), 0);
});

Deno.test("crc32c: incremental equals one-shot at every split point", () => {
  const data = new Uint8Array(1000).map((_, i) => (i * 131 + 7) & 0xff);
  const whole = crc32c(data);
  for (const cut of [0, 1, 7, 8, 9, 500, 999, 1000]) {
    const c = new Crc32c().update(data.subarray(0, cut)).update(data.subarray(cut));
    assertEquals(c.value(), whole, `cut at ${cut}`);
  }
});

Deno.test("crc32c: word-wise path equals a bit-wise reference at every length and alignment", () => {
  const bitwise = (b: Uint8Array) => {
    let c = 0xffffffff;
    for (const x of b) {
      c ^= x;
      for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    }
    return (c ^ 0xffffffff) >>> 0;
  };
  const data = new Uint8Array(300).map((_, i) => (i * 197 + 11) & 0xff);
  for (let off = 0; off < 4; off++) {
    for (let len = 0; len <= 70; len++) {
      const v = data.subarray(off, off + len);
      assertEquals(crc32c(v), bitwise(v), `offset ${off} length ${len}`);
    }
  }
  assertEquals(crc32c(data), bitwise(data));
});

Deno.test("crc32c: new Crc32c(crc(A)).update(B) continues to crc(A ‖ B)", () => {
  const data = new Uint8Array(1000).map((_, i) => (i * 31 + 7) & 0xff);
  for (const cut of [0, 1, 3, 17, 500, 999, 1000]) {
    const a = data.subarray(0, cut), b = data.subarray(cut);
    assertEquals(new Crc32c(crc32c(a)).update(b).value(), crc32c(data), `cut ${cut}`);
  }
});
