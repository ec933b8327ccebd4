/**
 * The one safetensors module (lib/util/safetensors.ts) is strict for checkpoints and shards alike: a tensor's byte
 * range must be its shape × dtype size, ranges must tile the data section (no overlap, no gap), the header length
 * is bounded. Each failure is one line, in the checkpoint's words or the shard's.
 */
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { ActshardError } from "../lib/errors.ts";
import {
  encodeSafetensorsHeader,
  MAX_SAFETENSORS_HEADER,
  parseSafetensorsJson,
  readHeaderLength,
  type SafetensorsEntry,
} from "../lib/util/safetensors.ts";
import { CheckpointWeights, encodeSafetensors } from "../lib/model/safetensors.ts";
import { Dataset, readShard } from "../lib/shard/reader.ts";
import { verifyDataset } from "../lib/shard/verify.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { writeDataset } from "./_shard_fixtures.ts";

const f32 = (n: number) => new Uint8Array(new Float32Array(n).fill(1.5).buffer);

/** A file: the header for `entries`, then `dataBytes` bytes of data. */
function file(entries: SafetensorsEntry[], dataBytes: number, meta?: Record<string, string>): Uint8Array {
  const head = encodeSafetensorsHeader(entries, meta);
  const out = new Uint8Array(head.length + dataBytes);
  out.set(head);
  out.fill(0x3f, head.length);
  return out;
}

const BAD: [string, SafetensorsEntry[], number, RegExp][] = [
  [
    "overlap",
    [
      { name: "a", dtype: "F32", shape: [2], begin: 0, end: 8 },
      { name: "b", dtype: "F32", shape: [2], begin: 4, end: 12 },
    ],
    12,
    /tensor b overlaps another/,
  ],
  [
    "gap",
    [
      { name: "a", dtype: "F32", shape: [2], begin: 0, end: 8 },
      { name: "b", dtype: "F32", shape: [2], begin: 16, end: 24 },
    ],
    24,
    /gap of 8 bytes before tensor b/,
  ],
  [
    "size against shape",
    [{ name: "a", dtype: "F32", shape: [3], begin: 0, end: 8 }],
    8,
    /tensor a data \[0, 8\) does not match its shape/,
  ],
  [
    "size against dtype",
    [{ name: "a", dtype: "F16", shape: [2], begin: 0, end: 8 }],
    8,
    /tensor a data \[0, 8\) does not match its shape/,
  ],
  ["unknown dtype", [{ name: "a", dtype: "Q4", shape: [2], begin: 0, end: 8 }], 8, /unsupported dtype Q4/],
  [
    "negative shape",
    [{ name: "a", dtype: "F32", shape: [-2], begin: 0, end: 8 }],
    8,
    /bad entry for tensor a/,
  ],
];

Deno.test("safetensors codec: valid headers parse; overlap, gap, size ≠ shape × dtype, bad dtype are refused", () => {
  const corrupt = (why: string) => new Error(why);
  const ok = file(
    [
      { name: "b", dtype: "BF16", shape: [2, 2], begin: 8, end: 16 },
      { name: "a", dtype: "F32", shape: [2], begin: 0, end: 8 },
    ],
    16,
    { k: "v" },
  );
  assertEquals(ok.length % 8, 0);
  const n = readHeaderLength(ok, corrupt);
  const h = parseSafetensorsJson(ok.subarray(8, 8 + n), corrupt, ok.length - 8 - n);
  assertEquals(h.tensors.map((t) => t.name), ["b", "a"]); // header order kept
  assertEquals([h.metadata, h.dataBytes], [{ k: "v" }, 16]);
  for (const [what, entries, data, re] of BAD) {
    const b = file(entries, data);
    const len = readHeaderLength(b, corrupt);
    let msg = "";
    try {
      parseSafetensorsJson(b.subarray(8, 8 + len), corrupt);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert(re.test(msg), `${what}: ${msg}`);
  }
  const huge = new Uint8Array(8);
  new DataView(huge.buffer).setBigUint64(0, BigInt(MAX_SAFETENSORS_HEADER + 1), true);
  assertEquals(
    (() => {
      try {
        readHeaderLength(huge, corrupt);
      } catch (e) {
        return (e as Error).message;
      }
    })(),
    `header length ${MAX_SAFETENSORS_HEADER + 1} is implausible`,
  );
});

Deno.test("checkpoints: the strict checks apply, one line each, in the checkpoint's words", async () => {
  await using d = await tempDir();
  await Deno.writeFile(
    `${d.path}/model.safetensors`,
    encodeSafetensors([{ name: "x", dtype: "F32", shape: [2], data: f32(2) }]),
  );
  assertEquals(Array.from(await (await CheckpointWeights.open(d.path)).read("x")), [1.5, 1.5]);
  for (const [what, entries, data, re] of BAD) {
    await Deno.writeFile(`${d.path}/model.safetensors`, file(entries, data));
    await assertRejects(() => CheckpointWeights.open(d.path), (e: unknown) => {
      assert(e instanceof ActshardError, `${what}: ${e}`);
      const line = e.line();
      assert(re.test(line) && line.startsWith("corrupt safetensors header: "), `${what}: ${line}`);
      assert(line.endsWith("re-download the checkpoint") && !line.includes("\n"), line);
      return true;
    });
  }
});

Deno.test("shards: the strict checks apply to streamed and ranged reads and verify, one line naming the shard", async () => {
  await using d = await tempDir();
  // a real dataset, so the crafted shard sits where a shard would and verify checks everything else too
  await writeDataset(d.path, 1, [0], { format: "safetensors", codec: "none" });
  const name = "shard_0001.safetensors";
  const store = new LocalStore(d.path);
  for (const [what, entries, data, re] of BAD) {
    const bytes = file(entries, data, { format: "actshard" });
    await Deno.writeFile(`${d.path}/${name}`, bytes);
    const fails = async (read: () => Promise<unknown>) =>
      await assertRejects(read, (e: unknown) => {
        assert(e instanceof ActshardError, `${what}: ${e}`);
        const line = e.line();
        assert(re.test(line) && line.startsWith("safetensors shard: "), `${what}: ${line}`);
        assert(line.includes(`/${name})`) && !line.includes("\n"), line);
        return true;
      });
    await fails(() => Array.fromAsync(readShard(store, name)));
    await fails(async () => await Array.fromAsync((await Dataset.open(d.path)).records({ sample_idx: 0 })));
    const report = await verifyDataset(store, { deep: true });
    const decode = report.issues.filter((i) => i.shard === name && /^cannot decode: /.test(i.message));
    assertEquals(decode.length, 1, JSON.stringify(report.issues));
    assert(re.test(decode[0].message), decode[0].message);
  }
});
