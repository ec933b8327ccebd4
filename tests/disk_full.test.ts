/**
 * Disk full mid-run, on a real full filesystem (a 1 MiB tmpfs; needs root and mount, else skipped with a note):
 * one line naming the directory and what to free, the partial shard's temp files removed, metadata.json listing
 * only the shards that are on disk (verify: clean, incomplete). And the free-disk headroom is proportional to
 * the run: a tiny run on a small disk is no longer refused by a fixed 1 GiB minimum.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { promptRecords, runScript } from "./_shard_fixtures.ts";
import { ActshardError } from "../lib/errors.ts";
import { checkFreeDisk, defaultReserve, MIN_RESERVE_BYTES } from "../lib/pipeline/disk.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { LocalStore } from "../lib/storage/local.ts";

/** Mount a tmpfs of `size` at a fresh temp dir; null when this machine cannot (not root, no mount). */
function mountTmpfs(size: string): { path: string; [Symbol.asyncDispose](): Promise<void> } | null {
  const path = Deno.makeTempDirSync({ prefix: "actshard-full-" });
  try {
    const r = new Deno.Command("mount", {
      args: ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", path],
      stderr: "null",
    })
      .outputSync();
    if (!r.success) throw new Error("mount failed");
  } catch {
    Deno.removeSync(path);
    return null;
  }
  return {
    path,
    async [Symbol.asyncDispose]() {
      await new Deno.Command("umount", { args: [path] }).output();
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

const probe = mountTmpfs("64k");
await probe?.[Symbol.asyncDispose]();
const CAN_MOUNT = probe !== null;
if (!CAN_MOUNT) console.warn("note: cannot mount a tmpfs here (needs root): disk-full tests are skipped");

async function leftovers(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).filter((n) => n.endsWith(".tmp"));
}

for (const format of ["pickle", "safetensors"] as const) {
  Deno.test({
    name:
      `disk full mid-run (${format}): one line naming the dir and what to free; no .tmp left; metadata lists what is on disk`,
    ignore: !CAN_MOUNT,
    async fn() {
      await using fs = mountTmpfs("1m")!;
      const dir = join(fs.path, "out");
      const w = await ShardWriter.open({
        dir,
        format,
        codec: "none",
        dtype: "float32",
        shardSizeBytes: 150_000,
        base: { shard_size_gb: 150_000 / 2 ** 30 },
      });
      let err: unknown = null;
      try {
        // ≈ 32 KB per prompt, 100 prompts ≈ 3.2 MB into a 1 MiB filesystem
        for (let i = 0; i < 100; i++) await w.write(promptRecords(i, [1, 2, 3, 4], 60, 32));
        await w.close();
      } catch (e) {
        err = e;
        await w.abort();
      }
      assert(err instanceof ActshardError, `expected a disk-full error, got ${err}`);
      const line = err.line();
      assertMatch(line, /^disk full while writing shards \(.*\/out\): free at least 1 MiB/);
      assert(line.includes(dir) && line.includes("rerun the same command"), line);
      assertEquals(await leftovers(dir), [], "partial temp files removed");
      const meta = await readMetadata(new LocalStore(dir));
      assert(meta.shards.length >= 1, "some shards were committed before the disk filled");
      assertEquals(meta.status, "in_progress");
      const r = await verifyDataset(new LocalStore(dir));
      assertEquals(r.issues.filter((i) => i.level === "error"), [], "metadata lists only what is on disk");
      assertEquals(r.complete, false);
    },
  });
}

Deno.test({
  name: "disk full in the shard stage: one line on stderr, exit 1, no .tmp left",
  ignore: !CAN_MOUNT,
  async fn() {
    await using src = await tempDir();
    const w = await ShardWriter.open({
      dir: src.path,
      format: "pickle",
      codec: "gzip",
      dtype: "float32",
      shardSizeBytes: 200_000,
      base: {},
      gzipWorkers: 1,
    });
    for (let i = 0; i < 60; i++) await w.write(promptRecords(i, [1, 2, 3], 60, 32)); // ≈ 2.2 MB
    await w.close();
    await using fs = mountTmpfs("1m")!;
    const out = join(fs.path, "out");
    const r = await runScript("shard.ts", ["--input", src.path, "--output", out, "--no_compress_shards"]);
    assertEquals(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 1, r.stderr);
    assertMatch(lines[0], /^shard: disk full while writing shards \(.*\/out\): free at least/);
    assertEquals(await leftovers(out), []);
  },
});

Deno.test("disk check: headroom proportional to the run (no fixed 1 GiB): tiny runs fit small disks", async () => {
  // a 2 MB run on a disk with 600 MB free: refused before (1 GiB minimum headroom)
  const ok = await checkFreeDisk(".", { needBytes: 2e6, freeBytes: 600e6 });
  assert(ok.ok);
  assertEquals(defaultReserve(2e6), MIN_RESERVE_BYTES);
  assertEquals(defaultReserve(1e10), 5e8, "5 % of a large run");
  assertEquals(defaultReserve(1e10, 1e9), 1.5e9, "plus a safetensors shard in flight");
  await assertRejects(
    () => checkFreeDisk(".", { needBytes: 100e6, freeBytes: 110e6 }),
    (e: unknown) =>
      e instanceof ActshardError && /not enough free disk/.test(e.message) &&
      /^free 6\.8 MB there/.test(e.hint!),
  );
});
