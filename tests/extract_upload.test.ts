/**
 * extract with --upload_to_gcs against the built-in GCS emulator, through the CLI (STORAGE_EMULATOR_HOST), killed
 * mid-run and rerun: every shard ends up uploaded and verified exactly once, metadata.json on GCS lists them all,
 * and the remote dataset verifies clean with the same records as the local one.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import {
  fixturePathArgs,
  makeExtractFixture,
  recordKeys,
  runExtractCli,
  spawnExtract,
} from "./_extract_fixture.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import { Dataset } from "../lib/shard/reader.ts";

Deno.test("extract --upload_to_gcs: killed mid-run, rerun → all shards verified on GCS, metadata published", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 6 });
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    const out = join(tmp.path, "out");
    const args = [
      ...fixturePathArgs(fx, out),
      "--layers_to_extract",
      "0-2",
      "--predictions_per_task",
      "2",
      "--shard_size_gb",
      "0.0008",
      "--upload_to_gcs",
      "--gcs_bucket",
      "bkt",
      "--gcs_prefix",
      "runs/a",
      "--verbose",
    ];
    const env = { STORAGE_EMULATOR_HOST: emu.url };
    // Kill once some shards are committed (uploads in flight or pending).
    const child = spawnExtract(args, env);
    let exited = false;
    const status = child.status.finally(() => (exited = true));
    const committed = async () => {
      try {
        return (await readMetadata(new LocalStore(out))).total_shards;
      } catch {
        return 0;
      }
    };
    while (!exited && (await committed()) < 2) await new Promise((r) => setTimeout(r, 10));
    if (!exited) child.kill("SIGKILL");
    await status;
    await child.stdout.cancel();
    await child.stderr.cancel();

    const rerun = await runExtractCli(args, env);
    assertEquals(rerun.code, 0, rerun.stderr);
    assert(/✓ Uploaded to GCS: gs:\/\/bkt\/runs\/a\/shard_\d{4}\.pkl\.gz/.test(rerun.stderr), rerun.stderr);
    const local = await readMetadata(new LocalStore(out));
    assertEquals(local.status, "complete");
    assert(local.shards.every((s) => s.gcs_verified === true), "every shard verified");
    assert(local.shards.every((s) => s.gcs_path === `gs://bkt/runs/a/${s.filename}`));

    const remoteStore = await GcsStore.open("bkt", "runs/a", { apiEndpoint: emu.url });
    const remoteMeta = await readMetadata(remoteStore);
    assertEquals(remoteMeta.shards.map((s) => s.filename), local.shards.map((s) => s.filename));
    const report = await verifyDataset(remoteStore);
    assert(report.ok, JSON.stringify(report.issues));
    const remoteKeys: string[] = [];
    for await (const r of (await Dataset.open(remoteStore)).records()) {
      remoteKeys.push(`${r.sample_idx}/${r.layer}`);
    }
    const localKeys = (await recordKeys(out)).map((k) => k.split(" ").slice(1, 3).join("/"));
    assertEquals(remoteKeys.sort(), localKeys.sort());
    assertEquals(new Set(localKeys).size, 6 * 2 * 3);
  } finally {
    await emu.close();
  }
});

Deno.test("extract --upload_to_gcs over a complete local run: uploads it and publishes metadata.json as complete", async () => {
  // The 'already complete, finish pending uploads' path: the published metadata must end up `complete` (merge
  // and remote resume read that status), not the in_progress of the writer reopened for the uploads.
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 2 });
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    const out = join(tmp.path, "out");
    const args = [
      ...fixturePathArgs(fx, out),
      ...["--layers_to_extract", "0-2", "--predictions_per_task", "1", "--shard_size_gb", "0.0008"],
    ];
    const first = await runExtractCli(args);
    assertEquals(first.code, 0, first.stderr);
    const upload = ["--upload_to_gcs", "--gcs_bucket", "bkt", "--gcs_prefix", "runs/c"];
    const rerun = await runExtractCli([...args, ...upload], { STORAGE_EMULATOR_HOST: emu.url });
    assertEquals(rerun.code, 0, rerun.stderr);
    const local = await readMetadata(new LocalStore(out));
    assertEquals(local.status, "complete");
    assert(local.shards.every((s) => s.gcs_verified === true), "every shard verified");
    const remoteMeta = await readMetadata(await GcsStore.open("bkt", "runs/c", { apiEndpoint: emu.url }));
    assertEquals(remoteMeta.shards.map((s) => s.filename), local.shards.map((s) => s.filename));
    assertEquals(remoteMeta.status, "complete");
  } finally {
    await emu.close();
  }
});

Deno.test("extract --upload_to_gcs --delete_local_after_upload: uploads slower than extraction keep only a few shards on disk", async () => {
  // The free-disk check asks for 4 shards' room when shards leave the disk as they upload, so the writer must
  // wait for the uploads rather than pile shards up locally (a slow link would otherwise fill the disk).
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 6 });
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    const out = join(tmp.path, "out");
    // Each shard's first upload attempt fails (503): the client's backoff makes every upload slow.
    for (let i = 1; i <= 60; i++) {
      emu.faults.add({
        op: "upload-start",
        kind: "status",
        status: 503,
        objectPrefix: `runs/d/shard_${String(i).padStart(4, "0")}`,
      });
    }
    const child = spawnExtract([
      ...fixturePathArgs(fx, out),
      ...["--layers_to_extract", "0-2", "--predictions_per_task", "2", "--shard_size_gb", "0.0004"],
      ...["--upload_to_gcs", "--gcs_bucket", "bkt", "--gcs_prefix", "runs/d", "--delete_local_after_upload"],
    ], { STORAGE_EMULATOR_HOST: emu.url });
    let exited = false;
    const done = child.output().finally(() => (exited = true));
    let most = 0;
    while (!exited) {
      try {
        let n = 0;
        for await (const e of Deno.readDir(out)) if (/^shard_/.test(e.name)) n++;
        most = Math.max(most, n);
      } catch { /* not created yet */ }
      await new Promise((r) => setTimeout(r, 5));
    }
    const res = await done;
    assertEquals(res.code, 0, new TextDecoder().decode(res.stderr));
    const local = await readMetadata(new LocalStore(out));
    assert(local.shards.length >= 8, `want many shards, got ${local.shards.length}`);
    assert(local.shards.every((s) => s.gcs_verified === true));
    assert(most <= 4, `${most} shards were on disk at once`);
  } finally {
    await emu.close();
  }
});
