import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { sharedPath, sharedTest, tempDir } from "./_shared.ts";
import { runScript, writeDataset } from "./_shard_fixtures.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { LocalStore } from "../lib/storage/local.ts";
import type { BlobStore } from "../lib/storage/types.ts";
import { main as verifyMain } from "../scripts/verify.ts";

const LAYERS = [1, 2];

async function dataset(dir: string) {
  return await writeDataset(dir, 9, LAYERS, { shardSizeBytes: 9 * 32 * 4 * 2 * 3, gzipWorkers: 1 });
}

function errorsOf(r: Awaited<ReturnType<typeof verifyDataset>>): string[] {
  return r.issues.filter((i) => i.level === "error").map((i) => `${i.shard ?? ""}: ${i.message}`);
}

Deno.test("verify: a clean dataset passes, in-process and via the CLI (exit 0)", async () => {
  await using d = await tempDir();
  const meta = await dataset(d.path);
  assert(meta.total_shards >= 3);
  const r = await verifyDataset(new LocalStore(d.path));
  assertEquals(errorsOf(r), []);
  assert(r.ok);
  assertEquals(r.records, 18);
  assertEquals(Object.keys(r.layers), ["1", "2"]);
  assertEquals(await verifyMain([d.path, "--json"]), 0);
  const cli = await runScript("verify.ts", [d.path]);
  assertEquals(cli.code, 0);
  assertMatch(cli.stdout, /OK/);
});

Deno.test("verify: one flipped byte fails, naming the shard", async () => {
  await using d = await tempDir();
  await dataset(d.path);
  const f = `${d.path}/shard_0002.pkl.gz`;
  const b = await Deno.readFile(f);
  b[Math.floor(b.length / 2)] ^= 0x01;
  await Deno.writeFile(f, b);
  const r = await verifyDataset(new LocalStore(d.path));
  assert(!r.ok);
  assert(
    errorsOf(r).some((e) => e.startsWith("shard_0002.pkl.gz") && /sha256|crc32c/.test(e)),
    errorsOf(r).join("\n"),
  );
  const cli = await runScript("verify.ts", [d.path]);
  assertEquals(cli.code, 1);
  assertMatch(cli.stdout, /shard_0002\.pkl\.gz/);
});

Deno.test("verify: truncated shard, missing shard, counts that disagree, unlisted shard file (an error)", async () => {
  await using d = await tempDir();
  await dataset(d.path);
  const b = await Deno.readFile(`${d.path}/shard_0001.pkl.gz`);
  await Deno.writeFile(`${d.path}/shard_0001.pkl.gz`, b.subarray(0, b.length - 100));
  await Deno.remove(`${d.path}/shard_0003.pkl.gz`);
  const meta = JSON.parse(await Deno.readTextFile(`${d.path}/metadata.json`));
  meta.shards[1].samples_per_layer["1"] += 1;
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(meta));
  await Deno.writeFile(`${d.path}/shard_0042.pkl.gz`, new Uint8Array(3));
  const r = await verifyDataset(new LocalStore(d.path));
  const errs = errorsOf(r);
  assert(errs.some((e) => /^shard_0001.*size .* \(truncated\?\)/.test(e)), errs.join("\n"));
  assert(errs.some((e) => /^shard_0001.*cannot decode/.test(e)), errs.join("\n"));
  // One prefix, and the shard's path is not repeated after its name.
  assert(errs.every((e) => !/cannot decode: cannot decode|\(.*shard_0001[^)]*\)/.test(e)), errs.join("\n"));
  assert(errs.some((e) => /^shard_0003.*missing/.test(e)), errs.join("\n"));
  assert(errs.some((e) => /^shard_0002.*layer 1: \d+ records, metadata says/.test(e)), errs.join("\n"));
  assert(
    errs.some((e) => /^shard_0042.pkl.gz: shard file not listed in metadata.json/.test(e)),
    errs.join("\n"),
  );
  assertEquals(await verifyMain([d.path]), 1);
});

Deno.test("verify: shards deleted after a verified upload are named as such, pointing at the gs:// copy", async () => {
  await using d = await tempDir();
  await dataset(d.path);
  const meta = JSON.parse(await Deno.readTextFile(`${d.path}/metadata.json`));
  // as extract --upload_to_gcs --delete_local_after_upload leaves it: shard 1 uploaded and deleted, shard 2 kept,
  // shard 3 lost without an upload
  Object.assign(meta.shards[0], { gcs_path: "gs://b/run/shard_0001.pkl.gz", gcs_verified: true });
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(meta));
  await Deno.remove(`${d.path}/shard_0001.pkl.gz`);
  await Deno.remove(`${d.path}/shard_0003.pkl.gz`);
  const r = await verifyDataset(new LocalStore(d.path));
  assert(!r.ok);
  const errs = errorsOf(r);
  assert(
    errs.some((e) =>
      e === "shard_0001.pkl.gz: not on local disk: deleted after its verified upload to " +
          "gs://b/run/shard_0001.pkl.gz"
    ),
    errs.join("\n"),
  );
  assert(
    errs.some((e) => e === "shard_0003.pkl.gz: shard listed in metadata.json is missing"),
    errs.join("\n"),
  );
  assert(
    r.issues.some((i) => i.level === "note" && /run verify gs:\/\/b\/run to check them/.test(i.message)),
  );
  const cli = await runScript("verify.ts", [d.path]);
  assertEquals(cli.code, 1);
  assertMatch(cli.stdout, /verify gs:\/\/b\/run/);
});

Deno.test("verify: a complete run whose metadata and files both lost the last shard fails (records < prompts)", async () => {
  await using d = await tempDir();
  await writeDataset(d.path, 9, LAYERS, {
    shardSizeBytes: 9 * 32 * 4 * 2 * 3,
    gzipWorkers: 1,
    base: { shard_size_gb: 1, config: { n_prompts: 9, layers_to_extract: LAYERS } },
  });
  const clean = await verifyDataset(new LocalStore(d.path));
  assertEquals(errorsOf(clean), []);
  // drop the last shard consistently: its file, its entry, and the totals, as a stale or hand-edited copy would
  const meta = JSON.parse(await Deno.readTextFile(`${d.path}/metadata.json`));
  const last = meta.shards.pop();
  await Deno.remove(`${d.path}/${last.filename}`);
  meta.total_shards = meta.shards.length;
  meta.total_samples -= last.total_samples_in_shard;
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(meta));
  const kept = 9 - last.samples_per_layer["1"];
  assert(kept < 9);
  for (const deep of [false, true]) {
    const r = await verifyDataset(new LocalStore(d.path), { deep });
    assertEquals(errorsOf(r), [
      `: layer 1: ${kept} records listed, but the complete run had 9 prompts`,
      `: layer 2: ${kept} records listed, but the complete run had 9 prompts`,
    ]);
  }
  assertEquals((await runScript("verify.ts", [d.path])).code, 1);
});

Deno.test("verify: store-reported crc32c is used without downloading unless --deep", async () => {
  await using d = await tempDir();
  const meta = await dataset(d.path);
  const local = new LocalStore(d.path);
  let opened = 0;
  const crcs = new Map(meta.shards.map((s) => [s.filename, s.crc32c]));
  const store: BlobStore = { // test double standing in for GCS object info (crc32c per object)
    url: "fake://gcs",
    list: async () => (await local.list()).map((o) => ({ ...o, crc32c: crcs.get(o.name) })),
    stat: (n) => local.stat(n),
    read: (n) => local.read(n),
    readRange: (n, a, b) => local.readRange(n, a, b),
    openRead: (n) => (opened++, local.openRead(n)),
  };
  const quick = await verifyDataset(store);
  assert(quick.ok);
  assertEquals(opened, 0);
  assert(quick.shards.every((s) => s.method === "object-info"));
  crcs.set("shard_0001.pkl.gz", 1234);
  assert(!(await verifyDataset(store)).ok);
  crcs.set("shard_0001.pkl.gz", meta.shards[0].crc32c);
  const deep = await verifyDataset(store, { deep: true });
  assert(deep.ok);
  assertEquals(opened, meta.total_shards);
});

sharedTest("verify: a seed-written dataset decodes and counts, says it has no checksums", async () => {
  await using d = await tempDir();
  await Deno.copyFile(
    sharedPath("data", "seed", "seed_written_shard_0001.pkl.gz"),
    `${d.path}/shard_0001.pkl.gz`,
  );
  const meta = JSON.parse(await Deno.readTextFile(sharedPath("data", "seed", "seed_written_metadata.json")));
  meta.shards = meta.shards.slice(0, 1);
  meta.total_shards = 1;
  meta.total_samples = 3;
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(meta));
  const r = await verifyDataset(new LocalStore(d.path));
  assertEquals(errorsOf(r), []);
  assertEquals(r.records, 3);
  assert(r.issues.some((i) => i.level === "note" && /no checksums/.test(i.message)));
  // counts that disagree with the seed's metadata are caught too
  meta.shards[0].samples_per_layer["10"] = 2;
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(meta));
  assert(!(await verifyDataset(new LocalStore(d.path))).ok);
});
