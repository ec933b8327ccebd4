/**
 * One lock for every stage that writes or deletes in an output directory: `upload` (±--delete_local_after_upload),
 * `shard --output` and `shard --merge` refuse a directory another process is writing, with one line naming its pid;
 * and an `upload --delete_local_after_upload` started beside a running extract of the same directory is refused,
 * while the extract ends complete and byte-identical to an uninterrupted run.
 */
import { join } from "node:path";
import { assertEquals, assertMatch } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { runScript, writeDataset } from "./_shard_fixtures.ts";
import { writeWorkers } from "./_merge_fixture.ts";
import {
  makeExtractFixture,
  recordKeys,
  runExtractCli,
  shardFiles,
  smallShardArgs,
  spawnExtract,
  spawnScript,
} from "./_extract_fixture.ts";
import { LOCK_NAME, lockHolder, lockOutputDir } from "../lib/pipeline/lock.ts";
import { KILL_AT_ENV } from "../lib/pipeline/kill_point.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every file of a directory tree (relative name → bytes as hex digest-free string length + content). */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const o of await new LocalStore(dir).list()) {
    if (o.name === ".actshard.lock") continue;
    out[o.name] = new TextDecoder("latin1").decode(await Deno.readFile(join(dir, o.name)));
  }
  return out;
}

function oneLine(stderr: string, re: RegExp): string {
  const lines = stderr.trim().split("\n");
  assertEquals(lines.length, 1, stderr);
  assertMatch(lines[0], re);
  return lines[0];
}

Deno.test("upload, shard --output and shard --merge refuse a directory another process holds, naming its pid", async () => {
  await using d = await tempDir();
  const ds = join(d.path, "ds");
  await writeDataset(ds, 3, [1], { gzipWorkers: 1 });
  await writeWorkers(join(d.path, "run"), 2);
  const held = [await lockOutputDir(ds), await lockOutputDir(join(d.path, "run"))];
  const src = join(d.path, "src");
  await writeDataset(src, 2, [1], { gzipWorkers: 1 });
  try {
    const before = await tree(ds);
    const pid = new RegExp(`another actshard process \\(pid ${Deno.pid}\\) is writing`);
    for (const del of [[], ["--delete_local_after_upload"]]) {
      const up = await runScript("upload.ts", ["--output_dir", ds, "--gcs_bucket", "bkt", ...del]);
      assertEquals(up.code, 1, up.stderr);
      oneLine(up.stderr, new RegExp(`^upload: ${pid.source}`));
    }
    assertEquals(await tree(ds), before, "nothing changed or deleted");
    const sh = await runScript("shard.ts", ["--input", src, "--output", ds, "--overwrite"]);
    assertEquals(sh.code, 1, sh.stderr);
    oneLine(sh.stderr, new RegExp(`^shard: ${pid.source}`));
    assertEquals(await tree(ds), before, "nothing changed by shard --output");
    const runBefore = await tree(join(d.path, "run"));
    const mg = await runScript("shard.ts", ["--merge", join(d.path, "run"), "--output", join(d.path, "run")]);
    assertEquals(mg.code, 1, mg.stderr);
    oneLine(mg.stderr, new RegExp(`^shard: ${pid.source}`));
    assertEquals(await tree(join(d.path, "run")), runBefore, "no root metadata.json written");
  } finally {
    for (const l of held) l.release();
  }
  // released: the same commands go through
  const mg = await runScript("shard.ts", ["--merge", join(d.path, "run"), "--output", join(d.path, "run")]);
  assertEquals(mg.code, 0, mg.stderr);
  const sh = await runScript("shard.ts", ["--input", src, "--output", ds, "--overwrite"]);
  assertEquals(sh.code, 0, sh.stderr);
});

Deno.test("upload --delete_local_after_upload beside a running extract is refused; the extract ends complete and byte-identical", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 8 });
  const ref = join(tmp.path, "ref");
  const first = await runExtractCli(smallShardArgs(fx, ref, 3));
  assertEquals(first.code, 0, first.stderr);
  const emu = await startGcsEmulator({ port: 0 });
  try {
    // An interrupted run (killed right after shard 2), then its resume, paused (SIGSTOP: a real pause, no test
    // hook) as soon as it holds the directory's lock: the directory holds committed shards and an in_progress
    // metadata.json, as when the upload was started 3 s into an extract.
    const out = join(tmp.path, "out");
    const killed = await spawnExtract(smallShardArgs(fx, out, 3), { [KILL_AT_ENV]: "committed:2" }).output();
    assertEquals(killed.signal, "SIGKILL", new TextDecoder().decode(killed.stderr));
    assertEquals((await readMetadata(new LocalStore(out))).shards.length, 2);
    const child = spawnExtract(smallShardArgs(fx, out, 3));
    const stderr = new Response(child.stderr).text();
    let exited = false;
    const status = child.status.finally(() => (exited = true));
    const lockFile = join(out, LOCK_NAME);
    while (!exited && (await lockHolder(lockFile)) !== `pid ${child.pid}, extract`) {
      await sleep(1);
    }
    if (exited) throw new Error(`extract finished before the test could pause it: ${await stderr}`);
    Deno.kill(child.pid, "SIGSTOP");
    let up;
    try {
      assertEquals((await readMetadata(new LocalStore(out))).status, "in_progress", "paused mid-run");
      const before = await tree(out);
      up = await spawnScript(
        "upload.ts",
        ["--output_dir", out, "--gcs_bucket", "bkt", "--gcs_prefix", "side", "--delete_local_after_upload"],
        { STORAGE_EMULATOR_HOST: emu.url },
      ).output();
      assertEquals(await tree(out), before, "the upload changed nothing in the extract's directory");
    } finally {
      Deno.kill(child.pid, "SIGCONT");
    }
    const upErr = new TextDecoder().decode(up.stderr);
    assertEquals(up.code, 1, upErr);
    oneLine(
      upErr,
      new RegExp(`^upload: another actshard process \\(pid ${child.pid}, extract\\) is writing`),
    );
    const st = await status;
    await child.stdout.cancel();
    assertEquals(st.code, 0, await stderr);
    const store = await GcsStore.open("bkt", "side", { apiEndpoint: emu.url });
    assertEquals((await store.list()).map((o) => o.name), [], "nothing published by the refused upload");
    assertEquals((await readMetadata(new LocalStore(out))).status, "complete");
    assertEquals(
      await shardFiles(out),
      await shardFiles(ref),
      "shard files byte-identical to the uninterrupted run",
    );
    assertEquals(await recordKeys(out), await recordKeys(ref));
    const v = await runScript("verify.ts", [out]);
    assertEquals(v.code, 0, v.stdout + v.stderr);
  } finally {
    await emu.close();
  }
});
