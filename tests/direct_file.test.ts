import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { sha256Hex } from "./_shard_fixtures.ts";
import { DIRECT_ALIGN, DirectFile } from "../lib/util/direct_file.ts";
import { Crc32c, crc32c } from "../lib/util/crc32c.ts";
import { FileSink } from "../lib/shard/file_sink.ts";
import { ActshardError } from "../lib/errors.ts";
import { directWritesWork, withEnv } from "./_direct_io.ts";

const DIRECT_HERE = await directWritesWork();
const MiB = 1 << 20;

/**
 * A 3 MiB tmpfs (it takes O_DIRECT since Linux 6.6) to fill, mounted on a temporary directory; null where it
 * cannot be (not root, no mount in this container, an older kernel's tmpfs refuses O_DIRECT).
 */
const SMALL_FS = await (async () => {
  if (Deno.build.os !== "linux") return null;
  const path = await Deno.makeTempDir({ prefix: "actshard-small-fs-" });
  const run = (cmd: string, ...args: string[]) =>
    new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output().then(
      (o) => o.success,
      () => false,
    );
  const gone = async () => {
    await run("umount", path);
    await Deno.remove(path, { recursive: true }).catch(() => {});
  };
  if (!await run("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", path)) {
    await gone();
    return null;
  }
  const probe = `${path}/probe`;
  const file = await Deno.open(probe, { write: true, create: true, truncate: true });
  const d = DirectFile.open(probe, file);
  await d?.close();
  file.close();
  await Deno.remove(probe);
  if (!d) {
    await gone();
    return null;
  }
  // Unmounted by the test that fills it; this is for a run that filters that test out.
  globalThis.addEventListener("unload", () => {
    new Deno.Command("umount", { args: [path], stdout: "null", stderr: "null" }).outputSync();
  });
  return { path, [Symbol.asyncDispose]: gone };
})();

/** `n` bytes no two MiB of which are alike. */
const pattern = (n: number) => new Uint8Array(n).map((_, i) => (i * 2654435761) >>> 25);

/** Write `want` through a DirectFile in chunks of `chunk` bytes; what it reports, and the file's bytes. */
async function writeThrough(
  path: string,
  want: Uint8Array,
  chunk: number,
  opts: { misalign?: number; copied?: (piece: Uint8Array) => void } = {},
) {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const d = DirectFile.open(path, file, opts);
  assert(d, `direct writes could not be set up on ${path}`);
  try {
    for (let o = 0; o < want.length; o += chunk) {
      await d.write(want.subarray(o, Math.min(want.length, o + chunk)), opts.copied);
    }
    await d.finish();
  } finally {
    await d.close();
  }
  await file.sync();
  return { bytes: d.bytes, fellBack: d.fellBack, got: await Deno.readFile(path) };
}

Deno.test({
  name:
    "DirectFile: the bytes written, exactly (tails of 0, 1, 4095, 4097 bytes past whole slots and blocks; chunks smaller and larger than a slot)",
  ignore: !DIRECT_HERE, // where the temporary directory refuses O_DIRECT (not Linux, tmpfs before 6.6, …)
}, async () => {
  await using d = await tempDir();
  const cases = [[8 * MiB, MiB], [8 * MiB + 1, 3 * MiB + 5], [4095, 100], [2 * MiB + 4097, 7 * MiB], [0, 1]];
  for (const [n, chunk] of cases) {
    const want = pattern(n);
    const r = await writeThrough(`${d.path}/f`, want, chunk);
    assertEquals({ bytes: r.bytes, fellBack: r.fellBack, size: r.got.length }, {
      bytes: n,
      fellBack: false,
      size: n,
    });
    assertEquals(await sha256Hex(r.got), await sha256Hex(want), `${n} bytes in chunks of ${chunk}`);
  }
});

Deno.test({
  name:
    "DirectFile: `copied` sees every byte once, in order, in pieces of at most 256 KiB (the sink's CRC-32C), also where the writes fall back",
  ignore: !DIRECT_HERE,
}, async () => {
  await using d = await tempDir();
  for (const misalign of [0, 1]) { // 1: every direct write refused (EINVAL), the fallback path
    for (const [n, chunk] of [[5 * MiB + 3, 3 * MiB + 5], [300_001, 70_000], [1, 1]]) {
      const want = pattern(n);
      const seen = new Crc32c();
      let bytes = 0, largest = 0;
      const r = await writeThrough(`${d.path}/f`, want, chunk, {
        misalign,
        copied: (piece) => {
          seen.update(piece);
          bytes += piece.length;
          largest = Math.max(largest, piece.length);
        },
      });
      const what = `${n} bytes in chunks of ${chunk}, misalign ${misalign}`;
      assertEquals({ bytes, fellBack: r.fellBack }, { bytes: n, fellBack: misalign !== 0 }, what);
      assertEquals(seen.value(), crc32c(want), what);
      assert(largest <= 256 << 10, `${what}: a piece of ${largest} bytes`);
      assertEquals(await sha256Hex(r.got), await sha256Hex(want), what);
    }
  }
});

Deno.test({
  name:
    "DirectFile: writes the kernel refuses (staging off its alignment: EINVAL) go through the file's ordinary handle, same bytes",
  ignore: !DIRECT_HERE,
}, async () => {
  await using d = await tempDir();
  const want = pattern(9 * MiB + 123);
  const r = await writeThrough(`${d.path}/f`, want, MiB + 1, { misalign: 1 });
  assert(r.fellBack, "a write from a misaligned buffer was taken (the fallback did not run)");
  assertEquals(r.got.length, want.length);
  assertEquals(await sha256Hex(r.got), await sha256Hex(want));
});

Deno.test({
  name:
    "DirectFile: a full disk (a 3 MiB tmpfs) rejects with Deno's own ENOSPC error, which the CLI already maps; so does the sink, in one line",
  ignore: SMALL_FS === null, // needs root (mount), as in CI
}, async () => {
  await using fs = SMALL_FS!;
  {
    const path = `${fs.path}/direct`;
    using file = await Deno.open(path, { write: true, create: true, truncate: true });
    const d = DirectFile.open(path, file);
    assert(d, "tmpfs refused O_DIRECT");
    const e = await (async () => {
      for (let i = 0; i < 8; i++) await d.write(new Uint8Array(MiB).fill(i));
      await d.finish();
    })().then(() => null, (e) => e);
    await d.close();
    assert(e instanceof Error && (e as { code?: string }).code === "ENOSPC", String(e));
    assert(/No space left on device \(os error 28\)/.test(e.message), e.message);
    assert(d.fellBack, "the failing direct write was not retried through the ordinary handle");
    await Deno.remove(path);
  }
  const sink = new FileSink();
  try {
    const f = sink.open(`${fs.path}/sink`);
    const e = await (async () => {
      for (let i = 0; i < 8; i++) await f.write(new Uint8Array(MiB).fill(i));
      await f.finish();
    })().then(() => null, (e) => e);
    assert(e instanceof ActshardError && e.kind === "io" && !e.line().includes("\n"), String(e));
    assert(e.message.includes(`writing ${fs.path}/sink: No space left on device`), e.message);
  } finally {
    sink.close();
  }
});

Deno.test({
  name:
    "DirectFile: a file cut short under the writer keeps its cut size at the finish (tail not written, nothing truncated up)",
  ignore: !DIRECT_HERE,
}, async () => {
  await using d = await tempDir();
  const path = `${d.path}/f`;
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const w = DirectFile.open(path, file)!;
  await w.write(pattern(4 * MiB + 10)); // two whole slots go out, 10 bytes wait for the finish
  for (let t = 0; t < 500 && (await Deno.stat(path)).size < 4 * MiB; t++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  await Deno.truncate(path, 100);
  await w.finish();
  await w.close();
  assertEquals((await Deno.stat(path)).size, 100);
});

Deno.test("DirectFile: not set up under ACTSHARD_PAGE_CACHE=keep (the caller wants the bytes cached), nor on a path that is gone, nor on /dev/full (refused at open)", async () => {
  await using d = await tempDir();
  const path = `${d.path}/f`;
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  {
    await using _env = withEnv("ACTSHARD_PAGE_CACHE", "keep");
    assertEquals(DirectFile.open(path, file), null);
  }
  assertEquals(DirectFile.open(`${d.path}/no/such/file`, file), null);
  if (Deno.build.os === "linux") assertEquals(DirectFile.open("/dev/full", file), null); // a character device
  assertEquals(DIRECT_ALIGN % 512, 0);
});
