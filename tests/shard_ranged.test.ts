/**
 * Single-record reads of uncompressed safetensors datasets fetch only byte ranges: the 8-byte length, the JSON
 * header, then the one tensor. Checked on a local directory (through a store wrapper that records the calls it
 * passes on to the real LocalStore) and on gs:// (the project's GCS emulator behind a counting HTTP relay, with
 * `deno task read` in a subprocess), so the proof is the bytes actually served.
 */
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { join } from "node:path";
import { runScript, writeDataset } from "./_shard_fixtures.ts";
import { Dataset, type ReadRecord, readShard } from "../lib/shard/reader.ts";
import { encodeNpy } from "../lib/shard/npy.ts";
import { LocalStore } from "../lib/storage/local.ts";
import { GcsStore } from "../lib/storage/gcs.ts";
import { startGcsEmulator } from "../lib/storage/gcs_emulator/server.ts";
import type { BlobStore, ObjectInfo } from "../lib/storage/types.ts";
import { main as readMain } from "../scripts/read.ts";

/** Wraps a real store and records what is asked of it (not a double: every call goes to `inner`). */
class RecordingStore implements BlobStore {
  calls: { op: string; name: string; start?: number; end?: number; bytes?: number }[] = [];
  constructor(private inner: BlobStore) {}
  get url(): string {
    return this.inner.url;
  }
  list(): Promise<ObjectInfo[]> {
    this.calls.push({ op: "list", name: "" });
    return this.inner.list();
  }
  stat(name: string): Promise<ObjectInfo | null> {
    this.calls.push({ op: "stat", name });
    return this.inner.stat(name);
  }
  async read(name: string): Promise<Uint8Array> {
    const b = await this.inner.read(name);
    this.calls.push({ op: "read", name, bytes: b.length });
    return b;
  }
  async readRange(name: string, start: number, end: number): Promise<Uint8Array> {
    const b = await this.inner.readRange(name, start, end);
    this.calls.push({ op: "readRange", name, start, end, bytes: b.length });
    return b;
  }
  openRead(name: string): Promise<ReadableStream<Uint8Array>> {
    this.calls.push({ op: "openRead", name });
    return this.inner.openRead(name);
  }
}

const LAYERS = [3, 5];
const HIDDEN = 32;

/** 8 prompts, uncompressed safetensors, about 3 prompts per shard. */
async function writeSt(dir: string) {
  return await writeDataset(dir, 8, LAYERS, {
    format: "safetensors",
    codec: "none",
    shardSizeBytes: 3 * 9 * HIDDEN * 4 * LAYERS.length,
  });
}

/** The record read the ordinary way (whole shard streamed). */
async function streamed(store: BlobStore, shard: string, layer: number, idx: number): Promise<ReadRecord> {
  for await (const r of readShard(store, shard, { layer, sample_idx: idx })) return r;
  throw new Error(`no record ${layer}/${idx} in ${shard}`);
}

function headerLen(file: Uint8Array): number {
  return Number(new DataView(file.buffer, file.byteOffset, 8).getBigUint64(0, true));
}

Deno.test("single-record read on a local safetensors dataset: header and one tensor by range, nothing else", async () => {
  await using tmp = await tempDir();
  const meta = await writeSt(tmp.path);
  assert(meta.shards.length >= 3, `want several shards, got ${meta.shards.length}`);
  const rec = new RecordingStore(new LocalStore(tmp.path));
  const ds = await Dataset.open(rec);
  rec.calls = [];
  const want = meta.shards.find((e) => e.sample_idx_min! <= 4 && 4 <= e.sample_idx_max!)!;
  const got: ReadRecord[] = [];
  for await (const r of ds.records({ layer: 5, sample_idx: 4 })) got.push(r);
  assertEquals(got.length, 1);
  const ref = await streamed(new LocalStore(tmp.path), want.filename, 5, 4);
  assertEquals(got[0], ref);
  assertEquals([got[0].layer, got[0].sample_idx, got[0].shard], [5, 4, want.filename]);

  const file = await Deno.readFile(join(tmp.path, want.filename));
  const hlen = headerLen(file);
  const tensorBytes = ref.activation.length * 4;
  assertEquals(rec.calls.map((c) => c.op), ["readRange", "readRange", "readRange"]);
  assert(rec.calls.every((c) => c.name === want.filename), JSON.stringify(rec.calls));
  assertEquals(rec.calls.slice(0, 2).map((c) => [c.start, c.end]), [[0, 8], [8, 8 + hlen]]);
  const t = rec.calls[2];
  assertEquals(t.end! - t.start!, tensorBytes);
  // The bytes fetched are exactly the tensor's bytes in the file.
  const bytes = new Uint8Array(ref.activation.buffer, ref.activation.byteOffset, tensorBytes);
  assertEquals(file.subarray(t.start!, t.end!), bytes);
  assert(8 + hlen + tensorBytes < file.length / 2, "a range read should fetch a small part of the shard");

  // A sample's every layer: one header, one range per layer; compressed shards still stream.
  rec.calls = [];
  const layers: number[] = [];
  for await (const r of ds.records({ sample_idx: 4 })) layers.push(r.layer);
  assertEquals(layers, LAYERS);
  assertEquals(rec.calls.filter((c) => c.op === "openRead"), []);
  assertEquals(rec.calls.length, 2 + LAYERS.length);

  // The CLI's --out path goes through the same code.
  const npy = join(tmp.path, "one.npy");
  assertEquals(await readMain([tmp.path, "--layer", "5", "--sample_idx", "4", "--out", npy]), 0);
  assertEquals(await Deno.readFile(npy), encodeNpy(ref.activation, ref.shape));
});

Deno.test("single-record read on a local safetensors dataset: absent record and truncated shard", async () => {
  await using tmp = await tempDir();
  const meta = await writeSt(tmp.path);
  const ds = await Dataset.open(tmp.path);
  const none: ReadRecord[] = [];
  for await (const r of ds.records({ layer: 4, sample_idx: 2 })) none.push(r);
  assertEquals(none, []);
  const e = meta.shards.find((e) => e.sample_idx_min! <= 2 && 2 <= e.sample_idx_max!)!;
  const p = join(tmp.path, e.filename);
  const b = await Deno.readFile(p);
  await Deno.writeFile(p, b.subarray(0, b.length - 16));
  const r = await runScript("read.ts", [tmp.path, "--layer", "5", "--sample_idx", String(e.sample_idx_max)]);
  assertEquals(r.code, 1, r.stderr);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert(/cut short: the file is truncated/.test(r.stderr), r.stderr);
});

interface Served {
  path: string;
  range: string | null;
  bytes: number;
}

/** An HTTP relay in front of the emulator that counts the media bytes it serves, per request. */
function countingRelay(target: string) {
  const served: Served[] = [];
  const ac = new AbortController();
  const { promise, resolve } = Promise.withResolvers<number>();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen: (a) => resolve(a.port) },
    async (req) => {
      const u = new URL(req.url);
      const headers = new Headers(req.headers);
      headers.delete("host");
      const res = await fetch(`${target}${u.pathname}${u.search}`, {
        method: req.method,
        headers,
        body: req.body ? await req.arrayBuffer() : undefined,
      });
      const body = new Uint8Array(await res.arrayBuffer());
      if (u.searchParams.get("alt") === "media") {
        served.push({
          path: decodeURIComponent(u.pathname),
          range: req.headers.get("range"),
          bytes: body.length,
        });
      }
      const out = new Headers(res.headers);
      out.delete("content-length");
      out.delete("content-encoding");
      return new Response(req.method === "HEAD" ? null : body, { status: res.status, headers: out });
    },
  );
  return {
    served,
    url: promise.then((port) => `http://127.0.0.1:${port}`),
    async close() {
      ac.abort();
      await server.finished;
    },
  };
}

Deno.test({
  name: "read gs://B/P --layer --sample_idx --out: the emulator serves only the header and that tensor",
  sanitizeResources: false, // the GCS client keeps pooled sockets
  sanitizeOps: false,
  fn: async () => {
    await using tmp = await tempDir();
    const local = join(tmp.path, "ds");
    const meta = await writeSt(local);
    const emu = await startGcsEmulator({ buckets: ["acts"] });
    const relay = countingRelay(emu.url);
    const old = Deno.env.get("STORAGE_EMULATOR_HOST");
    try {
      const store = await GcsStore.open("acts", "run", { apiEndpoint: emu.url, checkAccess: false });
      for (const e of meta.shards) await store.uploadFile(join(local, e.filename), e.filename);
      await store.writeSmall("metadata.json", await Deno.readFile(join(local, "metadata.json")));

      const want = meta.shards.find((e) => e.sample_idx_min! <= 6 && 6 <= e.sample_idx_max!)!;
      const file = await Deno.readFile(join(local, want.filename));
      const hlen = headerLen(file);
      const ref = await streamed(new LocalStore(local), want.filename, 3, 6);
      const tensorBytes = ref.activation.length * 4;

      Deno.env.set("STORAGE_EMULATOR_HOST", await relay.url);
      const npy = join(tmp.path, "x.npy");
      const r = await runScript("read.ts", [
        "gs://acts/run",
        "--layer",
        "3",
        "--sample_idx",
        "6",
        "--out",
        npy,
      ]);
      assertEquals(r.code, 0, r.stderr);
      assert(r.stdout.includes(`sample 6`) && r.stdout.includes(want.filename), r.stdout);
      assertEquals(await Deno.readFile(npy), encodeNpy(ref.activation, ref.shape));

      const shardReads = relay.served.filter((s) => !s.path.endsWith("metadata.json"));
      assertEquals(shardReads.map((s) => s.path.split("/").pop()), [
        want.filename,
        want.filename,
        want.filename,
      ]);
      assert(shardReads.every((s) => s.range !== null), JSON.stringify(shardReads));
      assertEquals(shardReads.map((s) => s.bytes), [8, hlen, tensorBytes]);
      const total = relay.served.reduce((s, x) => s + x.bytes, 0);
      const metaBytes = relay.served.filter((s) => s.path.endsWith("metadata.json")).reduce(
        (s, x) => s + x.bytes,
        0,
      );
      assertEquals(total, metaBytes + 8 + hlen + tensorBytes);
      assert(8 + hlen + tensorBytes < file.length / 2, "ranged reads should be a small part of the shard");
    } finally {
      if (old === undefined) Deno.env.delete("STORAGE_EMULATOR_HOST");
      else Deno.env.set("STORAGE_EMULATOR_HOST", old);
      await relay.close();
      await emu.close();
    }
  },
});
