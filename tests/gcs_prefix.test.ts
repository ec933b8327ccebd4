// One dataset per GCS prefix: another dataset is refused (upload, extract), --overwrite and --clear_prefix
// replace or clear it deliberately, a second live writer is refused by the lease, a resume under another
// prefix never publishes a metadata.json listing shards that are not there, and the first upload that fails
// for good stops the extract.
import { join } from "node:path";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { LEASE_NAME, PrefixLease } from "../lib/storage/gcs_lease.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { errorLines, makeDataset, runScript } from "./_gcs_fixture.ts";
import { fixturePathArgs, makeExtractFixture, runExtractCli, spawnExtract } from "./_extract_fixture.ts";
import { KILL_AT_ENV } from "../lib/pipeline/kill_point.ts";

const up = (dir: string, prefix: string, ...more: string[]) => [
  ...["--output_dir", dir, "--gcs_bucket", "bkt", "--gcs_prefix", prefix],
  ...more,
];

Deno.test("upload: a prefix holding another dataset is refused naming what differs; --overwrite replaces it", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  const env = { STORAGE_EMULATOR_HOST: emu.url };
  try {
    const a = join(tmp.path, "a"), b = join(tmp.path, "b");
    await makeDataset(a, { config: { layers_to_extract: [20, 21], codec: "gzip" } });
    const metaB = await makeDataset(b, { config: { layers_to_extract: [22], codec: "gzip" }, seed: 99 });
    assertEquals((await runScript("upload.ts", up(a, "p"), env)).code, 0);
    const store = await GcsStore.open("bkt", "p", { apiEndpoint: emu.url });
    const before = await store.list();

    const r = await runScript("upload.ts", up(b, "p"), env);
    assertEquals(r.code, 1, r.stderr);
    const lines = errorLines(r.stderr);
    assertEquals(lines.length, 1, r.stderr);
    assert(
      lines[0].startsWith("upload: gs://bkt/p holds another dataset (layers_to_extract (stored"),
      lines[0],
    );
    assert(lines[0].includes("--clear_prefix --gcs_bucket bkt --gcs_prefix p"), lines[0]);
    assertEquals(await store.list(), before, "nothing changed on GCS");

    const o = await runScript("upload.ts", up(b, "p", "--overwrite"), env);
    assertEquals(o.code, 0, o.stderr);
    assert(/--overwrite: cleared the other dataset at gs:\/\/bkt\/p \(\d+ objects;/.test(o.stderr), o.stderr);
    const remote = await readMetadata(store);
    assertEquals(remote.config, metaB.config);
    const names = (await store.list()).map((x) => x.name).sort();
    assertEquals(names, [...metaB.shards.map((s) => s.filename), "metadata.json"].sort(), "only B's objects");
    const v = await runScript("verify.ts", ["gs://bkt/p", "--deep"], env);
    assertEquals(v.code, 0, v.stdout);

    const c = await runScript(
      "upload.ts",
      ["--clear_prefix", "--gcs_bucket", "bkt", "--gcs_prefix", "p"],
      env,
    );
    assertEquals(c.code, 0, c.stderr);
    assertEquals(await store.list(), []);
  } finally {
    await emu.close();
  }
});

Deno.test("upload: a second live writer of one prefix is refused, naming the holder", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  try {
    await makeDataset(tmp.path);
    const store = await GcsStore.open("bkt", "p", { apiEndpoint: emu.url });
    const lease = await PrefixLease.acquire(store, { outputDir: "/elsewhere/out", ttlMs: 3000 }); // renews each s
    try {
      const r = await runScript("upload.ts", up(tmp.path, "p"), { STORAGE_EMULATOR_HOST: emu.url });
      assertEquals(r.code, 1, r.stderr);
      const lines = errorLines(r.stderr);
      assertEquals(lines.length, 1, r.stderr);
      assert(
        lines[0].startsWith(
          `upload: another run is writing gs://bkt/p (host ${Deno.hostname()}, pid ${Deno.pid}, ` +
            "output dir /elsewhere/out; it renewed its lease while we watched)",
        ),
        lines[0],
      );
      assertEquals((await store.list()).map((o) => o.name), [LEASE_NAME], "nothing uploaded");
      // two acquirers racing: exactly one wins
      const again = await PrefixLease.acquire(store, { outputDir: "/third" }).then(
        () => "won",
        (e) => e.message,
      );
      assert(/another run is writing/.test(again), again);
    } finally {
      await lease.release();
    }
    assertEquals(await store.list(), [], "the lease is gone once released");
    assertEquals(
      (await runScript("upload.ts", up(tmp.path, "p"), { STORAGE_EMULATOR_HOST: emu.url })).code,
      0,
    );
  } finally {
    await emu.close();
  }
});

Deno.test("upload into a new prefix of a dataset whose shards were deleted after upload elsewhere: refused, nothing published", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  const env = { STORAGE_EMULATOR_HOST: emu.url };
  try {
    await makeDataset(tmp.path);
    const first = await runScript("upload.ts", up(tmp.path, "old", "--delete_local_after_upload"), env);
    assertEquals(first.code, 0, first.stderr);
    const r = await runScript("upload.ts", up(tmp.path, "new"), env);
    assertEquals(r.code, 1, r.stderr);
    const lines = errorLines(r.stderr);
    assertEquals(lines.length, 1, r.stderr);
    assert(
      /^upload: shard file to upload is missing: \d+ shard\(s\) are neither on disk nor in gs:\/\/bkt\/new: shard_0001\.pkl\.gz \(uploaded to gs:\/\/bkt\/old\/shard_0001\.pkl\.gz\)/
        .test(lines[0]),
      lines[0],
    );
    const store = await GcsStore.open("bkt", "new", { apiEndpoint: emu.url });
    assertEquals(await store.list(), [], "no metadata.json, no shard under the new prefix");
    const local = await readMetadata(new LocalStore(tmp.path));
    assert(
      local.shards.every((s) => s.gcs_path?.startsWith("gs://bkt/old/")),
      "local metadata still says where",
    );
  } finally {
    await emu.close();
  }
});

const extractArgs = (fxArgs: string[], prefix: string, ...more: string[]) => [
  ...fxArgs,
  ...["--layers_to_extract", "0-2", "--predictions_per_task", "2", "--shard_size_gb", "0.0008"],
  ...["--upload_to_gcs", "--gcs_bucket", "bkt", "--gcs_prefix", prefix],
  ...more,
];

Deno.test("extract resumed with another --gcs_prefix after a kill: uploads the missing shards there first; refused when they are gone", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 6 });
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  const env = { STORAGE_EMULATOR_HOST: emu.url };
  try {
    // 1) kept local shards: the rerun under "new" uploads the old ones there, and gs://bkt/new verifies
    const out = join(tmp.path, "out");
    const child = spawnExtract(extractArgs(fixturePathArgs(fx, out), "old"), {
      ...env,
      [KILL_AT_ENV]: "verified:3",
    });
    assertEquals((await child.status).signal, "SIGKILL");
    await child.stdout.cancel();
    await child.stderr.cancel();
    const again = await runExtractCli(extractArgs(fixturePathArgs(fx, out), "new"), env);
    assertEquals(again.code, 0, again.stderr);
    const newMeta = await readMetadata(await GcsStore.open("bkt", "new", { apiEndpoint: emu.url }));
    assertEquals(newMeta.status, "complete");
    assert(
      newMeta.shards.every((s) => s.gcs_path === `gs://bkt/new/${s.filename}`),
      "all verified under new",
    );
    const v = await runScript("verify.ts", ["gs://bkt/new", "--deep"], env);
    assertEquals(v.code, 0, v.stdout + v.stderr);

    // 2) shards deleted after upload: the rerun under "new2" is refused before publishing anything there
    const out2 = join(tmp.path, "out2");
    const c2 = spawnExtract(extractArgs(fixturePathArgs(fx, out2), "old2", "--delete_local_after_upload"), {
      ...env,
      [KILL_AT_ENV]: "verified:3",
    });
    assertEquals((await c2.status).signal, "SIGKILL");
    await c2.stdout.cancel();
    await c2.stderr.cancel();
    const r = await runExtractCli(
      extractArgs(fixturePathArgs(fx, out2), "new2", "--delete_local_after_upload"),
      env,
    );
    assertEquals(r.code, 1, r.stderr);
    const last = errorLines(r.stderr).at(-1)!;
    assert(
      /is not on disk and not in gs:\/\/bkt\/new2 \(it was uploaded to gs:\/\/bkt\/old2\//.test(last),
      last,
    );
    const s2 = await GcsStore.open("bkt", "new2", { apiEndpoint: emu.url });
    assert(!(await s2.stat("metadata.json")), "no metadata.json published under new2");
  } finally {
    await emu.close();
  }
});

Deno.test("extract: a prefix holding another run is refused before any shard; a permanent upload failure stops the run", async () => {
  await using tmp = await tempDir();
  const fx = await makeExtractFixture(tmp.path, { tasks: 6 });
  const emu = await startGcsEmulator({ buckets: ["bkt"] });
  const env = { STORAGE_EMULATOR_HOST: emu.url };
  try {
    const a = join(tmp.path, "a");
    assertEquals((await runExtractCli(extractArgs(fixturePathArgs(fx, a), "p"), env)).code, 0);
    // same prefix, other settings, fresh local dir
    const b = join(tmp.path, "b");
    const other = [
      ...fixturePathArgs(fx, b),
      ...["--layers_to_extract", "0-1", "--predictions_per_task", "2", "--shard_size_gb", "0.0008"],
      ...["--upload_to_gcs", "--gcs_bucket", "bkt", "--gcs_prefix", "p"],
    ];
    const r = await runExtractCli(other, env);
    assertEquals(r.code, 1, r.stderr);
    assert(/layers_to_extract \(stored 0-2, now \[0,1\]\)|layers_to_extract/.test(r.stderr), r.stderr);
    const ow = await runExtractCli([...other, "--overwrite"], env);
    assertEquals(ow.code, 0, ow.stderr);
    assert(/--overwrite: cleared the other dataset at gs:\/\/bkt\/p/.test(ow.stderr), ow.stderr);

    // every shard upload refused (403) after the start-up probe passed: the run stops at the next batch
    emu.faults.add({ op: "upload-start", kind: "status", status: 403, times: Infinity, objectPrefix: "q/" });
    const c = join(tmp.path, "c");
    const f = await runExtractCli(extractArgs(fixturePathArgs(fx, c), "q"), env);
    assertEquals(f.code, 1, f.stderr);
    assert(/permission denied \(403\)/.test(errorLines(f.stderr).at(-1)!), f.stderr);
    const local = await readMetadata(new LocalStore(c));
    const full = await readMetadata(new LocalStore(a));
    assert(
      local.shards.length < full.shards.length,
      `stopped early: ${local.shards.length}/${full.shards.length}`,
    );
    assertEquals(local.status, "in_progress");
    emu.faults.clear();
    const resumed = await runExtractCli(extractArgs(fixturePathArgs(fx, c), "q"), env);
    assertEquals(resumed.code, 0, resumed.stderr);
    assertEquals(
      (await readMetadata(await GcsStore.open("bkt", "q", { apiEndpoint: emu.url }))).status,
      "complete",
    );
  } finally {
    await emu.close();
  }
});
