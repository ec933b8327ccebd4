/**
 * metadata.json is untrusted input: a dataset whose metadata names a file outside it (`../x`, `/abs/x`), a
 * shard path that is not ours, or an object in another bucket is refused, with one line naming the entry, by
 * every stage — read, verify, shard, merge, upload (with and without --delete_local_after_upload), local and
 * gs:// — and the file it names is untouched.
 */
import { join } from "node:path";
import { createHash } from "node:crypto";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { writeDataset } from "./_shard_fixtures.ts";
import { writeWorkers } from "./_merge_fixture.ts";
import { ActshardError } from "../lib/errors.ts";
import { crc32c } from "../lib/util/crc32c.ts";
import { isShardLocation } from "../lib/shard/metadata_check.ts";
import { mergeDatasets } from "../lib/pipeline/merge.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { uploadDataset } from "../lib/pipeline/upload_dataset.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { openStore } from "../lib/storage/open.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import { workerDirName } from "../lib/pipeline/work_split.ts";
import { main as readMain } from "../scripts/read.ts";
import { main as verifyMain } from "../scripts/verify.ts";
import { main as shardMain } from "../scripts/shard.ts";

/** The refusal `fn` throws: an ActshardError whose one line names the entry. */
async function refusal(fn: () => Promise<unknown>, names: string): Promise<string> {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof ActshardError, `not an ActshardError: ${e}`);
    const line = e.line();
    assert(!line.includes("\n"), line);
    assert(line.includes("metadata.json lists") && line.includes(names), line);
    return line;
  }
  throw new Error(`expected a refusal naming ${names}`);
}

/** A poisoning of one shard entry; the `victim` file outside the dataset matches its size and crc32c. */
type Poison = { label: string; names: string; apply: (e: Record<string, unknown>, victim: string) => void };

const POISONS: Poison[] = [
  { label: "filename ../x", names: "../victim.pkl.gz", apply: (e) => (e.filename = "../victim.pkl.gz") },
  { label: "filename /abs/x", names: "victim.pkl.gz", apply: (e, v) => (e.filename = v) },
  {
    label: "path ../x",
    names: "../victim.pkl.gz",
    apply: (e) => (e.path = "../victim.pkl.gz"),
  },
  {
    label: "path under a non-worker dir",
    names: "sub/shard_0001.pkl.gz",
    apply: (e) => (e.path = "sub/shard_0001.pkl.gz"),
  },
  {
    label: "gcs_path in another bucket",
    names: "another bucket",
    apply: (e) => (e.gcs_path = "gs://other-bucket/p/shard_0001.pkl.gz"),
  },
  {
    label: "gcs_path with ..",
    names: "gs://bkt/p/../shard_0001.pkl.gz",
    apply: (e) => (e.gcs_path = "gs://bkt/p/../shard_0001.pkl.gz"),
  },
  {
    label: "local_path naming another file",
    names: "victim.pkl.gz",
    apply: (e, v) => (e.local_path = v),
  },
];

/** A dataset in `root/ds` (gcs_bucket "bkt") and a victim file `root/victim.pkl.gz` set up to match shard 1. */
async function poisoned(root: string, p: Poison): Promise<{ ds: string; victim: string; bytes: Uint8Array }> {
  const ds = join(root, "ds");
  await writeDataset(ds, 3, [1], { gzipWorkers: 1, base: { gcs_bucket: "bkt", gcs_prefix: "p" } });
  const victim = join(root, "victim.pkl.gz");
  const bytes = await Deno.readFile(join(ds, "shard_0001.pkl.gz"));
  await Deno.writeFile(victim, bytes);
  const m = JSON.parse(await Deno.readTextFile(join(ds, "metadata.json")));
  Object.assign(m.shards[0], {
    crc32c: crc32c(bytes),
    sha256: createHash("sha256").update(bytes).digest("hex"),
  });
  p.apply(m.shards[0], victim);
  await Deno.writeTextFile(join(ds, "metadata.json"), JSON.stringify(m));
  return { ds, victim, bytes };
}

async function untouched(victim: string, bytes: Uint8Array): Promise<void> {
  assertEquals(await Deno.readFile(victim), bytes, `${victim} changed or removed`);
}

Deno.test("isShardLocation: our names only", () => {
  for (
    const ok of ["shard_0001.pkl.gz", "shard_12345.safetensors", "worker-00001-of-00004/shard_0003.pkl.zst"]
  ) {
    assert(isShardLocation(ok), ok);
  }
  for (
    const bad of ["../x", "/abs/shard_0001.pkl", "a/shard_0001.pkl", "worker-1-of-2/shard_0001.pkl", "x.pkl"]
  ) {
    assert(!isShardLocation(bad), bad);
  }
});

Deno.test("untrusted metadata.json: read, verify and shard refuse every poisoned entry; the named file is untouched", async () => {
  for (const p of POISONS) {
    await using d = await tempDir();
    const { ds, victim, bytes } = await poisoned(d.path, p);
    await refusal(() => readMain([ds]), p.names);
    await refusal(async () => {
      for await (const _ of (await Dataset.open(ds)).records()) { /* drain */ }
    }, p.names);
    await refusal(() => verifyMain([ds]), p.names);
    await refusal(() => verifyMain([ds, "--deep"]), p.names);
    await refusal(() => verifyDataset(new LocalStore(ds)), p.names);
    const out = join(d.path, "out");
    await refusal(() => shardMain(["--input", ds, "--output", out]), p.names);
    await untouched(victim, bytes);
  }
});

Deno.test("untrusted metadata.json: upload (with and without --delete_local_after_upload) refuses; nothing uploaded or deleted", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    for (const p of POISONS) {
      for (const del of [false, true]) {
        await using d = await tempDir();
        const { ds, victim, bytes } = await poisoned(d.path, p);
        const before = await Deno.readTextFile(join(ds, "metadata.json"));
        const prefix = `u${POISONS.indexOf(p)}${del ? "d" : ""}`;
        await refusal(
          () =>
            uploadDataset({
              outputDir: ds,
              bucket: "bkt",
              prefix,
              deleteLocalAfterUpload: del,
              apiEndpoint: emu.url,
            }),
          p.names,
        );
        await untouched(victim, bytes);
        assertEquals(await Deno.readTextFile(join(ds, "metadata.json")), before);
        for (const n of ["shard_0001.pkl.gz", "shard_0002.pkl.gz"].slice(0, 1)) {
          assert((await Deno.stat(join(ds, n))).isFile, `${n} deleted`);
        }
        const store = await GcsStore.open("bkt", prefix, { apiEndpoint: emu.url });
        assertEquals((await store.list()).map((o) => o.name), [], `${p.label}: something was uploaded`);
      }
    }
  } finally {
    await emu.close();
  }
});

Deno.test("untrusted metadata.json: local_path is never opened or deleted by upload, even when the shard is gone", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  try {
    await using d = await tempDir();
    const ds = join(d.path, "ds");
    await writeDataset(ds, 3, [1], { gzipWorkers: 1 });
    const elsewhere = join(d.path, "elsewhere");
    await Deno.mkdir(elsewhere);
    const bytes = await Deno.readFile(join(ds, "shard_0001.pkl.gz"));
    await Deno.writeFile(join(elsewhere, "shard_0001.pkl.gz"), bytes);
    const m = JSON.parse(await Deno.readTextFile(join(ds, "metadata.json")));
    m.shards[0].local_path = join(elsewhere, "shard_0001.pkl.gz"); // a valid name, in another directory
    await Deno.writeTextFile(join(ds, "metadata.json"), JSON.stringify(m));
    await Deno.remove(join(ds, "shard_0001.pkl.gz"));
    let err: unknown = null;
    try {
      await uploadDataset({
        outputDir: ds,
        bucket: "bkt",
        prefix: "lp",
        deleteLocalAfterUpload: true,
        apiEndpoint: emu.url,
      });
    } catch (e) {
      err = e;
    }
    assert(err instanceof ActshardError && /shard file to upload is missing/.test(err.line()), String(err));
    await untouched(join(elsewhere, "shard_0001.pkl.gz"), bytes);
  } finally {
    await emu.close();
  }
});

Deno.test("untrusted metadata.json: merge refuses a worker whose metadata names a file outside it, or a root with a bad worker name", async () => {
  for (const p of POISONS.filter((x) => !x.label.startsWith("gcs_path"))) {
    await using d = await tempDir();
    await writeWorkers(d.path, 2);
    const w = join(d.path, workerDirName(1, 2));
    const victim = join(d.path, "victim.pkl.gz");
    const bytes = new TextEncoder().encode("victim");
    await Deno.writeFile(victim, bytes);
    const m = JSON.parse(await Deno.readTextFile(join(w, "metadata.json")));
    p.apply(m.shards[0], victim);
    await Deno.writeTextFile(join(w, "metadata.json"), JSON.stringify(m));
    await refusal(() => mergeDatasets([d.path], d.path), p.names);
    await refusal(() => shardMain(["--merge", d.path, "--output", join(d.path, "copy")]), p.names);
    await untouched(victim, bytes);
  }
  await using d = await tempDir();
  await writeWorkers(d.path, 2);
  await mergeDatasets([d.path], d.path);
  const root = JSON.parse(await Deno.readTextFile(join(d.path, "metadata.json")));
  root.workers[0].name = "../elsewhere";
  await Deno.writeTextFile(join(d.path, "metadata.json"), JSON.stringify(root));
  await refusal(() => verifyMain([d.path]), "../elsewhere");
  await refusal(() => readMain([d.path]), "../elsewhere");
});

Deno.test("untrusted metadata.json on gs://: read and verify refuse ../x, /abs/x and another bucket", async () => {
  const emu = await startGcsEmulator({ port: 0, buckets: ["bkt"] });
  const env = Deno.env.get("STORAGE_EMULATOR_HOST");
  Deno.env.set("STORAGE_EMULATOR_HOST", emu.url);
  try {
    await using d = await tempDir();
    const ds = join(d.path, "ds");
    await writeDataset(ds, 2, [1], { gzipWorkers: 1 });
    const good = JSON.parse(await Deno.readTextFile(join(ds, "metadata.json")));
    const store = await GcsStore.open("bkt", "g", { apiEndpoint: emu.url });
    await store.writeSmall("shard_0001.pkl.gz", await Deno.readFile(join(ds, "shard_0001.pkl.gz")));
    const cases: [string, (e: Record<string, unknown>) => void][] = [
      ["../shard_0001.pkl.gz", (e) => (e.filename = "../shard_0001.pkl.gz")],
      ["/abs/shard_0001.pkl.gz", (e) => (e.filename = "/abs/shard_0001.pkl.gz")],
      ["another bucket", (e) => (e.gcs_path = "gs://other-bucket/g/shard_0001.pkl.gz")],
    ];
    for (const [names, apply] of cases) {
      const m = structuredClone(good);
      m.shards = m.shards.slice(0, 1);
      apply(m.shards[0]);
      await store.writeSmall("metadata.json", new TextEncoder().encode(JSON.stringify(m)));
      await refusal(() => readMain(["gs://bkt/g"]), names);
      await refusal(() => verifyMain(["gs://bkt/g", "--deep"]), names);
      await refusal(async () => verifyDataset(await openStore("gs://bkt/g")), names);
    }
  } finally {
    if (env === undefined) Deno.env.delete("STORAGE_EMULATOR_HOST");
    else Deno.env.set("STORAGE_EMULATOR_HOST", env);
    await emu.close();
  }
});
