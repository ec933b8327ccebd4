/**
 * verify cannot be fooled: one flipped byte anywhere in a shard, for every format × codec, is caught with and
 * without --deep (seeded offsets); a wrong crc32c/sha256 in metadata.json is caught; bytes after the payload are
 * an error even when metadata.json was updated to match them; unlisted shard files fail unless --allow_extra; a
 * run that did not finish exits 3 unless --allow_incomplete.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { runScript, writeDataset } from "./_shard_fixtures.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { crc32c } from "../lib/util/crc32c.ts";
import { mulberry32 } from "../lib/util/seeded.ts";
import { createHash } from "node:crypto";
import { main as verifyMain } from "../scripts/verify.ts";
import type { ShardFormat } from "../lib/shard/writer.ts";
import type { Codec } from "../lib/shard/codecs.ts";
import { uploadDataset } from "../lib/pipeline/upload_dataset.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";

const LAYERS = [1, 2];
const COMBOS: [ShardFormat, Codec][] = (["pickle", "safetensors"] as const).flatMap((f) =>
  (["none", "zstd", "gzip"] as const).map((c) => [f, c] as [ShardFormat, Codec])
);

function errorsOf(r: Awaited<ReturnType<typeof verifyDataset>>): string[] {
  return r.issues.filter((i) => i.level === "error").map((i) => `${i.shard ?? ""}: ${i.message}`);
}

async function small(dir: string, format: ShardFormat, codec: Codec, n = 3) {
  return await writeDataset(dir, n, LAYERS, { format, codec, gzipWorkers: 1 });
}

for (const [format, codec] of COMBOS) {
  Deno.test(`verify: a flipped byte at 20 seeded offsets of a ${format}/${codec} shard is always caught (with and without --deep)`, async () => {
    await using d = await tempDir();
    const meta = await small(d.path, format, codec);
    assertEquals(meta.total_shards, 1);
    const file = `${d.path}/${meta.shards[0].filename}`;
    const clean = await Deno.readFile(file);
    assert((await verifyDataset(new LocalStore(d.path))).ok);
    const rand = mulberry32(format.length * 31 + codec.length);
    // the first and last bytes (the pickle's STOP, a zstd frame's tail, the safetensors header length) + 18 random
    const offsets = [
      0,
      clean.length - 1,
      ...Array.from({ length: 18 }, () => Math.floor(rand() * clean.length)),
    ];
    const missed: string[] = [];
    for (const off of offsets) {
      const b = clean.slice();
      b[off] ^= 1 + Math.floor(rand() * 255);
      await Deno.writeFile(file, b);
      for (const deep of [false, true]) {
        const r = await verifyDataset(new LocalStore(d.path), { deep });
        if (r.ok) missed.push(`offset ${off}${deep ? " --deep" : ""}`);
        else assert(errorsOf(r).some((e) => e.startsWith(meta.shards[0].filename)), errorsOf(r).join("\n"));
      }
    }
    await Deno.writeFile(file, clean);
    assertEquals(missed, [], `${missed.length} of ${offsets.length * 2} flips passed verify`);
    assert((await verifyDataset(new LocalStore(d.path), { deep: true })).ok);
  });
}

Deno.test("verify: a wrong crc32c or sha256 in metadata.json is caught, whichever is wrong", async () => {
  for (const [format, codec] of COMBOS) {
    await using d = await tempDir();
    const meta = await small(d.path, format, codec);
    const text = await Deno.readTextFile(`${d.path}/metadata.json`);
    for (const field of ["crc32c", "sha256"] as const) {
      const m = JSON.parse(text);
      const e = m.shards[0];
      e[field] = field === "crc32c"
        ? (e.crc32c + 1) >>> 0
        : e.sha256.replace(/^./, e.sha256[0] === "0" ? "1" : "0");
      await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(m));
      for (const deep of [false, true]) {
        const r = await verifyDataset(new LocalStore(d.path), { deep });
        const errs = errorsOf(r);
        assert(
          errs.some((x) => x === `${meta.shards[0].filename}: ${field} mismatch (file changed or corrupt)`),
          `${format}/${codec} ${field}: ${errs.join("\n")}`,
        );
      }
    }
  }
});

Deno.test("verify: metadata.json of an actshard dataset without a shard's checksums fails (nothing would be hashed)", async () => {
  await using d = await tempDir();
  await small(d.path, "pickle", "none");
  const m = JSON.parse(await Deno.readTextFile(`${d.path}/metadata.json`));
  delete m.shards[0].sha256;
  delete m.shards[0].crc32c;
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(m));
  const errs = errorsOf(await verifyDataset(new LocalStore(d.path)));
  assert(errs.some((e) => /no bytes\/crc32c\/sha256 for this shard/.test(e)), errs.join("\n"));
});

Deno.test("verify: bytes after the end of the pickle / safetensors payload are an error, even with matching checksums", async () => {
  for (const [format, codec] of COMBOS.filter(([, c]) => c === "none")) {
    await using d = await tempDir();
    const meta = await small(d.path, format, codec);
    const name = meta.shards[0].filename;
    const b = await Deno.readFile(`${d.path}/${name}`);
    const longer = new Uint8Array(b.length + 5);
    longer.set(b);
    longer.set([0x2e, 1, 2, 3, 4], b.length);
    await Deno.writeFile(`${d.path}/${name}`, longer);
    // metadata.json updated to match the longer file: only the decoder can tell
    const m = JSON.parse(await Deno.readTextFile(`${d.path}/metadata.json`));
    Object.assign(m.shards[0], {
      bytes: longer.length,
      crc32c: crc32c(longer),
      sha256: createHash("sha256").update(longer).digest("hex"),
    });
    await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(m));
    for (const deep of [false, true]) {
      const errs = errorsOf(await verifyDataset(new LocalStore(d.path), { deep }));
      assert(
        errs.some((e) => e.startsWith(name) && /trailing bytes/.test(e)),
        `${format}: ${errs.join("\n")}`,
      );
    }
  }
});

Deno.test("verify: an unlisted shard file fails (exit 1) unless --allow_extra (a warning, exit 0)", async () => {
  await using d = await tempDir();
  await small(d.path, "pickle", "gzip");
  await Deno.copyFile(`${d.path}/shard_0001.pkl.gz`, `${d.path}/shard_0002.pkl.gz`);
  const r = await verifyDataset(new LocalStore(d.path));
  assertEquals(errorsOf(r), [
    "shard_0002.pkl.gz: shard file not listed in metadata.json (partial or stray): remove it, or pass --allow_extra",
  ]);
  assertEquals(await verifyMain([d.path]), 1);
  const allowed = await verifyDataset(new LocalStore(d.path), { allowExtra: true });
  assert(allowed.ok);
  assert(allowed.issues.some((i) => i.level === "warning" && i.shard === "shard_0002.pkl.gz"));
  assertEquals(await verifyMain([d.path, "--allow_extra"]), 0);
});

Deno.test("verify: a clean but unfinished run exits 3 (in_progress, no shards, no metadata.json) unless --allow_incomplete", async () => {
  await using d = await tempDir();
  await small(d.path, "pickle", "gzip");
  const text = await Deno.readTextFile(`${d.path}/metadata.json`);
  const m = JSON.parse(text);
  m.status = "in_progress";
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(m));
  const r = await verifyDataset(new LocalStore(d.path));
  assert(r.ok);
  assertEquals(r.complete, false);
  assertEquals(r.incomplete, ["status is in_progress: the run was interrupted (or is still running)"]);
  const cli = await runScript("verify.ts", [d.path]);
  assertEquals(cli.code, 3, cli.stdout + cli.stderr);
  assertMatch(cli.stdout, /INCOMPLETE: the shards are clean but the run did not finish/);
  assertEquals(await verifyMain([d.path, "--allow_incomplete"]), 0);
  // corrupt beats incomplete: exit 1
  const b = await Deno.readFile(`${d.path}/shard_0001.pkl.gz`);
  b[10] ^= 0xff;
  await Deno.writeFile(`${d.path}/shard_0001.pkl.gz`, b);
  assertEquals(await verifyMain([d.path, "--allow_incomplete"]), 1);
  // no shards at all
  await using e = await tempDir();
  await writeDataset(e.path, 0, LAYERS);
  assertEquals(await verifyMain([e.path]), 3);
  // help lists the codes
  const help = await runScript("verify.ts", ["--help"]);
  assertEquals(help.code, 0);
  assertMatch(
    help.stdout.replace(/\s+/g, " "),
    /0 complete and clean; 1 corrupt or inconsistent; 2 usage error; 3 clean but incomplete/,
  );
});

Deno.test("shard --input of an interrupted run refuses without --allow_incomplete; with it the output stays in_progress (verify exits 3)", async () => {
  await using d = await tempDir();
  await writeDataset(d.path, 3, LAYERS, { gzipWorkers: 1 });
  const m = JSON.parse(await Deno.readTextFile(`${d.path}/metadata.json`));
  m.status = "in_progress";
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(m));
  await using o = await tempDir();
  const out = `${o.path}/out`;
  const refused = await runScript("shard.ts", ["--input", d.path, "--output", out]);
  assertEquals(refused.code, 1, refused.stderr);
  const lines = refused.stderr.trim().split("\n");
  assertEquals(lines.length, 1, refused.stderr);
  assertMatch(lines[0], /^shard: --input is not a finished run \(status in_progress\).*--allow_incomplete/);
  await Deno.stat(`${out}/metadata.json`).then(
    () => assert(false, "refused conversion wrote metadata.json"),
    () => {},
  );
  const ok = await runScript("shard.ts", ["--input", d.path, "--output", out, "--allow_incomplete"]);
  assertEquals(ok.code, 0, ok.stderr);
  assertMatch(ok.stdout, /status in_progress, as its input/);
  const meta = JSON.parse(await Deno.readTextFile(`${out}/metadata.json`));
  assertEquals([meta.status, meta.config.resharded_from_status, meta.total_samples], [
    "in_progress",
    "in_progress",
    6,
  ]);
  assertEquals(await verifyMain([out]), 3);
  assertEquals(await verifyMain([out, "--allow_incomplete"]), 0);
});

Deno.test("verify gs://: object info (size + crc32c) without --deep; with --deep every downloaded byte is hashed, so a flipped byte on the server is caught", async () => {
  await using emuDir = await tempDir();
  const emu = await startGcsEmulator({ port: 0, dir: emuDir.path, buckets: ["bkt"] });
  try {
    for (const [format, codec] of COMBOS.filter(([, c]) => c !== "gzip")) {
      await using d = await tempDir();
      const meta = await small(d.path, format, codec, 150); // ≈ 330 KB: a download of several chunks
      const prefix = `${format}-${codec}`;
      await uploadDataset({ outputDir: d.path, bucket: "bkt", prefix, apiEndpoint: emu.url });
      const store = await GcsStore.open("bkt", prefix, { apiEndpoint: emu.url });
      assert((await verifyDataset(store, { deep: true })).ok);
      // the object's bytes as the emulator keeps them (the object's recorded crc32c stays: silent bit rot)
      const remote = (await store.list()).find((o) => o.name === meta.shards[0].filename)!;
      const data = await findDataFile(
        emuDir.path,
        remote.size,
        await Deno.readFile(`${d.path}/${remote.name}`),
      );
      const clean = await Deno.readFile(data);
      const rand = mulberry32(99);
      const missed: number[] = [];
      for (let t = 0; t < 20; t++) {
        const off = Math.floor(rand() * clean.length);
        const b = clean.slice();
        b[off] ^= 1 + Math.floor(rand() * 255);
        await Deno.writeFile(data, b);
        if ((await verifyDataset(store, { deep: true })).ok) missed.push(off);
        const quick = await verifyDataset(store);
        assertEquals(quick.shards[0].method, "object-info", "without --deep: object info only");
      }
      await Deno.writeFile(data, clean);
      assertEquals(missed, [], `${format}/${codec}: flips missed by verify --deep gs://`);
      // a prefix whose uploads did not all finish publishes status in_progress: clean but incomplete (exit 3)
      const published = JSON.parse(new TextDecoder().decode(await store.read("metadata.json")));
      published.status = "in_progress";
      await store.writeSmall("metadata.json", new TextEncoder().encode(JSON.stringify(published)));
      const partial = await verifyDataset(store);
      assert(partial.ok);
      assertEquals(partial.incomplete, [
        "status is in_progress: not every upload finished (or the run is still going)",
      ]);
    }
  } finally {
    await emu.close();
  }
});

/** The emulator's data file holding exactly `bytes` (searched by size, then content). */
async function findDataFile(root: string, size: number, bytes: Uint8Array): Promise<string> {
  for (const o of await new LocalStore(root).list()) {
    if (o.size !== size || !o.name.includes("/data/")) continue;
    const p = `${root}/${o.name}`;
    if ((await Deno.readFile(p)).every((x, i) => x === bytes[i])) return p;
  }
  throw new Error("object data file not found");
}
