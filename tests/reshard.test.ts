/**
 * reshardDataset (lib/shard/reshard.ts), the library side of `deno task shard --input --output`: every record
 * is carried into the new format/codec/dtype/shard size, the output's metadata names its source, an unfinished
 * input is refused before the output is locked or created (with `allowIncomplete` the output stays
 * in_progress), an existing dataset is replaced only with `overwrite`, and a failed read leaves no temp file.
 */
import { join } from "node:path";
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { promptRecords, writeDataset } from "./_shard_fixtures.ts";
import { reshardDataset } from "../lib/shard/reshard.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { ActshardError } from "../lib/errors.ts";

const LAYERS = [3, 5];

async function records(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const r of (await Dataset.open(dir)).records()) {
    out.push(
      `${r.task_id} ${r.sample_idx} ${r.layer} ${r.shape} ${r.dtype} ${Array.from(r.activation).join(",")}`,
    );
  }
  return out;
}

/** The ActshardError `p` rejects with. */
async function refusal(p: Promise<unknown>): Promise<ActshardError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ActshardError) return e;
    throw e;
  }
  throw new Error("expected a refusal");
}

/** A lockOutput that records when it was taken and released. */
function lockSpy() {
  const events: string[] = [];
  return {
    events,
    lockOutput: async (dir: string) => {
      await Deno.mkdir(dir, { recursive: true });
      events.push(`lock ${dir}`);
      return { release: () => events.push("release") };
    },
  };
}

Deno.test("reshardDataset: pickle/gzip → safetensors/zstd, smaller shards: every record, fresh metadata naming its source", async () => {
  await using d = await tempDir();
  const src = join(d.path, "src"), dst = join(d.path, "dst");
  await writeDataset(src, 6, LAYERS, { codec: "none" });
  const spy = lockSpy();
  const r = await reshardDataset({
    input: src,
    output: dst,
    format: "safetensors",
    codec: "zstd",
    dtype: "float32",
    shardSizeGb: 3000 / 2 ** 30, // a few records per shard
    lockOutput: spy.lockOutput,
  });
  assertEquals(spy.events, [`lock ${dst}`, "release"]);
  assertEquals(r.records, 12);
  assertEquals(r.incomplete, false);
  assert(r.shards > 1, `want several shards, got ${r.shards}`);
  const meta = await readMetadata(new LocalStore(dst));
  assertEquals(meta, r.metadata);
  assertEquals(meta.status, "complete");
  assertEquals(meta.total_shards, r.shards);
  assert(meta.shards.every((s) => s.filename.endsWith(".safetensors.zst")), JSON.stringify(meta.shards));
  assertEquals(meta.config?.resharded_from, new LocalStore(src).url);
  assertEquals([meta.config?.format, meta.config?.codec, meta.config?.dtype], [
    "safetensors",
    "zstd",
    "float32",
  ]);
  assertEquals(await records(dst), await records(src));
});

Deno.test("reshardDataset: an unfinished input is refused before the output is locked; allowIncomplete carries in_progress", async () => {
  await using d = await tempDir();
  const src = join(d.path, "src"), dst = join(d.path, "dst");
  const w = await ShardWriter.open({
    dir: src,
    format: "pickle",
    codec: "none",
    dtype: "float32",
    shardSizeBytes: 1 << 30,
    base: { shard_size_gb: 1 },
  });
  for (let s = 0; s < 3; s++) await w.write(promptRecords(s, LAYERS));
  await w.close({ incomplete: true });
  const opts = {
    input: src,
    output: dst,
    format: "pickle",
    codec: "gzip",
    dtype: "float16",
    shardSizeGb: 1,
  } as const;
  const spy = lockSpy();
  const e = await refusal(reshardDataset({ ...opts, lockOutput: spy.lockOutput }));
  assertMatch(e.message, /^--input is not a finished run \(status in_progress\)/);
  assertEquals(spy.events, []);
  assertEquals(await Deno.stat(dst).then(() => true, () => false), false, "no output dir created");

  const r = await reshardDataset({ ...opts, allowIncomplete: true });
  assertEquals([r.records, r.incomplete], [6, true]);
  const meta = await readMetadata(new LocalStore(dst));
  assertEquals(meta.status, "in_progress");
  assertEquals(meta.config?.resharded_from_status, "in_progress");
});

/** Options converting `input` into uncompressed float32 pickle shards of ≤ 1 GB in `output`. */
function plainPickle(input: string, output: string) {
  return { input, output, format: "pickle", codec: "none", dtype: "float32", shardSizeGb: 1 } as const;
}

Deno.test("reshardDataset: an output holding a dataset is replaced only with overwrite", async () => {
  await using d = await tempDir();
  const src = join(d.path, "src"), dst = join(d.path, "dst");
  await writeDataset(src, 2, LAYERS, { codec: "none" });
  await writeDataset(dst, 4, LAYERS, { format: "safetensors", codec: "none" });
  const opts = plainPickle(src, dst);
  const e = await refusal(reshardDataset(opts));
  assertEquals(e.message, "output already holds a dataset");
  assertEquals((await readMetadata(new LocalStore(dst))).total_samples, 8, "untouched");
  const r = await reshardDataset({ ...opts, overwrite: true });
  assertEquals(r.records, 4);
  assertEquals((await readMetadata(new LocalStore(dst))).total_samples, 4);
});

Deno.test("reshardDataset: an input that fails mid-read leaves no temp file in the output", async () => {
  await using d = await tempDir();
  const src = join(d.path, "src"), dst = join(d.path, "dst");
  const meta = await writeDataset(src, 4, LAYERS, { codec: "none", shardSizeBytes: 3000 });
  assert(meta.total_shards > 2);
  const last = join(src, meta.shards[meta.shards.length - 1].filename);
  const bytes = await Deno.readFile(last);
  await Deno.writeFile(last, bytes.subarray(0, bytes.length >> 1));
  const failed = await reshardDataset(plainPickle(src, dst)).then(() => null, (e) => e);
  assert(failed !== null, "a truncated input shard fails the conversion");
  const left: string[] = [];
  for await (const e of Deno.readDir(dst)) left.push(e.name);
  assertEquals(left.filter((n) => n.endsWith(".tmp") || n.startsWith("shard_")), [], left.join(", "));
});
