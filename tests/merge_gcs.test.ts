/**
 * Merge on gs:// (our emulator and fake-gcs-server, reached as any GCS client through STORAGE_EMULATOR_HOST): workers
 * uploaded under gs://B/run/worker-…/, merged in place; `read` and `verify` of gs://B/run see one dataset.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { join } from "node:path";
import { mergeDatasets } from "../lib/pipeline/merge.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { openStore } from "../lib/storage/open.ts";
import { gcsServerTest } from "./_gcs_servers.ts";
import { workerDirName } from "../lib/pipeline/work_split.ts";
import { ActshardError } from "../lib/errors.ts";
import { allRecords, expectedRecords, writeWorkers } from "./_merge_fixture.ts";

/** Upload every file of a local worker tree to gs://bucket/prefix/…, metadata.json last per worker. */
async function uploadTree(local: string, store: GcsStore): Promise<void> {
  for await (const w of Deno.readDir(local)) {
    if (!w.isDirectory) continue;
    const names: string[] = [];
    for await (const f of Deno.readDir(join(local, w.name))) if (f.isFile) names.push(f.name);
    for (const n of names.filter((n) => n !== "metadata.json")) {
      await store.uploadFile(join(local, w.name, n), `${w.name}/${n}`);
    }
    await store.writeSmall(
      `${w.name}/metadata.json`,
      await Deno.readFile(join(local, w.name, "metadata.json")),
    );
  }
}

gcsServerTest(
  "merge on gs://: in place, then read and verify the merged prefix; missing workers refused",
  async (emu) => {
    await using tmp = await tempDir();
    await emu.createBucket("acts");
    const old = Deno.env.get("STORAGE_EMULATOR_HOST");
    Deno.env.set("STORAGE_EMULATOR_HOST", emu.url);
    try {
      await writeWorkers(join(tmp.path, "full"), 3);
      const run = await GcsStore.open("acts", "run", { apiEndpoint: emu.url, checkAccess: false });
      await uploadTree(join(tmp.path, "full"), run);

      const meta = await mergeDatasets(["gs://acts/run"], "gs://acts/run");
      assertEquals([meta.gcs_bucket, meta.gcs_prefix, meta.status], ["acts", "run", "complete"]);
      const root = await openStore("gs://acts/run");
      assertEquals(await readMetadata(root), meta);
      assertEquals(await allRecords("gs://acts/run"), expectedRecords());
      const rep = await verifyDataset(root);
      assertEquals(rep.issues, []);
      assert(rep.ok && rep.records === 28);
      // On GCS, verify uses the object's crc32c (no download) — every shard checked that way.
      assert(rep.shards.every((s) => s.method === "object-info"), JSON.stringify(rep.shards[0]));

      // From gs:// to a local root: the workers are copied (streamed) under it.
      const local = join(tmp.path, "copy");
      await mergeDatasets(["gs://acts/run"], local);
      assertEquals(await allRecords(local), expectedRecords());

      // A run with worker 1 not uploaded yet: refused, nothing written at the root.
      await writeWorkers(join(tmp.path, "part"), 3, { skip: [1] });
      await uploadTree(join(tmp.path, "part"), await GcsStore.open("acts", "part", { apiEndpoint: emu.url }));
      await assertRejects(
        mergeDatasets(["gs://acts/part"], "gs://acts/part"),
        (e: unknown) =>
          e instanceof ActshardError && /1 of 3 workers missing: worker-00001-of-00003/.test(e.line()),
      );
      assertEquals(await (await openStore("gs://acts/part")).stat("metadata.json"), null);
      // A worker not under a gs:// destination is not copied there: clear refusal.
      await assertRejects(
        mergeDatasets([join(tmp.path, "full")], "gs://acts/elsewhere"),
        (e: unknown) =>
          e instanceof ActshardError && new RegExp(`${workerDirName(0, 3)} is not under`).test(e.line()),
      );
    } finally {
      if (old === undefined) Deno.env.delete("STORAGE_EMULATOR_HOST");
      else Deno.env.set("STORAGE_EMULATOR_HOST", old);
    }
  },
);
