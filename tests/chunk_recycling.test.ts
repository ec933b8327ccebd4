/**
 * Read chunks handed back for reuse (byte_source.ts's `chunkRecyclers`, read_stream.ts, read_worker.ts): a
 * consumed chunk goes back only at the ByteSource's next call (a view the last call returned may still be in
 * use), and a dataset whose shards span many recycled 4 MiB chunks reads back value for value.
 */
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { activation } from "./_shard_fixtures.ts";
import { ByteSource, chunkRecyclers } from "../lib/shard/byte_source.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { ShardWriter } from "../lib/shard/writer.ts";

Deno.test("ByteSource hands a consumed chunk back at its next call, never while the last view may be in use", async () => {
  const chunks = [new Uint8Array([1, 2, 3, 4]), new Uint8Array([5, 6, 7, 8]), new Uint8Array([9])];
  let i = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull: (c) => void (i < chunks.length ? c.enqueue(chunks[i++]) : c.close()),
  }, { highWaterMark: 0 });
  const back: number[][] = [];
  chunkRecyclers.set(stream, (c) => back.push([...c]));
  const src = new ByteSource(stream);
  const a = await src.read(4); // all of chunk 1: consumed, not yet handed back
  assertEquals([...a], [1, 2, 3, 4]);
  assertEquals(back, []);
  const b = await src.read(3); // the next call hands chunk 1 back
  assertEquals([...b], [5, 6, 7]);
  assertEquals(back, [[1, 2, 3, 4]]);
  const c = await src.read(2); // joined across chunks 2 and 3 (a new buffer); chunk 2 goes back next time
  assertEquals([...c], [8, 9]);
  assertEquals(back.length, 1);
  assert(await src.atEnd());
  assertEquals(back, [[1, 2, 3, 4], [5, 6, 7, 8], [9]]);
});

Deno.test("a dataset read through recycled 4 MiB chunks gives every value back (records across chunk edges)", async () => {
  await using d = await tempDir();
  const w = await ShardWriter.open({
    dir: d.path,
    format: "pickle",
    codec: "none",
    dtype: "float32",
    shardSizeBytes: 12 << 20,
    base: { shard_size_gb: 12 / 1024 },
  });
  const want: Float32Array[] = [];
  for (let s = 0; s < 30; s++) {
    const rows = 150 + 37 * s; // 0.5–1.9 MB records: edges fall anywhere in the 4 MiB chunks
    const rec = {
      task_id: `t${s}`,
      sample_idx: s,
      layer: 5,
      activation: activation(rows, 896, s),
      prompt: `p${s}`,
    };
    want.push(rec.activation);
    await w.write([{ ...rec, shape: [rows, 896] }]);
  }
  const meta = await w.close();
  assert(meta.shards.length >= 3, `${meta.shards.length} shards`);
  const ds = await Dataset.open(d.path);
  let n = 0;
  for await (const r of ds.records()) {
    const v = want[r.sample_idx];
    assertEquals(r.activation.length, v.length);
    assert(r.activation.every((x, i) => x === v[i]), `sample ${r.sample_idx} differs`);
    n++;
  }
  assertEquals(n, 30);
});
