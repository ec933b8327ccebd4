import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { promptRecords, writeDataset } from "./_shard_fixtures.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { crc32c } from "../lib/util/crc32c.ts";

const LAYERS = [10, 11, 12];
// promptRecords: (7..9) tokens × 32 hidden × 4 bytes ≈ 1 KiB per record, ~3 KiB per prompt.
const PROMPT_MAX = 9 * 32 * 4 * 3;

async function files(dir: string): Promise<Map<string, Uint8Array>> {
  const m = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith("shard_")) m.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
  }
  return m;
}

Deno.test("rollover at the payload bound; a prompt's records stay in one shard; metadata lists every shard", async () => {
  await using d = await tempDir();
  const committed: number[] = [];
  const meta = await writeDataset(d.path, 20, LAYERS, {
    shardSizeBytes: PROMPT_MAX * 3,
    base: { shard_size_gb: PROMPT_MAX * 3 / 2 ** 30, upload_to_gcs: true, gcs_bucket: "b", gcs_prefix: "p" },
    onShardCommitted: (e) => void committed.push(e.shard_id),
  });
  assert(meta.total_shards >= 5, `${meta.total_shards} shards`);
  assertEquals(committed, meta.shards.map((s) => s.shard_id));
  assertEquals(
    meta.shards.map((s) => s.filename),
    meta.shards.map((_, i) => `shard_${String(i + 1).padStart(4, "0")}.pkl.gz`),
  );
  assertEquals(meta.status, "complete");
  assertEquals(meta.total_samples, 60);
  const bySample = new Map<number, Set<string>>();
  for (const s of meta.shards) {
    assert(s.buffer_size_mb * 2 ** 20 <= PROMPT_MAX * 3, "payload bound");
    assertEquals(s.gcs_path, `gs://b/p/${s.filename}`);
    const bytes = await Deno.readFile(`${d.path}/${s.filename}`);
    assertEquals([s.bytes, s.crc32c], [bytes.length, crc32c(bytes)]);
    assertEquals(s.total_samples_in_shard, s.n_records);
    assertEquals(Object.values(s.samples_per_layer).reduce((a, b) => a + b, 0), s.n_records);
  }
  for await (const r of (await Dataset.open(d.path)).records()) {
    const set = bySample.get(r.sample_idx) ?? new Set();
    set.add(r.shard);
    bySample.set(r.sample_idx, set);
  }
  assertEquals(bySample.size, 20);
  for (const [idx, s] of bySample) assertEquals(s.size, 1, `sample ${idx} split across shards`);
  // seed fields all present
  const seedKeys = [
    "shard_id",
    "filename",
    "local_path",
    "gcs_path",
    "file_size_mb",
    "buffer_size_mb",
    "layers",
    "samples_per_layer",
    "total_samples_in_shard",
  ];
  for (const k of seedKeys) assert(k in meta.shards[0], k);
  assertEquals(await readMetadata(new LocalStore(d.path)), meta);
});

Deno.test("a prompt larger than the limit is split record by record", async () => {
  await using d = await tempDir();
  const meta = await writeDataset(d.path, 2, LAYERS, { shardSizeBytes: 9 * 32 * 4 });
  assertEquals(meta.total_samples, 6);
  assertEquals(meta.total_shards, 6);
});

Deno.test("same input → byte-identical shards (gzip, zstd, safetensors), whatever the gzip worker count", async () => {
  for (
    const [format, codec] of [["pickle", "gzip"], ["safetensors", "zstd"], ["safetensors", "gzip"]] as const
  ) {
    await using a = await tempDir();
    await using b = await tempDir();
    await writeDataset(a.path, 12, LAYERS, { format, codec, shardSizeBytes: PROMPT_MAX * 4, gzipWorkers: 2 });
    await writeDataset(b.path, 12, LAYERS, { format, codec, shardSizeBytes: PROMPT_MAX * 4, gzipWorkers: 1 });
    const fa = await files(a.path), fb = await files(b.path);
    assertEquals([...fa.keys()].sort(), [...fb.keys()].sort());
    for (const [k, v] of fa) assertEquals(v, fb.get(k), `${format}/${codec} ${k}`);
  }
});

Deno.test("resume: existing metadata keeps committed shards, numbering continues, result equals one run", async () => {
  await using full = await tempDir();
  await using part = await tempDir();
  const opts = { shardSizeBytes: PROMPT_MAX * 3, gzipWorkers: 2 } as const;
  const whole = await writeDataset(full.path, 15, LAYERS, opts);
  // First run: 8 prompts, then "killed" (abort: partial shard dropped).
  const w1 = await ShardWriter.open({
    dir: part.path,
    format: "pickle",
    codec: "gzip",
    dtype: "float32",
    base: { shard_size_gb: 1 },
    ...opts,
  });
  for (let s = 0; s < 8; s++) await w1.write(promptRecords(s, LAYERS));
  await w1.abort();
  const after = await readMetadata(new LocalStore(part.path));
  assertEquals(after.status, "in_progress");
  const done = after.shards.reduce((n, s) => n + s.n_records, 0) / LAYERS.length;
  await Deno.writeFile(`${part.path}/shard_0099.pkl.gz`, new Uint8Array(10)); // a stray partial shard
  await Deno.writeFile(`${part.path}/.shard_0004.pkl.gz.tmp`, new Uint8Array(10));
  const w2 = await ShardWriter.open({
    dir: part.path,
    format: "pickle",
    codec: "gzip",
    dtype: "float32",
    base: { shard_size_gb: 1 },
    existing: after,
    ...opts,
  });
  for (let s = done; s < 15; s++) await w2.write(promptRecords(s, LAYERS));
  const meta = await w2.close();
  assertEquals(
    meta.shards.map((s) => [s.filename, s.sha256]),
    whole.shards.map((s) => [s.filename, s.sha256]),
  );
  assertEquals([...(await files(part.path)).keys()].sort(), [...(await files(full.path)).keys()].sort());
  for await (const e of Deno.readDir(part.path)) assert(!e.name.endsWith(".tmp"), e.name);
});

Deno.test("updateShard patches an entry and rewrites metadata.json", async () => {
  await using d = await tempDir();
  const w = await ShardWriter.open({
    dir: d.path,
    format: "pickle",
    codec: "none",
    dtype: "float32",
    shardSizeBytes: PROMPT_MAX,
    base: {},
  });
  await w.write(promptRecords(0, LAYERS));
  await w.write(promptRecords(1, LAYERS));
  await w.updateShard(1, { gcs_generation: "123", gcs_verified: true });
  const m = await readMetadata(new LocalStore(d.path));
  assertEquals([m.shards[0].gcs_generation, m.shards[0].gcs_verified], ["123", true]);
  await w.close();
  await assertRejects(() => w.write(promptRecords(2, LAYERS)));
});

Deno.test("pickle + bfloat16 is refused up front", async () => {
  await using d = await tempDir();
  await assertRejects(
    () =>
      ShardWriter.open({
        dir: d.path,
        format: "pickle",
        codec: "gzip",
        dtype: "bfloat16",
        shardSizeBytes: 1,
        base: {},
      }),
    /bfloat16/,
  );
});

Deno.test("a writer that fails to open (bad shard size, a directory it cannot make) leaves no Worker running: the process exits", async () => {
  // Run in a child: a leaked Worker keeps a process alive, which is what a CLI run (or a library user) sees.
  const writer = new URL("../lib/shard/writer.ts", import.meta.url).href;
  const code = `
    const { ShardWriter } = await import(${JSON.stringify(writer)});
    for (const [dir, dtype, shardSizeBytes] of [["/tmp/x", "float32", 0], ["/proc/no/such/dir", "float16", 10]]) {
      await ShardWriter.open({ dir, format: "pickle", codec: "zstd", dtype, shardSizeBytes, base: {} })
        .then(() => console.log("opened"), (e) => console.log("refused:", e.message));
    }`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", code],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000),
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert(out.success, `exit ${out.code} (killed by the timeout: a Worker outlived the failure)\n${text}`);
  assertEquals(text.trim().split("\n").map((l) => l.split(":")[0]), ["refused", "refused"]);
});
