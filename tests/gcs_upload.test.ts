// GcsStore, ShardUploader, the `upload` stage and gs:// read/verify, against the built-in emulator (port 0).
import { join } from "node:path";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import { GcsStore, parseGsUrl } from "../lib/storage/gcs.ts";
import { ShardUploader } from "../lib/pipeline/shard_uploader.ts";
import { uploadDataset } from "../lib/pipeline/upload_dataset.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import { type DatasetMetadata, readMetadata } from "../lib/shard/metadata.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { openStore } from "../lib/storage/open.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { ActshardError } from "../lib/errors.ts";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { REPO_ROOT, tempDir } from "./_shared.ts";

/** The error `fn` throws (fails if it does not). */
async function caught(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an error");
}

const FAST = { retry: { initialDelayMs: 20, maxDelayMs: 100, maxAttempts: 4, totalTimeoutMs: 60_000 } };

/** A small local dataset: `n` shards of ~300 KB each (multi-chunk at a 256 KiB chunk size). */
async function makeDataset(
  dir: string,
  format: "pickle" | "safetensors" = "pickle",
): Promise<DatasetMetadata> {
  const w = await ShardWriter.open({
    dir,
    format,
    codec: format === "pickle" ? "gzip" : "none",
    dtype: "float32",
    shardSizeBytes: 300_000,
    base: {},
  });
  let x = 7;
  for (let i = 0; i < 12; i++) {
    const act = new Float32Array(16 * 1000).map(() => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32) - 0.5);
    await w.write([{
      task_id: `t${i}`,
      sample_idx: i,
      layer: 3,
      activation: act,
      shape: [16, 1000],
      prompt: "p",
    }]);
  }
  return await w.close();
}

Deno.test("parseGsUrl: bucket and prefix; clear usage error otherwise", () => {
  assertEquals(parseGsUrl("gs://my-bucket/a/b/"), { bucket: "my-bucket", prefix: "a/b" });
  assertEquals(parseGsUrl("gs://my-bucket"), { bucket: "my-bucket", prefix: "" });
  let e: unknown;
  try {
    parseGsUrl("s3://x/y");
  } catch (x) {
    e = x;
  }
  assert(e instanceof ActshardError && e.kind === "usage");
});

Deno.test("GcsStore.open: a gs:// URL given as the bucket name is a usage error before any request", async () => {
  // the emulator accepts any bucket name, so without this check `--gcs_bucket gs://b` "worked" against it
  const e = await caught(() => GcsStore.open("gs://b", "p", { apiEndpoint: "http://127.0.0.1:9" }));
  assert(e instanceof ActshardError, String(e));
  assertEquals(e.exitCode(), 2);
  assertEquals(
    e.line(),
    `not a valid bucket name: "gs://b" (--gcs_bucket): give the bucket's name only (e.g. --gcs_bucket my-bucket; ` +
      "the path goes in --gcs_prefix)",
  );
});

Deno.test("ShardUploader: verified uploads under faults, metadata lists only verified shards, delete local", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const meta = await makeDataset(tmp.path);
    assert(meta.shards.length >= 3, `want >= 3 shards, got ${meta.shards.length}`);
    const local = new Map<string, Uint8Array>();
    for (const s of meta.shards) local.set(s.filename, await Deno.readFile(join(tmp.path, s.filename)));
    emu.faults.add({ op: "upload-start", kind: "status", status: 429 });
    emu.faults.add({ op: "upload-chunk", kind: "status", status: 503 });
    emu.faults.add({ op: "upload-chunk", kind: "reset", skip: 1 });
    const published: number[] = [];
    const up = await ShardUploader.create({
      bucket: "actshard-test",
      prefix: "runs/one",
      localDir: tmp.path,
      apiEndpoint: emu.url,
      chunkSize: 256 * 1024,
      deleteLocalAfterUpload: true,
      ...FAST,
      onVerified: (e, remote) => {
        e.gcs_verified = true;
        e.gcs_path = up.gcsPath(e);
        e.gcs_generation = remote.generation;
        published.push(e.shard_id);
        return Promise.resolve();
      },
      getMetadata: () => meta,
    });
    for (const s of meta.shards) up.enqueue(s);
    await up.drain();
    meta.status = "complete";
    await up.publishMetadata();
    await up.release();
    assertEquals(published.length, meta.shards.length);
    assertEquals(emu.faults.fired.length, 3);
    const store = await GcsStore.open("actshard-test", "runs/one", { apiEndpoint: emu.url });
    for (const [name, bytes] of local) assertEquals(await store.read(name), bytes, `${name} byte-identical`);
    const remoteMeta = await readMetadata(store);
    assertEquals(remoteMeta.status, "complete");
    assertEquals(remoteMeta.shards.map((s) => s.filename), meta.shards.map((s) => s.filename));
    const rep = await verifyDataset(store);
    assert(rep.ok, JSON.stringify(rep.shards.slice(0, 2)));
    // only metadata.json remains locally
    const left = [...Deno.readDirSync(tmp.path)].map((e) => e.name).filter((n) => !n.startsWith("."));
    assertEquals(left, ["metadata.json"]);
  } finally {
    await emu.close();
  }
});

Deno.test("ShardUploader: a fault that never clears fails clearly, keeps local shards, publishes nothing", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const meta = await makeDataset(tmp.path);
    emu.faults.add({ op: "upload-chunk", kind: "status", status: 503, times: Infinity });
    const up = await ShardUploader.create({
      bucket: "actshard-test",
      prefix: "p",
      localDir: tmp.path,
      apiEndpoint: emu.url,
      deleteLocalAfterUpload: true,
      retry: { initialDelayMs: 10, maxDelayMs: 20, maxAttempts: 2, totalTimeoutMs: 20_000 },
      onVerified: () => Promise.resolve(),
      getMetadata: () => meta,
    });
    up.enqueue(meta.shards[0]);
    const e = await caught(() => up.drain());
    assert(e instanceof ActshardError && /upload failed/.test(e.line()), String(e));
    assert(Deno.statSync(join(tmp.path, meta.shards[0].filename)).isFile, "local shard kept");
    await up.release();
    const store = await GcsStore.open("actshard-test", "p", { apiEndpoint: emu.url });
    assertEquals(await store.list(), []);
  } finally {
    await emu.close();
  }
});

Deno.test("GcsStore: an existing different object is never overwritten; same object = already uploaded", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const store = await GcsStore.open("actshard-test", "x", { apiEndpoint: emu.url, ...FAST });
    await Deno.writeTextFile(join(tmp.path, "a"), "first");
    await Deno.writeTextFile(join(tmp.path, "b"), "second!");
    const i1 = await store.uploadFile(join(tmp.path, "a"), "obj");
    const i2 = await store.uploadFile(join(tmp.path, "a"), "obj");
    assertEquals(i2.generation, i1.generation);
    const e = await caught(() => store.uploadFile(join(tmp.path, "b"), "obj"));
    assert(e instanceof ActshardError && /different object already exists/.test(e.message), String(e));
    assertEquals(new TextDecoder().decode(await store.read("obj")), "first");
  } finally {
    await emu.close();
  }
});

Deno.test("upload stage: a different object already at a shard's name says so, not 'rerun the same command'", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const meta = await makeDataset(tmp.path);
    const store = await GcsStore.open("actshard-test", "taken", { apiEndpoint: emu.url, ...FAST });
    await Deno.writeTextFile(join(tmp.path, "other"), "another run's shard");
    await store.uploadFile(join(tmp.path, "other"), meta.shards[0].filename);
    const e = await caught(() =>
      uploadDataset({
        outputDir: tmp.path,
        bucket: "actshard-test",
        prefix: "taken",
        apiEndpoint: emu.url,
        ...FAST,
      })
    );
    assert(e instanceof ActshardError, String(e));
    const line = e.line();
    assert(/different object already exists/.test(line), line);
    assert(/another --gcs_prefix/.test(line), line);
    assert(!/rerun the same command/.test(line), line);
    assertEquals(new TextDecoder().decode(await store.read(meta.shards[0].filename)), "another run's shard");
  } finally {
    await emu.close();
  }
});

Deno.test("upload stage: idempotent second run, resumable after a partial run; gs:// read/verify", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const meta = await makeDataset(tmp.path, "safetensors");
    const n = meta.shards.length;
    const opts = {
      outputDir: tmp.path,
      bucket: "actshard-test",
      prefix: "up",
      apiEndpoint: emu.url,
      ...FAST,
    };
    // "killed halfway": a first run that dies after the first shard (a fault that never clears on the rest)
    emu.faults.add({ op: "upload-start", kind: "status", status: 503, times: Infinity, skip: 1 });
    await assertRejects(() => uploadDataset({ ...opts, concurrency: 1 }));
    emu.faults.clear();
    const r1 = await uploadDataset(opts);
    assertEquals(r1.alreadyThere, 1);
    assertEquals(r1.uploaded, n - 1);
    const r2 = await uploadDataset(opts);
    assertEquals([r2.uploaded, r2.alreadyThere], [0, n]);
    const store = await GcsStore.open("actshard-test", "up", { apiEndpoint: emu.url });
    assertEquals(
      (await store.list()).map((o) => o.name).sort(),
      [...meta.shards.map((s) => s.filename), "metadata.json"].sort(),
    );
    // gs:// through openStore (STORAGE_EMULATOR_HOST, as any GCS client)
    Deno.env.set("STORAGE_EMULATOR_HOST", emu.url);
    try {
      const gs = await openStore("gs://actshard-test/up");
      const rep = await verifyDataset(gs);
      assert(rep.ok && rep.shards.length === n, JSON.stringify(rep.shards[0]));
      const deep = await verifyDataset(gs, { deep: true });
      assert(deep.ok);
      const ds = await Dataset.open(gs);
      const recs = [];
      for await (const r of ds.records({ sample_idx: 5 })) recs.push(r);
      assertEquals(recs.length, 1);
      assertEquals(recs[0].task_id, "t5");
      const localDs = await Dataset.open(new LocalStore(tmp.path));
      for await (const r of localDs.records({ sample_idx: 5 })) {
        assertEquals(r.activation, recs[0].activation);
      }
    } finally {
      Deno.env.delete("STORAGE_EMULATOR_HOST");
    }
  } finally {
    await emu.close();
  }
});

Deno.test("upload CLI: missing --gcs_bucket is a one-line usage error (exit 2)", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "scripts/upload.ts", "--output_dir", "nowhere"],
    cwd: REPO_ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(out.code, 2);
  const err = new TextDecoder().decode(out.stderr).trim();
  assertEquals(err.split("\n").length, 1, err);
  assert(/--gcs_bucket is required/.test(err), err);
});

Deno.test("ShardUploader: a complete local dataset with a shard not yet on GCS is published as in_progress", async () => {
  // The writer marks its metadata complete at close() while the last uploads are still running; each verified
  // upload publishes metadata.json. A published "complete" that lacks a shard would make a replacement pod
  // (resume from GCS) finish with that shard never uploaded, and readers take a partial dataset for the whole.
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const meta = await makeDataset(tmp.path); // closed: status "complete"
    assertEquals(meta.status, "complete");
    assert(meta.shards.length >= 3, `want >= 3 shards, got ${meta.shards.length}`);
    const last = meta.shards[meta.shards.length - 1];
    emu.faults.add({ op: "upload-start", kind: "status", status: 400, objectPrefix: `p/${last.filename}` });
    const up = await ShardUploader.create({
      bucket: "actshard-test",
      prefix: "p",
      localDir: tmp.path,
      apiEndpoint: emu.url,
      ...FAST,
      onVerified: (e) => {
        e.gcs_verified = true;
        e.gcs_path = up.gcsPath(e);
        return Promise.resolve();
      },
      getMetadata: () => meta,
    });
    for (const s of meta.shards) up.enqueue(s);
    await caught(() => up.drain());
    await up.release();
    const remote = await readMetadata(await GcsStore.open("actshard-test", "p", { apiEndpoint: emu.url }));
    assertEquals(remote.shards.length, meta.shards.length - 1);
    assertEquals(remote.status, "in_progress");
  } finally {
    await emu.close();
  }
});

Deno.test("upload stage --delete_local_after_upload: local shards go only after metadata.json is published", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const meta = await makeDataset(tmp.path);
    const opts = {
      outputDir: tmp.path,
      bucket: "actshard-test",
      prefix: "del",
      apiEndpoint: emu.url,
      deleteLocalAfterUpload: true,
      ...FAST,
    };
    // A fault on the last shard that never clears: the run fails before publishing, so no local shard may go,
    // not even the ones already verified remotely.
    emu.faults.add({
      op: "upload-start",
      kind: "status",
      status: 503,
      times: Infinity,
      skip: meta.shards.length - 1,
    });
    await assertRejects(() => uploadDataset({ ...opts, concurrency: 1 }));
    const local = () =>
      [...Deno.readDirSync(tmp.path)].map((e) => e.name).filter((n) => n.startsWith("shard_"));
    assertEquals(local().length, meta.shards.length, "nothing deleted before metadata.json is published");
    emu.faults.clear();
    await uploadDataset(opts);
    assertEquals(local(), [], "every shard deleted once published");
    const store = await GcsStore.open("actshard-test", "del", { apiEndpoint: emu.url });
    const remote = await readMetadata(store);
    assertEquals(remote.status, "complete");
    assertEquals(remote.shards.length, meta.shards.length);
    assert((await verifyDataset(store)).ok);
  } finally {
    await emu.close();
  }
});

Deno.test("ShardUploader: a failed shard stays on disk and counts toward the local bound; waiting for room says so", async () => {
  await using tmp = await tempDir();
  const emu = await startGcsEmulator({ port: 0, buckets: ["actshard-test"] });
  try {
    const meta = await makeDataset(tmp.path);
    const first = meta.shards[0].filename;
    emu.faults.add({
      op: "upload-start",
      kind: "status",
      status: 403,
      times: Infinity,
      objectPrefix: `p/${first}`,
    });
    const up: ShardUploader = await ShardUploader.create({
      bucket: "actshard-test",
      prefix: "p",
      localDir: tmp.path,
      apiEndpoint: emu.url,
      deleteLocalAfterUpload: true,
      ...FAST,
      onVerified: (e) => {
        e.gcs_verified = true;
        e.gcs_path = up.gcsPath(e);
        return Promise.resolve();
      },
      getMetadata: () => meta,
    });
    for (const s of meta.shards) up.enqueue(s);
    const e = await caught(() => up.waitForRoom(0));
    assert(e instanceof ActshardError && /permission denied \(403\)/.test(e.message), String(e));
    await caught(() => up.drain());
    assertEquals(up.pending, 1, "the failed shard still counts");
    assert(Deno.statSync(join(tmp.path, first)).isFile, "kept on disk");
    assertEquals(
      [...Deno.readDirSync(tmp.path)].map((d) => d.name).filter((n) => n.startsWith("shard_")),
      [first],
      "the others were uploaded and removed",
    );
    await up.release();
  } finally {
    await emu.close();
  }
});
