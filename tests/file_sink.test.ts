import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { sha256Hex } from "./_shard_fixtures.ts";
import { FileSink } from "../lib/shard/file_sink.ts";
import { crc32c } from "../lib/util/crc32c.ts";
import { ActshardError } from "../lib/errors.ts";
import { directWritesWork, withEnv } from "./_direct_io.ts";

/** Whether the sink's default writes go around the page cache in this machine's temporary directory. */
const DIRECT_HERE = await directWritesWork();

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
    assertEquals(fa, {
      bytes: bytesA.length,
      crc32c: crc32c(bytesA),
      sha256: await sha256Hex(bytesA),
      flushedEarly: 0, // under 32 MiB: no early writeback
      direct: DIRECT_HERE,
    });
    assertEquals(fb, {
      bytes: 400,
      crc32c: crc32c(bytesB),
      sha256: await sha256Hex(bytesB),
      flushedEarly: 0,
      direct: DIRECT_HERE,
    });
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

Deno.test("FileSink: a CRC pool of 1 or 3 Workers gives the same file, CRC-32C and SHA-256 (chunks reordered by the sink)", async () => {
  await using d = await tempDir();
  const parts = Array.from({ length: 60 }, (_, i) => new Uint8Array(1000 + (i % 7) * 40_000).fill(i * 13));
  const want = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((o, p) => (want.set(p, o), o + p.length), 0);
  for (const crcWorkers of [1, 3]) {
    const sink = new FileSink({ crcWorkers });
    try {
      const f = sink.open(`${d.path}/f${crcWorkers}`);
      // mostly without CRCs (the pool computes them), every 5th with one (as from a gzip Worker): both orders mix
      for (const [i, p] of parts.entries()) await f.write(p.slice(), i % 5 === 4 ? crc32c(p) : undefined);
      const got = await f.finish();
      assertEquals(await Deno.readFile(`${d.path}/f${crcWorkers}`), want, `${crcWorkers} CRC Workers`);
      assertEquals(got, {
        bytes: want.length,
        crc32c: crc32c(want),
        sha256: await sha256Hex(want),
        flushedEarly: 0,
        direct: DIRECT_HERE,
      });
    } finally {
      sink.close();
    }
  }
});

Deno.test("FileSink: SHA-256 by 1, 2 or 3 hash Workers (files alternating, each past 4 MiB) matches the bytes", async () => {
  await using d = await tempDir();
  const chunk = (f: number, i: number) => new Uint8Array(700_001).map((_, j) => (f * 31 + i * 7 + j) & 255);
  for (const hashWorkers of [1, 2, 3]) {
    const sink = new FileSink({ hashWorkers });
    try {
      const files = [0, 1, 2, 3].map((f) => ({ f, out: sink.open(`${d.path}/h${hashWorkers}-${f}`) }));
      const done: ReturnType<typeof files[0]["out"]["finish"]>[] = [];
      for (const { f, out } of files) {
        // Files 0 and 1 interleave; the rest one after another, each finished while the next is written.
        const n = 8 + f; // 5.6–7.7 MB each, files alternating between the hash Workers
        for (let i = 0; i < n; i++) await out.write(chunk(f, i));
        done.push(out.finish());
      }
      const got = await Promise.all(done);
      for (const [f, g] of got.entries()) {
        const bytes = await Deno.readFile(`${d.path}/h${hashWorkers}-${f}`);
        assertEquals(g, {
          bytes: bytes.length,
          crc32c: crc32c(bytes),
          sha256: await sha256Hex(bytes),
          flushedEarly: 0,
          direct: DIRECT_HERE,
        });
      }
    } finally {
      sink.close();
    }
  }
});

for (const mode of ["direct", "thread"]) {
  Deno.test(`FileSink (${mode} writes): CRC-32C taken in the sink (no CRC pool), mixed with given CRCs, equals the file's`, async () => {
    await using d = await tempDir();
    await using _env = withEnv("ACTSHARD_SINK_WRITES", mode);
    // Sizes across the 256 KiB pieces and 2 MiB staging slots of the direct writes, odd ones included.
    const sizes = [1, 262_143, 262_145, (2 << 20) + 7, 3 << 20, 99_999, 5, (1 << 20) - 1];
    const parts = sizes.map((n, i) => new Uint8Array(n).map((_, j) => (i * 151 + j * 7 + (j >> 9)) & 255));
    const want = new Uint8Array(sizes.reduce((a, b) => a + b, 0));
    parts.reduce((o, p) => (want.set(p, o), o + p.length), 0);
    const sink = new FileSink({ crcWorkers: 0 });
    try {
      const f = sink.open(`${d.path}/c`);
      for (const [i, p] of parts.entries()) await f.write(p.slice(), i % 3 === 2 ? crc32c(p) : undefined);
      const got = await f.finish();
      assertEquals(await sha256Hex(await Deno.readFile(`${d.path}/c`)), await sha256Hex(want));
      assertEquals({ bytes: got.bytes, crc32c: got.crc32c, sha256: got.sha256, direct: got.direct }, {
        bytes: want.length,
        crc32c: crc32c(want),
        sha256: await sha256Hex(want),
        direct: mode === "direct" && DIRECT_HERE,
      });
    } finally {
      sink.close();
    }
  });

  Deno.test(`FileSink (${mode} writes): a file cut short under the sink fails its finish with one io error (its size is checked)`, async () => {
    await using d = await tempDir();
    await using _env = withEnv("ACTSHARD_SINK_WRITES", mode); // read by the sink Worker as it loads
    const sink = new FileSink();
    try {
      const path = `${d.path}/cut`;
      const f = sink.open(path);
      // 4 MiB: two whole staging slots where the writes go around the page cache, so some land before the finish
      for (let i = 0; i < 4; i++) await f.write(new Uint8Array(1 << 20).fill(i));
      // Let the writes land (all of them: a direct write still in flight would lengthen the file again), then
      // cut the file: the hash covers the bytes written, the size check the file. (Up to 10 s: the sink Worker
      // may still be loading, type-checked under `deno test`.)
      for (let t = 0; t < 500 && (await Deno.stat(path).catch(() => ({ size: 0 }))).size < 4 << 20; t++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await Deno.truncate(path, 100);
      const e = await f.finish().then(() => null, (e) => e);
      assert(e instanceof ActshardError && e.kind === "io", String(e));
      assert(
        !e.line().includes("\n") &&
          e.message.includes(`${path} holds 100 bytes after its fsync, 4194304 were written`),
        e.message,
      );
    } finally {
      sink.close();
    }
  });

  Deno.test(`FileSink (${mode} writes): a full disk fails the file with one io error that says so (ENOSPC, /dev/full)`, async () => {
    await using _env = withEnv("ACTSHARD_SINK_WRITES", mode);
    const sink = new FileSink();
    try {
      const f = sink.open("/dev/full");
      const e = await (async () => {
        for (let i = 0; i < 8; i++) await f.write(new Uint8Array(1 << 20).fill(i));
        await f.finish();
      })().then(() => null, (e) => e);
      assert(e instanceof ActshardError && e.kind === "io", String(e));
      assert(!e.line().includes("\n") && /No space left on device/.test(e.message), e.message);
      assert(e.message.includes("/dev/full"), e.message);
    } finally {
      sink.close();
    }
  });
}

Deno.test("FileSink: by default on Linux the writes go around the page cache (O_DIRECT) where the filesystem takes it; same bytes and hashes, an odd tail truncated, an abort mid-file closes cleanly", async () => {
  await using d = await tempDir();
  const fs = await filesystemType(d.path);
  if (Deno.build.os === "linux" && ["ext2/ext3", "xfs", "btrfs"].includes(fs ?? "")) {
    assert(DIRECT_HERE, `direct writes refused on ${fs}`); // these take O_DIRECT: the default must use it
  }
  const sink = new FileSink();
  try {
    const MiB = 1 << 20;
    const want = new Uint8Array(37 * MiB + 4097).map((_, i) => (i * 2654435761) >>> 27);
    const g = sink.open(`${d.path}/aborted`);
    for (let i = 0; i < 9; i++) await g.write(want.slice(i * MiB, (i + 1) * MiB));
    await g.abort(); // resolves once the direct writes in flight returned and the file is closed
    await Deno.remove(`${d.path}/aborted`);
    for (const name of ["a", "b"]) { // the second file reuses the first's staging
      const f = sink.open(`${d.path}/${name}`);
      for (let o = 0; o < want.length; o += 3 * MiB + 17) {
        await f.write(want.slice(o, Math.min(want.length, o + 3 * MiB + 17)));
      }
      const r = await f.finish();
      const got = await Deno.readFile(`${d.path}/${name}`);
      assertEquals(got.length, want.length);
      assertEquals(await sha256Hex(got), await sha256Hex(want), "file bytes differ");
      assertEquals(r, {
        bytes: want.length,
        crc32c: crc32c(want),
        sha256: await sha256Hex(want),
        flushedEarly: 0, // no writeback to start: nothing went through the page cache
        direct: DIRECT_HERE,
      });
    }
  } finally {
    sink.close();
  }
});

/** `stat -f`'s name for the filesystem holding `dir` (ext4 reads "ext2/ext3"), or null where it cannot say. */
async function filesystemType(dir: string): Promise<string | null> {
  try {
    const out = await new Deno.Command("stat", {
      args: ["-f", "-c", "%T", dir],
      stdout: "piped",
      stderr: "null",
    })
      .output();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

Deno.test("FileSink writing through the page cache (ACTSHARD_SINK_WRITES=thread): writeback of a large file starts behind the writes (flushedEarly), same bytes and hashes; an abort during it closes cleanly", async () => {
  await using d = await tempDir();
  await using _env = withEnv("ACTSHARD_SINK_WRITES", "thread");
  const sink = new FileSink();
  try {
    const MiB = 1 << 20, chunks = 100;
    const want = new Uint8Array(chunks * MiB).map((_, i) => (i * 2654435761) >>> 27);
    const f = sink.open(`${d.path}/big`);
    for (let i = 0; i < chunks; i++) await f.write(want.slice(i * MiB, (i + 1) * MiB));
    const r = await f.finish();
    const got = await Deno.readFile(`${d.path}/big`);
    assertEquals(got.length, want.length);
    assert(got.every((v, i) => v === want[i]), "file bytes differ");
    assertEquals({ bytes: r.bytes, crc32c: r.crc32c, sha256: r.sha256 }, {
      bytes: want.length,
      crc32c: crc32c(want),
      sha256: await sha256Hex(want),
    });
    // Writeback started after each 32 MiB written (sync_file_range): 32, 64 and 96 MiB of the 100.
    assertEquals(r.flushedEarly, 96 * MiB);
    const g = sink.open(`${d.path}/aborted`);
    for (let i = 0; i < 40; i++) await g.write(want.slice(i * MiB, (i + 1) * MiB));
    await g.abort(); // resolves once the Worker closed the file and its page-cache descriptor
    await Deno.remove(`${d.path}/aborted`);
  } finally {
    sink.close();
  }
});

Deno.test("FileSink with its writes on the blocking pool (ACTSHARD_SINK_WRITES=pool, the default from 4 cores): same bytes, hashes, writeback, abort and size check", async () => {
  await using d = await tempDir();
  const before = Deno.env.get("ACTSHARD_SINK_WRITES");
  Deno.env.set("ACTSHARD_SINK_WRITES", "pool"); // read by the sink Worker as it loads
  const sink = new FileSink();
  try {
    const MiB = 1 << 20;
    const want = new Uint8Array(40 * MiB + 12345).map((_, i) => (i * 2654435761) >>> 27);
    const f = sink.open(`${d.path}/big`);
    for (let o = 0; o < want.length; o += MiB) await f.write(want.slice(o, Math.min(want.length, o + MiB)));
    const g = sink.open(`${d.path}/aborted`);
    for (let i = 0; i < 5; i++) await g.write(want.slice(i * MiB, (i + 1) * MiB));
    await g.abort();
    const r = await f.finish();
    const got = await Deno.readFile(`${d.path}/big`);
    assert(got.length === want.length && got.every((v, i) => v === want[i]), "file bytes differ");
    assertEquals(r, {
      bytes: want.length,
      crc32c: crc32c(want),
      sha256: await sha256Hex(want),
      flushedEarly: 32 * MiB,
      direct: false,
    });
    const cut = sink.open(`${d.path}/cut`);
    await cut.write(new Uint8Array(300_000).fill(1));
    for (
      let t = 0;
      t < 100 && (await Deno.stat(`${d.path}/cut`).catch(() => ({ size: 0 }))).size < 300_000;
      t++
    ) {
      await new Promise((ok) => setTimeout(ok, 20));
    }
    await Deno.truncate(`${d.path}/cut`, 10);
    const e = await cut.finish().then(() => null, (e) => e);
    assert(e instanceof ActshardError && e.message.includes("holds 10 bytes after its fsync"), String(e));
  } finally {
    sink.close();
    if (before === undefined) Deno.env.delete("ACTSHARD_SINK_WRITES");
    else Deno.env.set("ACTSHARD_SINK_WRITES", before);
  }
});
