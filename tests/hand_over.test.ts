/**
 * Handing activation buffers over to the writer (ShardWriter.write's `handOver`, the `shard` stage's records):
 * where the bytes go out unchanged (float32, codec none) the array's own buffer goes to the sink instead of a
 * copy. The shard's bytes must not change, the caller's arrays are detached only when handed over, and the
 * compressor passes only owned whole buffers of at least a chunk through (the rest is staged as before).
 */
import { assert, assertEquals } from "./_assert.ts";
import { createCompressor } from "../lib/shard/codecs.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import type { Codec } from "../lib/shard/codecs.ts";
import type { ActivationDType, ActivationRecord } from "../lib/types.ts";
import { activation } from "./_shard_fixtures.ts";

const CHUNK = 1 << 10;

Deno.test("none compressor: an owned whole buffer of ≥ a chunk goes to the sink as it is, after what is staged; others are copied", async () => {
  const got: Uint8Array[] = [];
  const c = createCompressor("none", (b) => (got.push(b), Promise.resolve()), { chunkBytes: CHUNK });
  const head = new Uint8Array([1, 2, 3]);
  const big = new Uint8Array(3 * CHUNK).map((_, i) => i & 0xff);
  const small = new Uint8Array(CHUNK - 1).fill(7); // owned but under a chunk: staged
  const lent = new Uint8Array(2 * CHUNK).fill(9); // not owned: staged
  const view = new Uint8Array(new ArrayBuffer(4 * CHUNK), CHUNK, 2 * CHUNK).fill(5); // owned, not whole: staged
  await c.write(head);
  await c.write(big, true);
  await c.write(small, true);
  await c.write(lent);
  await c.write(view, true);
  await c.finish();
  assertEquals(got[0], head, "the staged head goes first, as a copy");
  assert(got[1] === big, "the owned buffer itself is handed on");
  assert(
    got.slice(2).every((b) => b !== small && b !== lent && b.buffer !== view.buffer),
    "the rest is copied",
  );
  const all = new Uint8Array(got.reduce((n, b) => n + b.length, 0));
  got.reduce((o, b) => (all.set(b, o), o + b.length), 0);
  const want = [head, big, small, lent, view];
  const expect = new Uint8Array(want.reduce((n, b) => n + b.length, 0));
  want.reduce((o, b) => (expect.set(b, o), o + b.length), 0);
  assertEquals(all, expect, "the same bytes in the same order");
  assertEquals(
    got.slice(2).map((b) => b.length),
    [CHUNK, CHUNK, CHUNK, CHUNK, CHUNK - 1],
    "staged in chunks",
  );
});

Deno.test("gzip compressor: an owned buffer is still cut into the pinned 256 KiB members (not passed through)", async () => {
  const got: Uint8Array[] = [];
  const lent: Uint8Array[] = [];
  const data = new Uint8Array(600_000).map((_, i) => (i * 31) & 0xff);
  for (const [owned, out] of [[false, lent], [true, got]] as const) {
    const c = createCompressor("gzip", (b) => (out.push(b.slice()), Promise.resolve()), { workers: 1 });
    await c.write(data.slice(), owned);
    await c.finish();
  }
  assertEquals(got, lent);
});

/** `n` records of `tokens × 64` float32 (two layers per prompt). */
function records(n: number, tokens: (i: number) => number): ActivationRecord[] {
  return Array.from({ length: n }, (_, i) => ({
    task_id: `t${i >> 1}`,
    sample_idx: i >> 1,
    layer: 3 + (i & 1),
    activation: activation(tokens(i), 64, 100 + i),
    shape: [tokens(i), 64] as [number, number],
    prompt: `p${i}`,
  }));
}

async function shardBytes(codec: Codec, dtype: ActivationDType, handOver: boolean, recs: ActivationRecord[]) {
  const dir = await Deno.makeTempDir();
  try {
    const w = await ShardWriter.open({
      dir,
      format: "pickle",
      codec,
      dtype,
      shardSizeBytes: 1 << 30,
      base: { shard_size_gb: 1 },
    });
    for (let i = 0; i < recs.length; i += 2) await w.write(recs.slice(i, i + 2), { handOver });
    const m = await w.close();
    return { bytes: await Deno.readFile(`${dir}/${m.shards[0].filename}`), sha: m.shards[0].sha256 };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("ShardWriter handOver: the same shard bytes and hash; only float32/none arrays of ≥ 1 MiB are detached", async () => {
  const small = records(40, (i) => 40 + (i >> 1)); // 10–15 KiB each: staged into 1 MiB chunks
  const large = records(6, (i) => 4100 + 3 * i); // ≈ 1.05 MB each: passed through where the bytes go unchanged
  // Each writer starts its Workers (seconds under `deno test`, which checks each Worker's module): few cases.
  const cases: [Codec, ActivationDType, ActivationRecord[]][] = [
    ["none", "float32", small],
    ["none", "float32", large],
    ["none", "float16", large],
    ["zstd", "float32", large],
    ["gzip", "float32", large],
  ];
  for (const [codec, dtype, recs] of cases) {
    const copies = () => recs.map((r) => ({ ...r, activation: r.activation.slice() }));
    const kept = await shardBytes(codec, dtype, false, copies());
    const given = copies();
    const handed = await shardBytes(codec, dtype, true, given);
    const what = `${codec}/${dtype}, ${recs.length} records`;
    assertEquals(handed.sha, kept.sha, what);
    assert(
      handed.bytes.length === kept.bytes.length && handed.bytes.every((v, i) => v === kept.bytes[i]),
      what,
    );
    const passes = codec === "none" && dtype === "float32" && recs === large;
    assertEquals(
      given.map((r) => r.activation.byteLength === 0),
      given.map(() => passes),
      `${what}: detached`,
    );
  }
});
