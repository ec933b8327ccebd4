/**
 * Resume from GCS state, as a preempted pod's replacement does (its emptyDir is gone): extract with
 * --upload_to_gcs is SIGKILLed at a named point (ACTSHARD_TEST_KILL_AT), its local output dir is deleted, and
 * the same command is run again. It must continue after the shards verified on GCS (without downloading them)
 * and leave a remote dataset identical to an uninterrupted run's: same objects with the same bytes, metadata
 * listing every shard, `verify gs://…` clean. Also: a different config on GCS is refused; a complete remote
 * dataset needs nothing; the gap-free-prefix rule for shards verified out of order.
 */
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";
import {
  type ExtractFixture,
  fixturePathArgs,
  makeExtractFixture,
  runExtractCli,
  spawnExtract,
} from "./_extract_fixture.ts";
import { type DatasetMetadata, readMetadata, type ShardEntry } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { gcsServerTest } from "./_gcs_servers.ts";
import { durablePrefix } from "../lib/pipeline/remote_resume.ts";
import { KILL_AT_ENV } from "../lib/pipeline/kill_point.ts";

function args(fx: ExtractFixture, out: string, prefix: string): string[] {
  return [
    ...fixturePathArgs(fx, out),
    ...["--layers_to_extract", "0-2", "--predictions_per_task", "2", "--shard_size_gb", "0.0008"],
    ...["--upload_to_gcs", "--gcs_bucket", "bkt", "--gcs_prefix", prefix],
  ];
}

/** name (relative to the prefix) → size, crc32c, generation of every object under `prefix`. */
async function objects(
  store: GcsStore,
): Promise<Map<string, { size: number; crc32c?: number; gen?: string }>> {
  const m = new Map<string, { size: number; crc32c?: number; gen?: string }>();
  for (const o of await store.list()) m.set(o.name, { size: o.size, crc32c: o.crc32c, gen: o.generation });
  return m;
}

/** What must match between two runs' shard entries (not paths, generations or timestamps). */
const shardFacts = (m: DatasetMetadata) =>
  m.shards.map((s: ShardEntry) => ({
    id: s.shard_id,
    f: s.filename,
    bytes: s.bytes,
    crc: s.crc32c,
    sha: s.sha256,
    n: s.n_records,
    lo: s.sample_idx_min,
    hi: s.sample_idx_max,
  }));

gcsServerTest(
  "extract --upload_to_gcs: local dir lost after a kill → resumes from GCS, remote = uninterrupted run",
  async (emu) => {
    await using tmp = await tempDir();
    const fx = await makeExtractFixture(tmp.path, { tasks: 6 });
    await emu.createBucket("bkt");
    const env = { STORAGE_EMULATOR_HOST: emu.url };
    try {
      const ref = await runExtractCli(args(fx, join(tmp.path, "ref"), "ref"), env);
      assertEquals(ref.code, 0, ref.stderr);
      const refStore = await GcsStore.open("bkt", "ref", { apiEndpoint: emu.url });
      const refMeta = await readMetadata(refStore);
      assert(refMeta.shards.length >= 5, `want several shards, got ${refMeta.shards.length}`);

      // Killed once shard 4's object is verified on GCS, before its own publish of metadata.json.
      const out = join(tmp.path, "pod");
      const child = spawnExtract(args(fx, out, "run"), { ...env, [KILL_AT_ENV]: "verified:4" });
      const st = await child.status;
      await child.stdout.cancel();
      await child.stderr.cancel();
      assertEquals(st.signal, "SIGKILL");
      const store = await GcsStore.open("bkt", "run", { apiEndpoint: emu.url });
      const before = await readMetadata(store);
      assertEquals(before.status, "in_progress");
      // Shard 4's object is there; GCS metadata.json lists it only if another upload's publish ran meanwhile.
      assert((await objects(store)).has("shard_0004.pkl.gz"), "shard 4's object is on GCS");
      assert(before.shards.length < refMeta.shards.length, "the killed run was not finished");

      // The replacement pod: an empty local dir, the same command.
      await Deno.remove(out, { recursive: true });
      const again = await runExtractCli(args(fx, out, "run"), env);
      assertEquals(again.code, 0, again.stderr);
      const kept = durablePrefix(before).shards.length;
      assert(kept >= 1, `kept ${kept}`);
      assert(
        again.stderr.includes(
          `gs://bkt/run holds one (in_progress, ${before.shards.length} shards listed): ` +
            `continuing after its ${kept} verified leading shards`,
        ),
        again.stderr,
      );
      assert(
        /resuming: \d+\/12 prompts already durable in \d+ shards on GCS/.test(again.stderr),
        again.stderr,
      );

      // Remote: the same objects and bytes as the uninterrupted run; metadata lists every shard, complete.
      const refObjs = await objects(refStore), runObjs = await objects(store);
      const strip = (m: Map<string, { size: number; crc32c?: number }>, skip: string) =>
        [...m].filter(([n]) => n !== skip).map(([n, o]) => `${n} ${o.size} ${o.crc32c}`).sort();
      assertEquals(strip(runObjs, "metadata.json"), strip(refObjs, "metadata.json"));
      const meta = await readMetadata(store);
      assertEquals(meta.status, "complete");
      assertEquals(shardFacts(meta), shardFacts(refMeta));
      assertEquals(meta.config, refMeta.config);
      assert(meta.shards.every((s) => s.gcs_verified && s.gcs_path === `gs://bkt/run/${s.filename}`));

      // Local: metadata.json lists every shard (the kept ones only on GCS, as with --delete_local_after_upload).
      const local = await readMetadata(new LocalStore(out));
      assertEquals(local.status, "complete");
      assertEquals(shardFacts(local), shardFacts(refMeta));
      for (const s of local.shards) {
        const exists = await Deno.stat(join(out, s.filename)).then(() => true, () => false);
        assertEquals(
          exists,
          s.shard_id > kept,
          `${s.filename}: local file present only if made by the rerun`,
        );
      }

      const verify = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", join(REPO_ROOT, "scripts/verify.ts"), "gs://bkt/run"],
        env,
        stdout: "piped",
        stderr: "piped",
      }).output();
      const vout = new TextDecoder().decode(verify.stdout) + new TextDecoder().decode(verify.stderr);
      assertEquals(verify.code, 0, vout);
      assert(/\nOK$/.test(new TextDecoder().decode(verify.stdout).trim()), vout);

      // A different config against that prefix (fresh local dir): refused, one line, nothing touched on GCS.
      const objsDone = await objects(store);
      const other = args(fx, join(tmp.path, "other"), "run");
      other.splice(other.indexOf("0-2"), 1, "1-2");
      const refused = await runExtractCli(other, env);
      assertEquals(refused.code, 1, refused.stderr);
      // (The GCS client's own Node warnings aside: docs/gcs.md.)
      const lines = refused.stderr.trim().split("\n").filter((l) => !/^\(node:\d+\)|^\(Use `node/.test(l));
      assertEquals(lines.length, 1, refused.stderr);
      assert(
        /GCS prefix holds a run with different settings: layers_to_extract \(stored 0-2, now \[1,2\]\) \(gs:\/\/bkt\/run\)/
          .test(lines[0]),
        lines[0],
      );
      assertEquals(await objects(store), objsDone);

      // The same command on yet another empty dir: the remote run is complete, nothing to do or upload.
      const third = join(tmp.path, "third");
      const done = await runExtractCli(args(fx, third, "run"), env);
      assertEquals(done.code, 0, done.stderr);
      assert(/gs:\/\/bkt\/run is already complete/.test(done.stderr), done.stderr);
      assertEquals(await objects(store), objsDone);
      assertEquals(shardFacts(await readMetadata(new LocalStore(third))), shardFacts(refMeta));
    } finally {
      // the server is closed by gcsServerTest
    }
  },
);

Deno.test("durablePrefix: the gap-free verified leading shards of a GCS metadata.json", () => {
  const e = (id: number, verified = true) =>
    ({ shard_id: id, n_records: 3, gcs_verified: verified }) as ShardEntry;
  const meta = (status: "in_progress" | "complete", shards: ShardEntry[]) =>
    ({ status, shards, total_shards: shards.length, total_samples: 3 * shards.length }) as DatasetMetadata;
  // Shard 4 verified before 3 (two uploads at a time): 4 is recomputed, its upload then finds the object.
  const cut = durablePrefix(meta("in_progress", [e(1), e(2), e(4)]));
  assertEquals(cut.shards.map((s) => s.shard_id), [1, 2]);
  assertEquals([cut.total_shards, cut.total_samples, cut.status], [2, 6, "in_progress"]);
  assertEquals(durablePrefix(meta("in_progress", [e(2), e(1)])).shards.map((s) => s.shard_id), [1, 2]);
  assertEquals(durablePrefix(meta("in_progress", [e(1), e(2, false)])).shards.length, 1);
  assertEquals(durablePrefix(meta("in_progress", [e(2), e(3)])).shards.length, 0);
  assertEquals(durablePrefix(meta("complete", [e(1), e(2)])).status, "complete");
});
