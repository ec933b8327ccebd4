import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { sha256Hex } from "./_shard_fixtures.ts";
import { FileSink } from "../lib/shard/file_sink.ts";
import { crc32c } from "../lib/util/crc32c.ts";
import { ActshardError } from "../lib/errors.ts";

Deno.test("FileSink: bytes, CRC-32C and SHA-256 of what it wrote (known CRCs combined, views copied), two files at once", async () => {
  await using d = await tempDir();
  const sink = new FileSink();
  try {
    const parts = Array.from(
      { length: 40 },
      (_, i) => new Uint8Array(5000 + i * 977).map((_, j) => (i + j * 7) & 255),
    );
    const a = sink.open(`${d.path}/a`), b = sink.open(`${d.path}/b`);
    for (const [i, p] of parts.entries()) {
      // Some chunks come with their CRC (as from a compression Worker), some are views of a larger buffer.
      if (i % 3 === 0) await a.write(p.slice(), crc32c(p));
      else if (i % 3 === 1) await a.write(new Uint8Array([0, ...p, 0]).subarray(1, p.length + 1));
      else await a.write(p.slice());
      await b.write(p.slice(0, 10));
    }
    const [fa, fb] = await Promise.all([a.finish(), b.finish()]);
    const bytesA = await Deno.readFile(`${d.path}/a`), bytesB = await Deno.readFile(`${d.path}/b`);
    assertEquals(bytesA.length, parts.reduce((s, p) => s + p.length, 0));
    assertEquals(fa, { bytes: bytesA.length, crc32c: crc32c(bytesA), sha256: await sha256Hex(bytesA) });
    assertEquals(fb, { bytes: 400, crc32c: crc32c(bytesB), sha256: await sha256Hex(bytesB) });
    let o = 0;
    for (const p of parts) {
      assertEquals(bytesA.subarray(o, o + p.length), p);
      o += p.length;
    }
  } finally {
    sink.close();
  }
});

Deno.test("FileSink: a file that cannot be created fails its writes with one io error naming it", async () => {
  await using d = await tempDir();
  const sink = new FileSink();
  try {
    const f = sink.open(`${d.path}/missing/dir/x`);
    const e = await (async () => {
      for (let i = 0; i < 20; i++) await f.write(new Uint8Array(100));
      await f.finish();
    })().catch((e) => e);
    assert(e instanceof ActshardError && e.kind === "io", String(e));
    assert(e.message.includes(`${d.path}/missing/dir/x`), e.message);
  } finally {
    sink.close();
  }
});
