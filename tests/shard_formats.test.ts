import { assert, assertEquals } from "./_assert.ts";
import { hasCommand, tempDir } from "./_shared.ts";
import { ignoreWithoutPython } from "./_python.ts";
import {
  activation,
  chunkedStream,
  promptRecords,
  python,
  sha256Hex,
  writeDataset,
} from "./_shard_fixtures.ts";
import { decodeActivation, encodeActivation, f16BitsToF32, f32ToF16Bits } from "../lib/util/dtype.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import { ActshardError } from "../lib/errors.ts";
import { createCompressor, decompressStream } from "../lib/shard/codecs.ts";
import { encodeNpy } from "../lib/shard/npy.ts";

Deno.test("float16 conversion: exact cases", () => {
  const cases: [number, number][] = [
    [1, 0x3c00],
    [-2, 0xc000],
    [65504, 0x7bff],
    [65520, 0x7c00],
    [2 ** -24, 1],
    [2 ** -25, 0],
    [0.1, 0x2e66],
    [Infinity, 0x7c00],
    [-0, 0x8000],
  ];
  for (const [v, bits] of cases) assertEquals(f32ToF16Bits(v), bits, `${v}`);
  assert(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  for (let h = 0; h < 0x7c00; h += 7) assertEquals(f32ToF16Bits(f16BitsToF32(h)), h);
});

Deno.test({
  name: "float16 / bfloat16 rounding agrees with numpy bit for bit",
  ignore: ignoreWithoutPython(["numpy"]),
  async fn() {
    const a = activation(64, 64, 7);
    a[0] = 1e-8;
    a[1] = 70000;
    a[2] = -3.4e38;
    await using d = await tempDir();
    await Deno.writeFile(`${d.path}/a.npy`, encodeNpy(a, [64, 64]));
    const h = JSON.parse(
      await python(
        "python3",
        `
import numpy as np, hashlib, json, sys
a = np.load(sys.argv[1])
with np.errstate(over="ignore"): f16 = a.astype(np.float16).tobytes()
u = a.view(np.uint32).astype(np.uint64)
bf = ((u + 0x7fff + ((u >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
print(json.dumps([hashlib.sha256(f16).hexdigest(), hashlib.sha256(bf).hexdigest()]))`,
        [`${d.path}/a.npy`],
      ),
    );
    assertEquals(await sha256Hex(encodeActivation(a, "float16")), h[0]);
    assertEquals(await sha256Hex(encodeActivation(a, "bfloat16")), h[1]);
    const back = decodeActivation(encodeActivation(a, "bfloat16"), "bfloat16");
    for (let i = 3; i < a.length; i++) assert(Math.abs(back[i] - a[i]) <= Math.abs(a[i]) * 2 ** -8);
  },
});

for (const dtype of ["float32", "float16", "bfloat16"] as const) {
  Deno.test({
    name: `safetensors (${dtype}) reads with a plain Python reader (header + numpy.frombuffer)`,
    ignore: ignoreWithoutPython(["numpy"]),
    async fn() {
      await using d = await tempDir();
      await writeDataset(d.path, 3, [2, 4], { format: "safetensors", codec: "none", dtype });
      const got = JSON.parse(
        await python(
          "python3",
          `
import json, struct, sys, hashlib
import numpy as np
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8+n]); meta = h.pop('__metadata__')
out = []
for name, t in sorted(h.items(), key=lambda kv: kv[1]['data_offsets'][0]):
    s, e = t['data_offsets']
    raw = b[8+n+s:8+n+e]
    dt = {'F32': np.float32, 'F16': np.float16, 'BF16': np.uint16}[t['dtype']]
    a = np.frombuffer(raw, dtype=dt).reshape(t['shape'])
    if t['dtype'] == 'BF16': a = (a.astype(np.uint32) << 16).view(np.float32)
    f = json.loads(meta[name])
    out.append([name, t['dtype'], t['shape'], f['task_id'], f['sample_idx'], f['layer'], f['prompt'],
                hashlib.sha256(a.astype(np.float32).tobytes()).hexdigest()])
print(json.dumps(out))`,
          [`${d.path}/shard_0001.safetensors`],
        ),
      );
      assertEquals(got.length, 6);
      for (const [name, st, shape, task, idx, layer, prompt, hash] of got) {
        const r = promptRecords(idx, [layer])[0];
        assertEquals([name, st, shape, task, prompt], [
          `layer_${layer}/sample_${idx}`,
          { float32: "F32", float16: "F16", bfloat16: "BF16" }[dtype],
          r.shape,
          r.task_id,
          r.prompt,
        ]);
        const stored = decodeActivation(encodeActivation(r.activation, dtype), dtype);
        assertEquals(hash, await sha256Hex(new Uint8Array(stored.buffer)));
      }
      // and the TS reader gives the same
      let n = 0;
      for await (const r of (await Dataset.open(d.path)).records()) {
        const w = promptRecords(r.sample_idx, [r.layer])[0];
        assertEquals(r.activation, decodeActivation(encodeActivation(w.activation, dtype), dtype));
        assertEquals(r.dtype, dtype);
        n++;
      }
      assertEquals(n, 6);
    },
  });
}

Deno.test({
  name: "multi-member gzip from parallel workers is read by Python's gzip module; output is deterministic",
  ignore: ignoreWithoutPython(["numpy"]),
  async fn() {
    await using d = await tempDir();
    const data = new Uint8Array(activation(700, 512, 1).buffer);
    const files: string[] = [];
    for (const workers of [2, 0]) {
      const parts: Uint8Array<ArrayBuffer>[] = [];
      const c = createCompressor("gzip", (b) => Promise.resolve(void parts.push(b.slice())), {
        workers,
        chunkBytes: 256 << 10,
      });
      for (let o = 0; o < data.length; o += 100_000) await c.write(data.subarray(o, o + 100_000));
      await c.finish();
      const bytes = new Uint8Array(await new Blob(parts).arrayBuffer());
      const f = `${d.path}/x${workers}.gz`;
      await Deno.writeFile(f, bytes);
      files.push(f);
      const back = new Uint8Array(
        await new Response(decompressStream("gzip", new Blob([bytes]).stream())).arrayBuffer(),
      );
      assertEquals(back.length, data.length);
      assert(back.every((v, i) => v === data[i]));
    }
    assertEquals(
      await Deno.readFile(files[0]),
      await Deno.readFile(files[1]),
      "same bytes whatever the worker count",
    );
    const h = await python(
      "python3",
      "import gzip,hashlib,sys; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())",
      [files[0]],
    );
    assertEquals(h, await sha256Hex(data));
  },
});

Deno.test("zstd and none codecs round-trip", async () => {
  const data = new Uint8Array(activation(300, 256, 2).buffer);
  for (const codec of ["zstd", "none"] as const) {
    const parts: Uint8Array<ArrayBuffer>[] = [];
    const c = createCompressor(codec, (b) => Promise.resolve(void parts.push(b.slice())), {
      chunkBytes: 64 << 10,
    });
    await c.write(data);
    await c.finish();
    const back = new Uint8Array(
      await new Response(decompressStream(codec, new Blob(parts).stream())).arrayBuffer(),
    );
    assertEquals(back, data);
  }
});

Deno.test({
  name: "a zstd shard holds its data in one zstd frame (zstd -l), and the zstd CLI + pickle.load read it",
  ignore: !hasCommand("zstd") || ignoreWithoutPython(["numpy"]),
  async fn() {
    await using d = await tempDir();
    await writeDataset(d.path, 700, [1, 2], { codec: "zstd" }); // ≈ 1.6 MB: two 1 MiB chunks to the sink
    const f = `${d.path}/shard_0001.pkl.zst`;
    const list = new TextDecoder().decode(
      (await new Deno.Command("zstd", { args: ["-l", f], stdout: "piped" }).output()).stdout,
    );
    const frames = Number(list.split("\n").find((l) => l.includes("shard_0001"))!.trim().split(/\s+/)[0]);
    // One frame for the whole shard, from either engine (libzstd MT, or node:zlib, which in Deno 2.9 appends no
    // empty frame on end()).
    assertEquals(frames, 1, list);
    const n = await python(
      "python3",
      "import pickle,subprocess,sys; d=pickle.loads(subprocess.run(['zstd','-dc',sys.argv[1]],capture_output=True,check=True).stdout); print(sum(len(v) for v in d.values()))",
      [f],
    );
    assertEquals(n, "1400");
  },
});

Deno.test("reader: a consumer that stops early (break, or a decode error) releases the shard's stream", async () => {
  // Each unreleased stream is an open file (or a GCS download) until GC: `read`'s summary and `--out` stop after
  // one record, verify stops at a corrupt record, and a long-lived reader would run out of descriptors.
  const { LocalStore } = await import("../lib/storage/local.ts");
  const { verifyDataset } = await import("../lib/shard/verify.ts");
  for (const [format, codec] of [["pickle", "gzip"], ["pickle", "none"], ["safetensors", "zstd"]] as const) {
    await using d = await tempDir();
    const meta = await writeDataset(d.path, 400, [1, 2], { format, codec, shardSizeBytes: 1 << 20 });
    const local = new LocalStore(d.path);
    let open = 0;
    // The real LocalStore; only counts streams that neither ended nor were cancelled.
    const store = {
      url: local.url,
      list: () => local.list(),
      stat: (n: string) => local.stat(n),
      read: (n: string) => local.read(n),
      readRange: (n: string, a: number, z: number) => local.readRange(n, a, z),
      openRead: async (name: string) => {
        const reader = (await local.openRead(name)).getReader();
        open++;
        let live = true;
        const release = () => live && (live = false, open--);
        return new ReadableStream<Uint8Array>({
          async pull(ctl) {
            const { value, done } = await reader.read();
            if (done) (release(), ctl.close());
            else ctl.enqueue(value);
          },
          async cancel(why) {
            release();
            await reader.cancel(why);
          },
        });
      },
    };
    const ds = await Dataset.open(store);
    // The cancel reaches the file through the decompressor's pipe a few reads later: wait for it (a leaked
    // stream never gets there).
    const settled = async () => {
      for (let i = 0; i < 200 && open > 0; i++) await new Promise((r) => setTimeout(r, 10));
    };
    for (let i = 0; i < 3; i++) for await (const _ of ds.records()) break;
    await settled();
    assertEquals(open, 0, `${format}/${codec}: streams left open after break`);
    // A decode error mid-shard: cut the file after its first quarter.
    const f = `${d.path}/${meta.shards[0].filename}`;
    const b = await Deno.readFile(f);
    await Deno.writeFile(f, b.subarray(0, b.length >> 2));
    const r = await verifyDataset(store, { deep: true });
    assert(!r.ok);
    await settled();
    assertEquals(open, 0, `${format}/${codec}: streams left open after a decode error`);
  }
});

Deno.test("safetensors decode: each record's activation owns its memory (decoded twice: two arrays), whatever the read chunks", async () => {
  const { SAFETENSORS_FORMAT } = await import("../lib/shard/formats/safetensors.ts");
  await using d = await tempDir();
  for (const dtype of ["float32", "bfloat16"] as const) {
    const meta = await writeDataset(`${d.path}/${dtype}`, 3, [4, 5], {
      format: "safetensors",
      codec: "none",
      dtype,
    });
    const bytes = await Deno.readFile(`${d.path}/${dtype}/${meta.shards[0].filename}`);
    let n = 0;
    for await (const it of SAFETENSORS_FORMAT.decode(chunkedStream(bytes, 1001), "test")) {
      const a = (await it.record()).activation, b = (await it.record()).activation;
      const want = decodeActivation(
        encodeActivation(promptRecords(it.sample_idx, [it.layer])[0].activation, dtype),
        dtype,
      );
      assertEquals(Array.from(a), Array.from(want), `${dtype} record ${n}`);
      assert(a.buffer !== b.buffer, "decoding a record twice gives two arrays");
      a.fill(-1);
      assertEquals(Array.from(b), Array.from(want), "mutating one leaves the other");
      n++;
    }
    assertEquals(n, 6);
  }
});

Deno.test("reader: an uncompressed shard past several 4 MiB read chunks (odd tail) decodes as written, pickle and safetensors; cut short it is one data error", async () => {
  await using d = await tempDir();
  for (const format of ["pickle", "safetensors"] as const) {
    const dir = `${d.path}/${format}`;
    // 12 prompts × 3 layers × 37–39 tokens × 2049 float32 ≈ 11 MB: two full 4 MiB reads and a tail.
    const w = await ShardWriter.open({
      dir,
      format,
      codec: "none",
      dtype: "float32",
      shardSizeBytes: 1 << 30,
      base: { shard_size_gb: 1 },
    });
    const written = Array.from({ length: 12 }, (_, s) => promptRecords(s, [1, 2, 3], 37, 2049));
    for (const g of written) await w.write(g);
    await w.close();
    const ds = await Dataset.open(dir);
    const file = `${dir}/${ds.shards[0]}`;
    const size = (await Deno.stat(file)).size;
    assert(size > 2 * (4 << 20) && size % (4 << 20) !== 0, `size ${size}`);
    const got = [];
    for await (const r of ds.records()) got.push(r);
    assertEquals(got.map((r) => [r.sample_idx, r.layer]), written.flat().map((r) => [r.sample_idx, r.layer]));
    for (const [i, r] of written.flat().entries()) {
      assertEquals(got[i].activation, r.activation, `${format} ${i}`);
    }
    await Deno.truncate(file, size - 5000);
    const e = await (async () => {
      for await (const _ of (await Dataset.open(dir)).records());
    })().catch((e) => e);
    assert(e instanceof ActshardError && e.kind === "data", `${format}: ${e}`);
  }
});

Deno.test("reader: the next shard is opened ahead, but its failure comes at its turn, after every record before it", async () => {
  await using d = await tempDir();
  const meta = await writeDataset(d.path, 60, [1, 2], { codec: "none", shardSizeBytes: 16 << 10 });
  assert(meta.shards.length >= 4, `${meta.shards.length} shards`);
  const before = meta.shards.slice(0, 2).reduce((n, s) => n + s.n_records, 0);
  await Deno.remove(`${d.path}/${meta.shards[2].filename}`);
  const got: number[] = [];
  const e = await (async () => {
    for await (const r of (await Dataset.open(d.path)).records()) got.push(r.sample_idx);
  })().catch((e) => e);
  assertEquals(got.length, before, "every record of the shards before the missing one");
  assert(e instanceof ActshardError && `${e.where}`.includes(meta.shards[2].filename), `${e} at ${e?.where}`);
});

Deno.test("ShardReaders: one Worker reads shard after shard; a stream cancelled mid-file leaves no stale bytes in the next one on that Worker; two at once take two", async () => {
  const { ShardReaders } = await import("../lib/shard/read_stream.ts");
  await using d = await tempDir();
  const files = [0, 1, 2].map((f) => {
    const b = new Uint8Array((13 << 20) + 12345 * f).map((_, i) => (i * 31 + f * 101) >>> 3);
    Deno.writeFileSync(`${d.path}/f${f}`, b);
    return b;
  });
  const readAll = async (s: ReadableStream<Uint8Array>) =>
    new Uint8Array(await new Response(s).arrayBuffer());
  const readers = new ShardReaders();
  try {
    // Cancelled after its first chunk, with later reads of it still in flight at the Worker.
    const first = readers.stream(`${d.path}/f0`, "none").getReader();
    assert(!(await first.read()).done);
    await first.cancel();
    for (const f of [1, 2, 0]) {
      const got = await readAll(readers.stream(`${d.path}/f${f}`, "none"));
      assert(got.length === files[f].length && got.every((v, i) => v === files[f][i]), `file ${f} differs`);
    }
    assertEquals(readers.started, 1);
    // Two streams open at once (a dataset's reader opens the next shard ahead): a second Worker, then reuse.
    const [a, b] = [readers.stream(`${d.path}/f1`, "none"), readers.stream(`${d.path}/f2`, "none")];
    const [ga, gb] = await Promise.all([readAll(a), readAll(b)]);
    assertEquals([ga.length, gb.length], [files[1].length, files[2].length]);
    assert(ga.every((v, i) => v === files[1][i]) && gb.every((v, i) => v === files[2][i]), "bytes differ");
    await readAll(readers.stream(`${d.path}/f0`, "none"));
    assertEquals(readers.started, 2);
  } finally {
    readers.close();
  }
});
