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
