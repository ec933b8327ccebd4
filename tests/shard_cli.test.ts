import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { ignoreWithoutPython } from "./_python.ts";
import { python, runScript, writeDataset } from "./_shard_fixtures.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { decodeActivation, encodeActivation } from "../lib/util/dtype.ts";
import { main as shardMain } from "../scripts/shard.ts";
import { main as readMain } from "../scripts/read.ts";
import type { ReadRecord } from "../lib/shard/reader.ts";

async function all(dir: string): Promise<ReadRecord[]> {
  const out: ReadRecord[] = [];
  for await (const r of (await Dataset.open(dir)).records()) out.push(r);
  return out.sort((a, b) => a.sample_idx - b.sample_idx || a.layer - b.layer);
}

Deno.test("shard round trip: pickle.gz → safetensors (bf16, zstd) → pickle keeps every record", async () => {
  await using a = await tempDir();
  await using b = await tempDir();
  await using c = await tempDir();
  await writeDataset(a.path, 7, [4, 6], { shardSizeBytes: 9 * 32 * 4 * 2 * 2, gzipWorkers: 1 });
  assertEquals(
    await shardMain([
      "--input",
      a.path,
      "--output",
      b.path,
      "--format",
      "safetensors",
      "--codec",
      "zstd",
      "--dtype",
      "bfloat16",
    ]),
    0,
  );
  assertEquals(
    await shardMain([
      "--input",
      b.path,
      "--output",
      c.path,
      "--shard_size_gb",
      "0.00001",
      "--no_compress_shards",
    ]),
    0,
  );
  const [ra, rb, rc] = [await all(a.path), await all(b.path), await all(c.path)];
  assertEquals(ra.length, 14);
  assertEquals(rb.length, 14);
  assertEquals(rc.length, 14);
  for (let i = 0; i < ra.length; i++) {
    const key = (r: ReadRecord) => [r.task_id, r.sample_idx, r.layer, r.shape, r.prompt];
    assertEquals(key(rb[i]), key(ra[i]));
    assertEquals(key(rc[i]), key(ra[i]));
    const bf = decodeActivation(encodeActivation(ra[i].activation, "bfloat16"), "bfloat16");
    assertEquals(rb[i].activation, bf);
    assertEquals(rc[i].activation, bf);
    assertEquals([rb[i].dtype, rc[i].dtype], ["bfloat16", "float32"]);
  }
  assert(rc.every((r) => r.shard.endsWith(".pkl")));
});

Deno.test({
  name: "read --out writes an .npy numpy.load reads; summary and filters",
  ignore: ignoreWithoutPython(["numpy"]),
  async fn() {
    await using a = await tempDir();
    await writeDataset(a.path, 3, [4, 6], { gzipWorkers: 1 });
    const out = `${a.path}/x.npy`;
    assertEquals(await readMain([a.path, "--layer", "6", "--sample_idx", "2", "--out", out]), 0);
    const got = await python(
      "python3",
      "import numpy as np,sys; a=np.load(sys.argv[1]); print(a.dtype, a.shape, float(a[1,3]))",
      [out],
    );
    const rec = (await all(a.path)).find((r) => r.layer === 6 && r.sample_idx === 2)!;
    assertEquals(got, `float32 (${rec.shape[0]}, ${rec.shape[1]}) ${rec.activation[1 * rec.shape[1] + 3]}`);
    const sum = await runScript("read.ts", [a.path]);
    assertEquals(sum.code, 0);
    assertMatch(sum.stdout, /shard_0001\.pkl\.gz\s+pickle\s+gzip\s+float32\s+4-6\s+6\s+0\.\.2/);
    const none = await runScript("read.ts", [a.path, "--task_id", "nope", "--out", out]);
    assertEquals(none.code, 1);
    assertMatch(none.stderr, /^read: no record matches/);
  },
});

Deno.test("read: table columns stay aligned when a cell is wider than its default (safetensors, zstd)", async () => {
  await using a = await tempDir();
  await writeDataset(a.path, 2, [4], { format: "safetensors", codec: "zstd", gzipWorkers: 1 });
  const col = (line: string, word: string) => line.search(new RegExp(`(?<=\\s|^)${word}(?=\\s|$)`));
  const sum = (await runScript("read.ts", [a.path])).stdout.split("\n");
  const head = sum.find((l) => l.startsWith("shard "))!;
  const row = sum.find((l) => l.startsWith("shard_0001"))!;
  assert(head && row, sum.join("\n"));
  assertEquals(col(row, "safetensors"), col(head, "format"), `${head}\n${row}`);
  assertEquals(col(row, "zstd"), col(head, "codec"), `${head}\n${row}`);
  assertEquals(col(row, "float32"), col(head, "dtype"), `${head}\n${row}`);
});

Deno.test("bad input: one clear line on stderr, exit ≠ 0", async () => {
  await using d = await tempDir();
  await Deno.mkdir(`${d.path}/empty`);
  await Deno.mkdir(`${d.path}/corrupt`);
  await Deno.writeTextFile(`${d.path}/corrupt/metadata.json`, "{ not json");
  const cases: [string, string[], number, RegExp][] = [
    ["verify.ts", [`${d.path}/nope`], 1, /^verify: directory not found \(.*nope\)/],
    ["verify.ts", [`${d.path}/empty`], 1, /^verify: not a dataset/],
    ["verify.ts", [`${d.path}/corrupt`], 1, /^verify: metadata\.json is not valid JSON/],
    ["verify.ts", [d.path, "--bogus"], 2, /^verify: unknown flag --bogus/],
    ["read.ts", [`${d.path}/nope`], 1, /^read: directory not found/],
    ["read.ts", [`${d.path}/corrupt`], 1, /^read: metadata\.json is not valid JSON/],
    ["read.ts", [`${d.path}/empty`, "--layer", "x"], 2, /^read: --layer must be an integer/],
    ["shard.ts", ["--input", `${d.path}/empty`, "--output", `${d.path}/o`], 1, /^shard: not a dataset/],
    ["shard.ts", ["--input", d.path], 2, /^shard: --input and --output are required/],
    [
      "shard.ts",
      ["--input", `${d.path}/empty`, "--output", "gs://b/p"],
      2,
      /^shard: a conversion writes to a local directory, not gs:\/\/ \(--output\): .*deno task upload/,
    ],
    [
      "shard.ts",
      ["--input", `${d.path}/empty`, "--output", `${d.path}/o`, "--codec", "lz4"],
      2,
      /^shard: --codec must be one of gzip\|zstd\|none/,
    ],
  ];
  for (const [script, args, code, re] of cases) {
    const r = await runScript(script, args);
    assertEquals(r.code, code, `${script} ${args.join(" ")}: ${r.stderr}`);
    assertMatch(r.stderr, re);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});
