// The read Worker's pickle splitter (lib/shard/read_split.ts): the bytes never change, only where chunks end;
// every large array's data comes whole; and the readers built on it (the dataset reader, the shard stage) give
// the same records and bytes as before, with the arrays' buffers recycled through the Worker.
import { Buffer } from "node:buffer";
import { gunzipSync } from "node:zlib";
import { assert, assertEquals } from "./_assert.ts";
import { activation } from "./_shard_fixtures.ts";
import { BIG_PAYLOAD, type SplitChunk, splitPickle } from "../lib/shard/read_split.ts";
import { Dataset } from "../lib/shard/reader.ts";
import { reshardDataset } from "../lib/shard/reshard.ts";
import { ShardWriter } from "../lib/shard/writer.ts";

const seedShard = new URL("../../shared/data/seed/seed_written_shard_0001.pkl.gz", import.meta.url);

/** `bytes` as a file whose reads return at most `step(i)` bytes (short reads, as a pipe or a slow disk gives). */
function fileOf(bytes: Uint8Array, step: (i: number) => number = () => Infinity) {
  let at = 0, i = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      const k = Math.min(p.length, bytes.length - at, Math.max(1, step(i++)));
      p.set(bytes.subarray(at, at + k));
      at += k;
      return Promise.resolve(k > 0 ? k : null);
    },
  };
}

/** Byte equality of two arrays' views (fast: these are megabytes). */
function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const view = (x: ArrayBufferView) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
  return view(a).equals(view(b));
}

async function split(bytes: Uint8Array, step?: (i: number) => number): Promise<SplitChunk[]> {
  const out: SplitChunk[] = [];
  for await (const c of splitPickle(fileOf(bytes, step), (n) => new Uint8Array(n))) out.push(c);
  return out;
}

function joined(chunks: SplitChunk[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.chunk.length, 0));
  let o = 0;
  for (const c of chunks) out.set(c.chunk, (o += c.chunk.length) - c.chunk.length);
  return out;
}

/** The file offsets of the whole chunks. */
function wholeAt(chunks: SplitChunk[]): { at: number; n: number }[] {
  const out: { at: number; n: number }[] = [];
  let o = 0;
  for (const c of chunks) {
    if (c.whole) {
      out.push({ at: o, n: c.chunk.length });
      assertEquals(c.chunk.byteOffset, 0);
      assertEquals(c.chunk.byteLength, c.chunk.buffer.byteLength);
    }
    o += c.chunk.length;
  }
  return out;
}

Deno.test("splitPickle: the seed's own shard (numpy 2, protocol 4, frames) — same bytes, each array's data whole, for any read sizes", async () => {
  const bytes = new Uint8Array(gunzipSync(await Deno.readFile(seedShard)));
  for (const step of [undefined, () => 4096, (i: number) => 1 + (i * 7919) % 100_000]) {
    const chunks = await split(bytes, step);
    assertEquals(joined(chunks), bytes);
    const whole = wholeAt(chunks);
    assertEquals(whole.map((w) => w.n), [358400, 358400, 358400]); // 3 records of float32 (100, 896)
    for (const w of whole) {
      // the data sits right after its BINBYTES/BINBYTES8 opcode and length
      assert(
        [0x42, 0x8e].includes(bytes[w.at - (bytes[w.at - 9] === 0x8e ? 9 : 5)]),
        `opcode before ${w.at}`,
      );
    }
  }
});

Deno.test("splitPickle: text opcodes, small bytes across windows, BINBYTES and BYTEARRAY8; after STOP and past an unknown opcode the rest comes plain", async () => {
  const enc = new TextEncoder();
  const big = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
  const u32 = (n: number) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];
  const u64 = (n: number) => [...u32(n), 0, 0, 0, 0];
  const a = big(BIG_PAYLOAD, 1), b = big(BIG_PAYLOAD + 12345, 2), small = big(BIG_PAYLOAD - 1, 3);
  const parts = [
    [0x80, 2],
    [...enc.encode("cnumpy\nndarray\n")], // GLOBAL: two lines
    [...enc.encode("I12345\n"), ...enc.encode("Vtext\n")], // INT, UNICODE: one line each
    [0x58, ...u32(3), ...enc.encode("abc")], // BINUNICODE
    [0x42, ...u32(small.length)],
    [...small], // below the threshold: stays in the opcodes' chunks
    [0x42, ...u32(a.length)],
    [...a], // BINBYTES
    [0x4a, 1, 2, 3, 4, 0x71, 7, 0x68, 7], // BININT, BINPUT, BINGET
    [0x96, ...u64(b.length)],
    [...b], // BYTEARRAY8
    [0x2e], // STOP
  ];
  const body = Uint8Array.from(parts.flat());
  /** Where the part holding `data` starts in `body`. */
  const startOf = (data: Uint8Array) => {
    const k = parts.findIndex((p) => p.length === data.length && p[0] === data[0] && p[5] === data[5]);
    return parts.slice(0, k).reduce((s, p) => s + p.length, 0);
  };
  for (const step of [undefined, () => 1000, (i: number) => 1 + (i * 104729) % 70_000]) {
    const chunks = await split(body, step);
    assertEquals(joined(chunks), body);
    const whole = wholeAt(chunks);
    assertEquals(whole.map((w) => w.n), [a.length, b.length]);
    assertEquals(whole.map((w) => w.at), [startOf(a), startOf(b)]);
  }
  // Trailing bytes after STOP, and an opcode it does not know before the last array: bytes kept, no cut there.
  const after = Uint8Array.from([...body, ...big(BIG_PAYLOAD * 2, 9)]);
  const t = await split(after);
  assertEquals(joined(t), after);
  assertEquals(wholeAt(t).length, 2);
  const unknown = Uint8Array.from([
    0x80,
    4,
    0x42,
    ...u32(a.length),
    ...a,
    0xff,
    0x42,
    ...u32(b.length),
    ...b,
    0x2e,
  ]);
  const u = await split(unknown);
  assertEquals(joined(u), unknown);
  assertEquals(wholeAt(u).map((w) => w.n), [a.length]);
});

Deno.test("splitPickle: a file cut short inside an array's data gives every byte it has and no whole chunk for it", async () => {
  const n = BIG_PAYLOAD * 3;
  const full = Uint8Array.from([0x80, 4, 0x8e, n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, 0, 0, 0, 0, 0]);
  const cut = new Uint8Array(full.length + n - 100);
  cut.set(full);
  cut.fill(7, full.length);
  const chunks = await split(cut, () => 65536);
  assertEquals(joined(chunks), cut);
  assertEquals(wholeAt(chunks).length, 0);
  // Told the file's size, it does not even ask for a buffer of a length that ends past it (a corrupt length).
  const asked: number[] = [];
  const sized: SplitChunk[] = [];
  for await (const c of splitPickle(fileOf(cut), (k) => (asked.push(k), new Uint8Array(k)), cut.length)) {
    sized.push(c);
  }
  assertEquals(joined(sized), cut);
  assertEquals(asked, []);
});

Deno.test("read Worker with the splitter: the dataset reader's records, and pickle → pickle (none) byte for byte, buffers recycled through it", async () => {
  const input = await Deno.makeTempDir(), output = await Deno.makeTempDir();
  try {
    // 30 prompts × 2 layers of (80–82, 896) float32: ≥ 286 kB each, above the splitter's threshold; 8 MiB shards.
    const shardGb = (8 << 20) / 2 ** 30;
    const w = await ShardWriter.open({
      dir: input,
      format: "pickle",
      codec: "none",
      dtype: "float32",
      shardSizeBytes: 8 << 20,
      base: { shard_size_gb: shardGb },
    });
    const made = new Map<string, Float32Array>();
    for (let s = 0; s < 30; s++) {
      const tokens = 80 + (s % 3);
      await w.write([3, 7].map((layer) => {
        const a = activation(tokens, 896, s * 10 + layer);
        made.set(`${s}/${layer}`, a);
        return {
          task_id: `t${s}`,
          sample_idx: s,
          layer,
          activation: a.slice(),
          shape: [tokens, 896],
          prompt: `p${s}`,
        };
      }));
    }
    const m = await w.close();
    assert(m.shards.length >= 2);
    const check = async (dir: string) => {
      const buffers = new Set<ArrayBufferLike>();
      let n = 0;
      for await (const r of (await Dataset.open(dir)).records()) {
        assert(
          sameBytes(r.activation, made.get(`${r.sample_idx}/${r.layer}`)!),
          `${dir}: ${r.sample_idx}/${r.layer}`,
        );
        buffers.add(r.activation.buffer);
        n++;
      }
      assertEquals(n, 60);
      assertEquals(buffers.size, 60); // each record's array a buffer of its own
    };
    await check(input);
    // The shard stage hands the arrays to its writer and their buffers go back to the read Worker.
    const r = await reshardDataset({
      input,
      output,
      format: "pickle",
      codec: "none",
      dtype: "float32",
      shardSizeGb: shardGb,
    });
    assertEquals(r.records, 60);
    assertEquals(r.metadata.shards.map((s) => s.sha256), m.shards.map((s) => s.sha256));
    for (const s of m.shards) {
      const [a, b] = await Promise.all([output, input].map((d) => Deno.readFile(`${d}/${s.filename}`)));
      assert(sameBytes(a, b), s.filename);
    }
    await check(output);
  } finally {
    await Deno.remove(input, { recursive: true });
    await Deno.remove(output, { recursive: true });
  }
});
