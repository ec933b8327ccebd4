/**
 * The format and codec registries: a toy format registered here (and nowhere else) round-trips through
 * ShardWriter → Dataset → verify; the reader dispatches on each metadata.json entry's format/codec (unknown
 * values and names that disagree are one line naming the shard); seed entries without those fields read by
 * file name; the dtype rule and the flag choices come from the registries.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { sharedPath, sharedTest, tempDir } from "./_shared.ts";
import { promptRecords, runScript, writeDataset } from "./_shard_fixtures.ts";
import { ActshardError } from "../lib/errors.ts";
import type { ActivationRecord } from "../lib/types.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import { Dataset, type ReadRecord } from "../lib/shard/reader.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { ByteSource } from "../lib/shard/byte_source.ts";
import { CODEC_TABLE, codecFromName, CODECS } from "../lib/shard/codecs.ts";
import { isShardLocation } from "../lib/shard/metadata_check.ts";
import { parseExtractFlags } from "../lib/cli/extract_flags.ts";
import {
  checkFormatDtype,
  FORMATS,
  parseShardFileName,
  registerShardFormat,
  SHARD_FORMATS,
  shardFileName,
  type ShardFormat,
  type ShardFormatSpec,
} from "../lib/shard/formats/mod.ts";

const te = new TextEncoder();
const td = new TextDecoder();

/**
 * A toy format, defined only here: `TOY1`, then per record `u32 head length · u32 data length · JSON head ·
 * float32 bytes`, then a zero head length.
 */
const TOY: ShardFormatSpec = {
  name: "toy",
  extension: "toy",
  dtypes: { float32: true, float16: "toy shards are float32 only", bfloat16: "toy shards are float32 only" },
  scratchShards: 0,
  encoder(ctx) {
    const lengths = (head: number, data: number) => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint32(0, head, true);
      new DataView(b.buffer).setUint32(4, data, true);
      return b;
    };
    return {
      begin: () => ctx.out(te.encode("TOY1")),
      async record(r: ActivationRecord) {
        const { activation, ...keys } = r;
        const head = te.encode(JSON.stringify(keys));
        const data = new Uint8Array(activation.slice().buffer);
        await ctx.out(lengths(head.length, data.length));
        await ctx.out(head);
        await ctx.out(data);
      },
      finish: () => ctx.out(lengths(0, 0)),
      abort: () => Promise.resolve(),
    };
  },
  async *decode(stream, where) {
    const src = new ByteSource(stream, where);
    try {
      if (td.decode(await src.read(4)) !== "TOY1") throw new ActshardError("not a toy shard", { where });
      for (;;) {
        const n = new DataView((await src.read(8)).slice().buffer);
        const [headLen, dataLen] = [n.getUint32(0, true), n.getUint32(4, true)];
        if (headLen === 0) break;
        const keys = JSON.parse(td.decode(await src.read(headLen))) as Omit<ActivationRecord, "activation">;
        const data = (await src.read(dataLen)).slice();
        yield {
          layer: keys.layer,
          task_id: keys.task_id,
          sample_idx: keys.sample_idx,
          record: () => ({ ...keys, activation: new Float32Array(data.buffer), dtype: "float32" as const }),
        };
      }
      if (!(await src.atEnd())) throw new ActshardError("bytes after the toy shard's end", { where });
    } finally {
      await src.cancel();
    }
  },
};
registerShardFormat(TOY);

async function all(dir: string): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  for await (const r of (await Dataset.open(dir)).records()) out.push(r);
  return out;
}

async function editMetadata(dir: string, edit: (m: { shards: Record<string, unknown>[] }) => void) {
  const p = `${dir}/metadata.json`;
  const m = JSON.parse(await Deno.readTextFile(p));
  edit(m);
  await Deno.writeTextFile(p, JSON.stringify(m, null, 2));
}

/** The one-line error reading `dir` fails with. */
async function readError(dir: string): Promise<string> {
  let line = "";
  await assertRejects(() => all(dir), (e: unknown) => {
    assert(e instanceof ActshardError, `not an ActshardError: ${e}`);
    line = e.line();
    assert(!line.includes("\n"), line);
    return true;
  });
  return line;
}

for (const codec of ["gzip", "none"] as const) {
  Deno.test(`a toy format registered in the test only round-trips ShardWriter → Dataset → verify (${codec})`, async () => {
    await using d = await tempDir();
    const layers = [3, 5];
    const written = Array.from({ length: 6 }, (_, s) => promptRecords(s, layers)).flat();
    const w = await ShardWriter.open({
      dir: d.path,
      format: "toy" as ShardFormat,
      codec,
      dtype: "float32",
      shardSizeBytes: 2 * 9 * 32 * 4 * 2, // about two prompts per shard: several shards
      base: { shard_size_gb: 1 },
      gzipWorkers: 1,
    });
    for (let s = 0; s < 6; s++) await w.write(written.filter((r) => r.sample_idx === s));
    const meta = await w.close();
    assert(meta.shards.length >= 3, `${meta.shards.length} shards`);
    for (const e of meta.shards) {
      assertEquals(e.format as string, "toy");
      assertEquals(
        e.filename,
        `shard_${String(e.shard_id).padStart(4, "0")}.toy${CODEC_TABLE[codec].suffix}`,
      );
      assert(isShardLocation(e.filename), e.filename);
    }
    const got = await all(d.path);
    assertEquals(got.length, written.length);
    for (const [i, r] of got.entries()) {
      const want = written[i];
      assertEquals([r.layer, r.sample_idx, r.task_id, r.prompt, r.dtype], [
        want.layer,
        want.sample_idx,
        want.task_id,
        want.prompt,
        "float32",
      ]);
      assertEquals(r.shape, want.shape);
      assertEquals(Array.from(r.activation), Array.from(want.activation));
    }
    const filtered = [];
    for await (const r of (await Dataset.open(d.path)).records({ layer: 5, sample_idx: 4 })) filtered.push(r);
    assertEquals(filtered.map((r) => [r.layer, r.sample_idx]), [[5, 4]]);
    const report = await verifyDataset(new LocalStore(d.path), { deep: true });
    assertEquals(report.issues.filter((i) => i.level === "error"), []);
    assert(report.ok && report.complete, JSON.stringify(report.issues));
    assertEquals(report.records, written.length);
    assertEquals(report.shards.map((s) => s.method), meta.shards.map(() => "streamed"));
    // a flipped byte inside a record is caught (hashes), and the toy decoder is what read it
    const first = `${d.path}/${meta.shards[0].filename}`;
    const bytes = await Deno.readFile(first);
    bytes[bytes.length >> 1] ^= 0xff;
    await Deno.writeFile(first, bytes);
    const bad = await verifyDataset(new LocalStore(d.path), { deep: true });
    assert(
      !bad.ok && bad.issues.some((i) => i.shard === meta.shards[0].filename && /sha256/.test(i.message)),
    );
  });
}

Deno.test("the toy format's dtype rule is its own registry entry's: float16 is refused before any file", async () => {
  await using d = await tempDir();
  await assertRejects(
    () =>
      ShardWriter.open({
        dir: `${d.path}/out`,
        format: "toy" as ShardFormat,
        codec: "none",
        dtype: "float16",
        shardSizeBytes: 1 << 20,
        base: {},
      }),
    ActshardError,
    "toy shards cannot hold float16 (toy shards are float32 only)",
  );
  assertEquals(await Array.fromAsync(Deno.readDir(d.path)), []);
});

Deno.test("pickle + bfloat16: one rule, the same line from the writer, extract's flags and the shard stage", async () => {
  const line = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      assert(e instanceof ActshardError);
      return e.line();
    }
    throw new Error("not refused");
  };
  const rule = line(() => checkFormatDtype("pickle", "bfloat16"));
  // (the toy format holds float32 only, so safetensors is still the one format for bfloat16)
  assertEquals(
    rule,
    "pickle shards cannot hold bfloat16 (numpy has no bfloat16) (--dtype): " +
      "use --dtype float32|float16, or --format safetensors for bfloat16",
  );
  assertEquals(line(() => parseExtractFlags(["--dtype", "bfloat16"])), rule);
  checkFormatDtype("safetensors", "bfloat16");
  const ok = parseExtractFlags(["--dtype", "bfloat16", "--format", "safetensors"]);
  assert(!("help" in ok) && ok.dtype === "bfloat16");
  await using d = await tempDir();
  await writeDataset(d.path, 1, [1]);
  const r = await runScript("shard.ts", [
    "--input",
    d.path,
    "--output",
    `${d.path}/o`,
    "--dtype",
    "bfloat16",
  ]);
  assertEquals(r.code, 2, r.stderr);
  assertEquals(r.stderr.trim(), `shard: ${rule}`);
});

Deno.test("flag choices, file names and name parsing derive from the registries", () => {
  assertEquals([...CODECS], Object.keys(CODEC_TABLE));
  assertEquals([...FORMATS], ["pickle", "safetensors"]);
  for (const [key, spec] of Object.entries(SHARD_FORMATS)) assertEquals(spec.name, key);
  const extract = parseExtractFlags(["--help"]);
  assert("help" in extract);
  assert(
    extract.help.includes("pickle|safetensors") && extract.help.includes("gzip|zstd|none"),
    extract.help,
  );
  assert(extract.help.includes("(bfloat16: safetensors only)"), extract.help);
  for (const format of [...FORMATS, "toy" as ShardFormat]) {
    for (const codec of CODECS) {
      const name = shardFileName(12, format, codec);
      assertEquals(parseShardFileName(name), { id: 12, format, codec });
      assertEquals(codecFromName(name), codec);
    }
  }
  assertEquals(shardFileName(3, "safetensors", "zstd"), "shard_0003.safetensors.zst");
  assertEquals(parseShardFileName("shard_0001.pkl.lz4"), null);
  assertEquals(parseShardFileName("shard_01.pkl"), null);
  assertEquals(
    (() => {
      try {
        registerShardFormat({ ...TOY, name: "toy2" });
      } catch (e) {
        return e instanceof ActshardError && /already registered/.test(e.message);
      }
    })(),
    true,
  );
});

Deno.test("reader and verify dispatch on the metadata entry: unknown format/codec, or a name that disagrees, is one line naming the shard", async () => {
  await using d = await tempDir();
  const layers = [1, 2];
  await writeDataset(d.path, 4, layers, { shardSizeBytes: 2 * 9 * 32 * 4 * 2, gzipWorkers: 1 });
  const pristine = await Deno.readTextFile(`${d.path}/metadata.json`);
  const restore = () => Deno.writeTextFile(`${d.path}/metadata.json`, pristine);
  const cases: [Record<string, unknown>, string][] = [
    [
      { format: "parquet" },
      'metadata.json says format "parquet", which this actshard does not know (it knows pickle, safetensors, toy)',
    ],
    [
      { codec: "lz4" },
      'metadata.json says codec "lz4", which this actshard does not know (it knows gzip, zstd, none)',
    ],
    [{ format: "safetensors" }, "file name says pickle/gzip but metadata.json says safetensors/gzip"],
    [{ codec: "none" }, "file name says pickle/gzip but metadata.json says pickle/none"],
    [{ format: 7 }, "metadata.json says format 7, which this actshard does not know"],
  ];
  for (const [patch, message] of cases) {
    await restore();
    await editMetadata(d.path, (m) => Object.assign(m.shards[0], patch));
    const line = await readError(d.path);
    assert(
      line.startsWith(`${message}`) && line.includes("/shard_0001.pkl.gz)"),
      `${JSON.stringify(patch)}: ${line}`,
    );
    const report = await verifyDataset(new LocalStore(d.path), { deep: true });
    const errors = report.issues.filter((i) => i.level === "error");
    assertEquals(errors.length, 1, JSON.stringify(errors));
    assertEquals(errors[0].shard, "shard_0001.pkl.gz");
    assert(errors[0].message.startsWith(`cannot decode: ${message}`), errors[0].message);
  }
  // the CLI edge: one line, exit 1
  await restore();
  await editMetadata(d.path, (m) => Object.assign(m.shards[1], { format: "parquet" }));
  const r = await runScript("read.ts", [d.path, "--layer", "1", "--sample_idx", "3"]);
  assertEquals(r.code, 1, r.stderr);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert(/^read: metadata\.json says format "parquet", .*shard_0002\.pkl\.gz/.test(r.stderr), r.stderr);
  // seed-style entries (no format/codec fields) read by their file names
  await restore();
  await editMetadata(d.path, (m) => {
    for (const s of m.shards) delete s.format, delete s.codec;
  });
  assertEquals((await all(d.path)).length, 4 * layers.length);
  const report = await verifyDataset(new LocalStore(d.path), { deep: true });
  assert(report.ok, JSON.stringify(report.issues));
});

Deno.test("a safetensors dataset whose entries say so reads by range and by stream, and a renamed file is refused", async () => {
  await using d = await tempDir();
  const meta = await writeDataset(d.path, 3, [0], { format: "safetensors", codec: "none" });
  const [rec] = await Array.fromAsync((await Dataset.open(d.path)).records({ sample_idx: 2 }));
  assertEquals([rec.layer, rec.sample_idx], [0, 2]);
  const name = meta.shards[0].filename;
  await Deno.rename(`${d.path}/${name}`, `${d.path}/${name.replace(".safetensors", ".pkl")}`);
  await editMetadata(d.path, (m) => {
    m.shards[0].filename = String(m.shards[0].filename).replace(".safetensors", ".pkl");
    m.shards[0].local_path = String(m.shards[0].local_path).replace(".safetensors", ".pkl");
  });
  const line = await readError(d.path);
  assert(/^file name says pickle\/none but metadata\.json says safetensors\/none/.test(line), line);
});

sharedTest("seed-written data (metadata without format/codec) reads by file name", async () => {
  await using d = await tempDir();
  await Deno.copyFile(sharedPath("data/seed/seed_written_shard_0001.pkl.gz"), `${d.path}/shard_0001.pkl.gz`);
  const seed = JSON.parse(await Deno.readTextFile(sharedPath("data/seed/seed_written_metadata.json")));
  assert(!("format" in seed.shards[0]) && !("codec" in seed.shards[0]));
  seed.shards = seed.shards.slice(0, 1);
  seed.total_shards = 1;
  seed.total_samples = seed.shards[0].total_samples_in_shard;
  seed.shards[0].local_path = "shard_0001.pkl.gz";
  await Deno.writeTextFile(`${d.path}/metadata.json`, JSON.stringify(seed));
  const got = await all(d.path);
  assertEquals(got.map((r) => r.layer), [10, 11, 12]);
  assertEquals(got[0].shape, [100, 896]);
  const report = await verifyDataset(new LocalStore(d.path));
  assertEquals(report.issues.filter((i) => i.level === "error"), []);
  assertEquals(report.records, 3);
});
