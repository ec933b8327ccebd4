// The GCS client (GcsStore, leases, the upload stage, verify/read gs://) against both GCS servers: our
// emulator and fake-gcs-server (tests/_gcs_servers.ts). What differs between them is a fidelity gap: see
// docs/gcs.md "Two servers".
import { join } from "node:path";
import { GcsStore } from "../lib/storage/gcs.ts";
import { PrefixLease } from "../lib/storage/gcs_lease.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { ActshardError } from "../lib/errors.ts";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { gcsServerTest } from "./_gcs_servers.ts";
import { makeDataset, runScript } from "./_gcs_fixture.ts";

gcsServerTest(
  "GcsStore: chunked uploads, reruns, ranged and streamed reads, paged list, conditional writes",
  async (srv) => {
    await using tmp = await tempDir();
    await srv.createBucket("bkt");
    const data = new Uint8Array(700_000).map((_, i) => (i * 7919) % 251);
    await Deno.writeFile(join(tmp.path, "f.bin"), data);
    const s = await GcsStore.open("bkt", "p", { apiEndpoint: srv.url, chunkSize: 256 * 1024 });
    await s.probeWrite();
    const info = await s.uploadFile(join(tmp.path, "f.bin"), "f.bin");
    assertEquals(info.size, data.length);
    const again = await s.uploadFile(join(tmp.path, "f.bin"), "f.bin"); // idempotent rerun
    assertEquals([again.size, again.crc32c], [info.size, info.crc32c]);
    if (srv.resumablePreconditions) assertEquals(again.generation, info.generation, "not re-written");
    assertEquals(await s.read("f.bin"), data);
    assertEquals(await s.readRange("f.bin", 1000, 263_000), data.slice(1000, 263_000));
    const parts: Uint8Array[] = [];
    for await (const c of await s.openRead("f.bin")) parts.push(c);
    assertEquals(parts.reduce((n, c) => n + c.length, 0), data.length);
    await Deno.writeFile(join(tmp.path, "empty"), new Uint8Array());
    assertEquals((await s.uploadFile(join(tmp.path, "empty"), "empty")).size, 0);
    for (let i = 0; i < 5; i++) {
      await s.writeSmall(
        `many/${i}`,
        new TextEncoder().encode(`${i}`),
        "text/plain",
      );
    }
    assertEquals((await s.list()).map((o) => o.name), [
      "empty",
      "f.bin",
      ...[0, 1, 2, 3, 4].map((i) => `many/${i}`),
    ]);
    const w = await s.writeSmall("m.json", new TextEncoder().encode("{}"));
    const w2 = await s.writeSmall("m.json", new TextEncoder().encode('{"a":1}'), "application/json", {
      ifGenerationMatch: w.generation,
    });
    assert(w2.generation !== w.generation);
    let err: unknown;
    await s.writeSmall("m.json", new TextEncoder().encode('{"b":1}'), "application/json", {
      ifGenerationMatch: w.generation, // stale: someone else wrote since
    }).catch((e) => err = e);
    assert(err instanceof ActshardError && /changed by another writer/.test(err.message), String(err));
    const lease = await PrefixLease.acquire(s, { outputDir: "/a" });
    const second = await PrefixLease.acquire(s, { outputDir: "/b" }).then(() => "acquired", (e) => e.message);
    assert(/^another run is writing gs:\/\/bkt\/p/.test(second), second);
    await lease.release();
    await s.delete("f.bin");
    assertEquals(await s.stat("f.bin"), null);
    await s.delete("f.bin"); // absent is fine
    // an unknown bucket is a 404 with the hint to create it
    const missing = await GcsStore.open("no-such-bucket", "p", { apiEndpoint: srv.url }).catch((e) => e);
    assert(missing instanceof ActshardError && /not found/.test(missing.message), String(missing));
  },
);

gcsServerTest(
  "upload stage, then verify gs:// --deep and read gs://; a rerun uploads nothing",
  async (srv) => {
    await using tmp = await tempDir();
    await srv.createBucket("bkt");
    const env = { STORAGE_EMULATOR_HOST: srv.url, ACTSHARD_GCS_CHUNK_SIZE: String(256 * 1024) };
    const meta = await makeDataset(tmp.path, { format: "safetensors", records: 16 });
    const args = ["--output_dir", tmp.path, "--gcs_bucket", "bkt", "--gcs_prefix", "runs/x"];
    const r = await runScript("upload.ts", args, env);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.includes(`uploaded ${meta.shards.length} shard(s), 0 already there`), r.stdout);
    const r2 = await runScript("upload.ts", args, env);
    assert(r2.stdout.includes(`uploaded 0 shard(s), ${meta.shards.length} already there`), r2.stdout);
    const store = await GcsStore.open("bkt", "runs/x", { apiEndpoint: srv.url });
    const remote = await readMetadata(store);
    assertEquals(remote.status, "complete");
    for (const s of meta.shards) {
      assertEquals(await store.read(s.filename), await Deno.readFile(join(tmp.path, s.filename)));
    }
    const v = await runScript("verify.ts", ["gs://bkt/runs/x"], env);
    assertEquals(v.code, 0, v.stdout + v.stderr);
    const deep = await runScript("verify.ts", ["gs://bkt/runs/x", "--deep"], env);
    assertEquals(deep.code, 0, deep.stdout + deep.stderr);
    const rd = await runScript("read.ts", ["gs://bkt/runs/x"], env);
    assertEquals(rd.code, 0, rd.stderr);
    assert(rd.stdout.includes(`${meta.shards.length} shards, 16 records`), rd.stdout);
  },
);
