/**
 * Dropping durable shards' pages from the page cache (lib/util/page_cache.ts), measured with util-linux's
 * `fincore` (the pages of a file that are in the cache). Linux only; outside CI a missing `fincore` skips these
 * with a note, CI installs it (.ci/run: util-linux-extra) and requires it.
 */
import { assert, assertEquals } from "./_assert.ts";
import { hasCommand, tempDir } from "./_shared.ts";
import { dropCachedPages } from "../lib/util/page_cache.ts";
import { FileSink } from "../lib/shard/file_sink.ts";

const inCi = Deno.env.get("CI") === "true";

const missing = Deno.build.os !== "linux"
  ? "not Linux"
  : hasCommand("fincore")
  ? null
  : "no fincore (util-linux-extra)";
if (missing && !inCi) console.log(`page_cache: ${missing}: its tests are skipped (CI runs them)`);

/** Bytes of `path` in the page cache. */
async function cached(path: string): Promise<number> {
  const o = await new Deno.Command("fincore", {
    args: ["--bytes", "--noheadings", "--output", "RES", path],
    stdout: "piped",
  }).output();
  assert(o.success, `fincore ${path} failed`);
  return Number(new TextDecoder().decode(o.stdout).trim());
}

const MiB = 1 << 20;
const bytes = (n: number) => new Uint8Array(n).map((_, i) => (i * 2654435761) >>> 24);

Deno.test({
  name: "page cache: a durable file's pages are dropped (fincore: cached before, none after); its bytes stay",
  ignore: missing !== null && !inCi,
  async fn() {
    assert(missing === null, `CI requires it: ${missing}`);
    await using d = await tempDir();
    const path = `${d.path}/f`, want = bytes(8 * MiB);
    await Deno.writeFile(path, want);
    {
      using f = await Deno.open(path);
      await f.sync();
    }
    assert(await cached(path) > 4 * MiB, "a file just written is in the cache");
    assertEquals(dropCachedPages(path), true);
    assertEquals(await cached(path), 0);
    assertEquals((await Deno.readFile(path)).length, want.length);
    assertEquals(dropCachedPages(`${d.path}/missing`), false);
  },
});

Deno.test({
  name:
    "page cache: the file sink leaves a finished shard out of the cache (written, fsynced, hashed, dropped)",
  ignore: missing !== null && !inCi,
  async fn() {
    assert(missing === null, `CI requires it: ${missing}`);
    await using d = await tempDir();
    const sink = new FileSink();
    try {
      const f = sink.open(`${d.path}/shard`);
      const want = bytes(24 * MiB);
      for (let o = 0; o < want.length; o += MiB) await f.write(want.slice(o, o + MiB));
      const r = await f.finish();
      assertEquals(r.bytes, want.length);
      assert(await cached(`${d.path}/shard`) < MiB, `${await cached(`${d.path}/shard`)} bytes still cached`);
      const got = await Deno.readFile(`${d.path}/shard`);
      assert(got.every((v, i) => v === want[i]), "bytes differ");
    } finally {
      sink.close();
    }
  },
});
