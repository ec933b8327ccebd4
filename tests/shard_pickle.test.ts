import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { sharedPath, sharedTest, tempDir } from "./_shared.ts";
import { ignoreWithoutPython } from "./_python.ts";
import { chunkedStream, promptRecords, python, PYTHONS, sha256Hex, writeDataset } from "./_shard_fixtures.ts";
import { Dataset, readShard } from "../lib/shard/reader.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { encodeActivation } from "../lib/util/dtype.ts";
import { unpickleRecords } from "../lib/shard/pickle_reader.ts";
import { ActshardError } from "../lib/errors.ts";

const SEED_SNIPPET = `
import gzip, pickle, sys, hashlib, json
import numpy as np
with gzip.open(sys.argv[1], 'rb') as f:
    shard_data = pickle.load(f)
out = []
for layer_idx, acts in shard_data.items():
    for act in acts:
        a = act['activation']
        assert isinstance(a, np.ndarray) and isinstance(act['shape'], tuple)
        out.append([layer_idx, act['task_id'], act['sample_idx'], list(act['shape']), str(a.dtype),
                    list(a.shape), hashlib.sha256(a.tobytes()).hexdigest(), act['prompt']])
print(json.dumps(out))
`;

for (const { exe, label } of PYTHONS) {
  for (const dtype of ["float32", "float16"] as const) {
    Deno.test({
      name: `pickle shard loads with the seed snippet under ${label} (${dtype}), bitwise equal`,
      ignore: ignoreWithoutPython(["numpy"], exe),
      async fn() {
        await using d = await tempDir();
        await writeDataset(d.path, 5, [10, 11, 12], { dtype });
        const got = JSON.parse(await python(exe, SEED_SNIPPET, [`${d.path}/shard_0001.pkl.gz`]));
        assertEquals(got.length, 15);
        let i = 0;
        for (const [layer, task, idx, shape, dt, ashape, hash, prompt] of got) {
          const rec = promptRecords(idx, [layer])[0];
          assertEquals([task, shape, ashape, prompt], [rec.task_id, rec.shape, rec.shape, rec.prompt]);
          assertEquals(dt, dtype);
          assertEquals(hash, await sha256Hex(encodeActivation(rec.activation, dtype)));
          i++;
        }
        assertEquals(i, 15);
        // dict order: layers as first written
        assertEquals([...new Set(got.map((r: number[]) => r[0]))], [10, 11, 12]);
      },
    });
  }
}

Deno.test("pickle shard reads back in TS: same records, same values", async () => {
  await using d = await tempDir();
  await writeDataset(d.path, 4, [3, 5]);
  const ds = await Dataset.open(d.path);
  const seen: string[] = [];
  for await (const r of ds.records()) {
    const want = promptRecords(r.sample_idx, [r.layer])[0];
    assertEquals(r.activation, want.activation);
    assertEquals([r.task_id, r.shape, r.prompt, r.dtype], [want.task_id, want.shape, want.prompt, "float32"]);
    seen.push(`${r.sample_idx}/${r.layer}`);
  }
  assertEquals(seen, ["0/3", "0/5", "1/3", "1/5", "2/3", "2/5", "3/3", "3/5"]);
  const only: number[] = [];
  for await (const r of ds.records({ layer: 5, sample_idx: 2 })) only.push(r.sample_idx);
  assertEquals(only, [2]);
});

sharedTest("the seed-written shard reads with numpy's values", async () => {
  const dir = sharedPath("data", "seed");
  const want = JSON.parse(
    await python(
      "python3",
      `
import gzip, pickle, hashlib, json, sys
d = pickle.load(gzip.open(sys.argv[1]))
print(json.dumps([[l, r['sample_idx'], list(r['shape']), hashlib.sha256(r['activation'].astype('<f4').tobytes()).hexdigest(), r['text_preview']] for l, rs in d.items() for r in rs]))
`,
      [`${dir}/seed_written_shard_0001.pkl.gz`],
    ),
  );
  const got = [];
  for await (const r of readShard(new LocalStore(dir), "seed_written_shard_0001.pkl.gz")) {
    got.push([
      r.layer,
      r.sample_idx,
      r.shape,
      await sha256Hex(new Uint8Array(r.activation.buffer)),
      r.extra?.text_preview,
    ]);
    assertEquals(r.task_id, "");
  }
  assertEquals(got, want);
  assertEquals(got.length, 3);
});

function bytes(...parts: (number[] | string)[]): ReadableStream<Uint8Array> {
  const out: number[] = [];
  for (const p of parts) out.push(...(typeof p === "string" ? [...new TextEncoder().encode(p)] : p));
  return new Blob([new Uint8Array(out)]).stream();
}

async function drain(s: ReadableStream<Uint8Array>): Promise<void> {
  for await (const _ of unpickleRecords(s, "evil.pkl")) { /* consume */ }
}

Deno.test("restricted unpickler refuses os.system (GLOBAL and STACK_GLOBAL) and executes nothing", async () => {
  // pickle.dumps of an object whose __reduce__ is (os.system, ("touch X",)), protocol 0 and protocol 4 forms.
  const marker = await Deno.makeTempFile();
  await Deno.remove(marker);
  const p0 = bytes("cposix\nsystem\n(Vtouch " + marker + "\ntR.");
  const e0 = await assertRejects(
    drain(p0),
    (e: unknown) => e instanceof ActshardError && /posix\.system/.test(e.message),
  );
  void e0;
  const cmd = new TextEncoder().encode(`touch ${marker}`);
  const p4 = bytes(
    [0x80, 4, 0x8c, 2],
    "os",
    [0x8c, 6],
    "system",
    [0x93, 0x8c, cmd.length],
    `touch ${marker}`,
    [0x85, 0x52, 0x2e],
  );
  await assertRejects(
    drain(p4),
    (e: unknown) => e instanceof ActshardError && /refusing to unpickle global "os\.system"/.test(e.message),
  );
  const b = bytes([0x80, 4, 0x8c, 8], "builtins", [0x8c, 4], "eval", [0x93, 0x2e]);
  await assertRejects(drain(b), /builtins\.eval/);
  let exists = true;
  try {
    await Deno.stat(marker);
  } catch {
    exists = false;
  }
  assert(!exists, "nothing may run");
});

Deno.test({
  name: "restricted unpickler: a real Python os.system pickle is refused",
  ignore: ignoreWithoutPython(["numpy"]),
  async fn() {
    const hex = await python(
      "python3",
      `
import pickle, os
class E:
    def __reduce__(self): return (os.system, ('echo pwned',))
print(pickle.dumps({1: [E()]}, protocol=4).hex())`,
    );
    const b = new Uint8Array(hex.match(/../g)!.map((h) => parseInt(h, 16)));
    await assertRejects(drain(new Blob([b]).stream()), /refusing to unpickle global "(posix|os)\.system"/);
  },
});

Deno.test("truncated pickle is a data error", async () => {
  await using d = await tempDir();
  await writeDataset(d.path, 2, [1], { codec: "none" });
  const f = `${d.path}/shard_0001.pkl`;
  const all = await Deno.readFile(f);
  await Deno.writeFile(f, all.subarray(0, all.length - 50));
  await assertRejects(async () => {
    for await (const _ of readShard(new LocalStore(d.path), "shard_0001.pkl")) { /* */ }
  }, (e: unknown) => e instanceof ActshardError && e.kind === "data");
});

Deno.test("pickle decode: each record's activation owns its memory (decoded twice: two arrays; records spanning read chunks equal)", async () => {
  const { PICKLE_FORMAT } = await import("../lib/shard/formats/pickle.ts");
  const { encodeActivation: enc } = await import("../lib/util/dtype.ts");
  const { PickleShardEncoder } = await import("../lib/shard/pickle_writer.ts");
  const e = new PickleShardEncoder("float32");
  const recs = [0, 1, 2].map((s) => ({
    ...promptRecords(s, [3])[0],
    activation: new Float32Array(4099).map((_, i) => i * 0.25 + s),
    shape: [1, 4099] as [number, number],
  }));
  const parts = [e.begin(), ...recs.flatMap((r) => [...e.record(r)]), e.end()].map((p) => p.slice());
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) bytes.set(p, (o += p.length) - p.length);
  const items = [];
  // Odd-sized chunks: every array's bytes span chunk boundaries at odd offsets.
  for await (const it of PICKLE_FORMAT.decode(chunkedStream(bytes, 3001), "test")) items.push(it);
  assertEquals(items.length, 3);
  for (const [k, it] of items.entries()) {
    const a = (await it.record()).activation, b = (await it.record()).activation;
    assertEquals(Array.from(a), Array.from(recs[k].activation), `record ${k}`);
    assert(a.buffer !== b.buffer, "decoding a record twice gives two arrays");
    a.fill(-1);
    assertEquals(Array.from(b), Array.from(recs[k].activation), "mutating one leaves the other");
    assertEquals(enc(b, "float32").byteOffset, b.byteOffset);
  }
});

Deno.test({
  name: "pickle decode: two records sharing one ndarray object (pickle memo) get arrays of their own",
  ignore: ignoreWithoutPython(["numpy"]),
  async fn() {
    await using d = await tempDir();
    const path = `${d.path}/shared.pkl`;
    await python(
      "python3",
      `import pickle, sys, numpy as np
a = np.arange(1000, dtype=np.float32).reshape(1, 1000)
rec = lambda s: {'task_id': 't', 'sample_idx': s, 'activation': a, 'shape': (1, 1000), 'prompt': 'p'}
with open(sys.argv[1], 'wb') as f:
    pickle.dump({5: [rec(0), rec(1)]}, f, protocol=4)`,
      [path],
    );
    const recs = [];
    for await (const r of readShard(new LocalStore(d.path), "shared.pkl")) recs.push(r);
    assertEquals(recs.length, 2);
    assert(recs[0].activation.buffer !== recs[1].activation.buffer, "no shared buffer");
    recs[0].activation.fill(0);
    assertEquals(recs[1].activation[999], 999);
  },
});
