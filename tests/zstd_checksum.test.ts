/**
 * zstd shards carry the frame's content checksum, so a zstd reader detects a corrupted frame on its own (without
 * metadata.json): ours (node:zlib verifies it) and python-zstandard.
 */
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { PYTHON, pythonTest } from "./_python.ts";
import { runScript, writeDataset } from "./_shard_fixtures.ts";
import { readShard } from "../lib/shard/reader.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { ActshardError } from "../lib/errors.ts";
import { mulberry32 } from "../lib/util/seeded.ts";

/** Frame header descriptor of the zstd frame at `at`: bit 2 is Content_Checksum_flag (RFC 8878 §3.1.1.1.1). */
function hasChecksum(b: Uint8Array, at = 0): boolean {
  assertEquals([...b.subarray(at, at + 4)], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
  return (b[at + 4] & 0x04) !== 0;
}

for (const format of ["pickle", "safetensors"] as const) {
  Deno.test(`zstd ${format} shard: the frame carries its checksum; a flipped byte fails the read stage itself`, async () => {
    await using d = await tempDir();
    const meta = await writeDataset(d.path, 4, [1, 2], { format, codec: "zstd", gzipWorkers: 1 });
    const name = meta.shards[0].filename;
    const clean = await Deno.readFile(`${d.path}/${name}`);
    assert(hasChecksum(clean), "Content_Checksum_flag set");
    const rand = mulberry32(7);
    let caught = 0;
    const trials = 20;
    for (let t = 0; t < trials; t++) {
      // inside the data frame, past its header: the bytes a frame without a checksum could decode wrongly
      const off = 8 + Math.floor(rand() * (clean.length - 8 - 20));
      const b = clean.slice();
      b[off] ^= 1 + Math.floor(rand() * 255);
      await Deno.writeFile(`${d.path}/${name}`, b);
      try {
        for await (const _ of readShard(new LocalStore(d.path), name)) { /* drain */ }
      } catch (e) {
        assert(e instanceof ActshardError, String(e));
        caught++;
      }
    }
    assertEquals(caught, trials, "every corrupted frame is refused by the reader");
  });
}

pythonTest(
  "python-zstandard sees the checksum flag and reads the frame",
  { modules: ["zstandard"] },
  async () => {
    await using d = await tempDir();
    await writeDataset(d.path, 3, [1], { codec: "zstd", gzipWorkers: 1 });
    const out = await new Deno.Command(PYTHON, {
      args: [
        "-c",
        "import sys,zstandard as z; b=open(sys.argv[1],'rb').read(); p=z.get_frame_parameters(b); " +
        "print(p.has_checksum, len(z.ZstdDecompressor().stream_reader(open(sys.argv[1],'rb')).read()) > 0)",
        `${d.path}/shard_0001.pkl.zst`,
      ],
      stdout: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(out.stdout).trim(), "True True");
  },
);

Deno.test("a corrupt frame in a multi-chunk zstd/gzip shard: the read and verify stages fail with one line (no uncaught error)", async () => {
  for (const codec of ["zstd", "gzip"] as const) {
    await using d = await tempDir();
    const meta = await writeDataset(d.path, 150, [1, 2], { codec, gzipWorkers: 1 }); // ≈ 330 KB, several chunks
    const name = meta.shards[0].filename;
    const b = await Deno.readFile(`${d.path}/${name}`);
    b[Math.floor(b.length / 3)] ^= 0x5a;
    await Deno.writeFile(`${d.path}/${name}`, b);
    let err: unknown = null;
    try {
      for await (const _ of readShard(new LocalStore(d.path), name)) { /* drain */ }
    } catch (e) {
      err = e;
    }
    assert(err instanceof ActshardError, `${codec}: ${err}`);
    for (const [script, args] of [["read.ts", [d.path, "--layer", "1"]], ["verify.ts", [d.path]]] as const) {
      const r = await runScript(script, [...args]);
      assertEquals(r.code, 1, `${script} ${codec}: ${r.stdout}${r.stderr}`);
      assert(!/Uncaught|\n\s+at /.test(r.stderr), `${script} ${codec}: ${r.stderr}`);
    }
  }
});
