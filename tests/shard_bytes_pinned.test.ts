/**
 * Pins the exact bytes (sha256) of small shards per format × codec × dtype, so that work on the writer's speed
 * (worker pools, fewer copies, hashing off the main thread) can never change what lands on disk: resume and
 * scale-out rely on the same records giving the same files. Records are big enough (≈ 140 KB) to cross the
 * codecs' 256 KiB chunks and the shard bound (two shards per case).
 *
 * To print the table after an intended format change: `ACTSHARD_PRINT_PINS=1 deno test -A tests/shard_bytes_pinned.test.ts`.
 */
import { assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { activation, sha256Hex } from "./_shard_fixtures.ts";
import { ShardWriter } from "../lib/shard/writer.ts";
import type { Codec } from "../lib/shard/codecs.ts";
import type { ActivationDType, ActivationRecord } from "../lib/types.ts";

const HIDDEN = 896;
const LAYERS = [10, 11];

function prompt(s: number): ActivationRecord[] {
  const tokens = 30 + 7 * s;
  return LAYERS.map((layer) => ({
    task_id: `task${s >> 1}`,
    sample_idx: s,
    layer,
    activation: activation(tokens, HIDDEN, s * 100 + layer),
    shape: [tokens, HIDDEN] as [number, number],
    prompt: `prompt ${s} ✓`,
  }));
}

const PROMPTS = Array.from({ length: 5 }, (_, s) => prompt(s));

/** sha256 of each shard file, in order, for `format/codec/dtype`. */
const PINS: Record<string, string[]> = {
  "pickle/gzip/float32": [
    "shard_0001.pkl.gz cd027dae74b1e68cafffabdf95ab820818a3bb1c9666008a867db96db53d6168",
    "shard_0002.pkl.gz c6e1e0c816da8e5d23e172384778b1362a53b03a5e0dcd29d3064a7a2ae68df5",
  ],
  "pickle/gzip/float16": [
    "shard_0001.pkl.gz c7ca9e4e0014bd038f730fc6c16e1db9669b1fe281beca46042333eea6838a86",
    "shard_0002.pkl.gz d270ea69631ccfa1de8255aece2b707a82346e2971ea632824515b5e58822f92",
  ],
  "safetensors/gzip/float32": [
    "shard_0001.safetensors.gz 9011c8e02ec2c851e63787441671db169708b6c666ba3d7bd8a6ae589ee4b6b0",
    "shard_0002.safetensors.gz fcbc620817df2bd751f6caba04f02237dc9ac5eb9576162a4a3e44e40b2964b4",
  ],
  "safetensors/gzip/float16": [
    "shard_0001.safetensors.gz 538592672ef22df35d186d836dd4d5bd783b01e792fe41631aa671e55dc2a116",
    "shard_0002.safetensors.gz 203def417e0e2f1e6058cdb7c5d7d16f5930ccfc96e23740fdc497391ed298a3",
  ],
  "safetensors/gzip/bfloat16": [
    "shard_0001.safetensors.gz a1e8adfe6a0b485115294d70f904dd8d5eb5891f797fd837bdba87739fff27b6",
    "shard_0002.safetensors.gz b03856195f798890003b231c3de51addebe42f22140a72156c596b748ad76c1d",
  ],
  "pickle/zstd/float32": [
    "shard_0001.pkl.zst da6458e284ce4c3ae1edfb754011f61b8d815ed7e133ce5b9d3d81612e745506",
    "shard_0002.pkl.zst 429f627f24a9a0b255d7bacb782c0fbdd8415f3cdb730ff2925165566e7ce0a3",
  ],
  "pickle/zstd/float16": [
    "shard_0001.pkl.zst 7de6b8057c812ba36883ba4bf8aaf5ce41cff778f0ce198548a97aa70b2384d5",
    "shard_0002.pkl.zst 076ad8a64f3461d2dde3d855a8d870e00e4daa4fa316acd2c5a38ac6ce752069",
  ],
  "safetensors/zstd/float32": [
    "shard_0001.safetensors.zst 79f3cfb135f4e7fb58930084b01a989793247ecf96a5aaeeae157b99f1cd00a2",
    "shard_0002.safetensors.zst f243e3da5604cc71a638b212901cec6367ffd64103dcda2cf0f253ccf408131e",
  ],
  "safetensors/zstd/float16": [
    "shard_0001.safetensors.zst c61e77b7281ffcd8a757f60d2abed12675efd8b9d7caabc1fe613873213f22b1",
    "shard_0002.safetensors.zst 760ca8d769f9c8dd55ddc9fb1f84f25e0fc42dc9788822f6dcd5bdb120a16b9f",
  ],
  "safetensors/zstd/bfloat16": [
    "shard_0001.safetensors.zst fd623799ea605a45429c8fa3cde618afb0277e80be583ff49d3f2ae3ed134b8f",
    "shard_0002.safetensors.zst d394c7553ed825c1a68a228c35d3d6fcb344cec3ff1b97df18cc1e10b7838b45",
  ],
  "pickle/none/float32": [
    "shard_0001.pkl 4112ee5e2d81219533cfcd1e92a4392dc486b0a514407c70c65769fcbab9c5b6",
    "shard_0002.pkl cb10a398568266d2600309a5eea74f8b44e9752a9eaf1ee3eb3d71068aa0838b",
  ],
  "pickle/none/float16": [
    "shard_0001.pkl e6d8bd67d3ee3245cb6cee952e21a0e5275ee2ce2325162c2c3969893acf2c73",
    "shard_0002.pkl 9a06ae4d080f11feffb8525456923fce351da096b753ef115aa39dbcb9bca48e",
  ],
  "safetensors/none/float32": [
    "shard_0001.safetensors f89a266caec145c6abb22dc36c155339844a5e0914b687fcad79cfec10dcb38c",
    "shard_0002.safetensors e4c55e2845677c4498339a7c40da1df9cb907f8c544e9f08a6804c4bd8354105",
  ],
  "safetensors/none/float16": [
    "shard_0001.safetensors 592c9acccd7e9b74c4161357bf3e0b8199d6e39074dbaf85c62c9647ab77d47e",
    "shard_0002.safetensors ee182768cb4fca4de8a0d52014f18cfa072d80d5defb140a5f963a5ae0bdc1a2",
  ],
  "safetensors/none/bfloat16": [
    "shard_0001.safetensors 7ac2919a109e5f06f35ff3eb17bb6a9077f0f045fb39f8f5cade4901b2cd0f19",
    "shard_0002.safetensors eeeacfc15f5091e7a94f59250ad97675733f9e2552cfbabd9cec8d8761f2ee50",
  ],
};

const CASES: ["pickle" | "safetensors", Codec, ActivationDType][] = [];
for (const codec of ["gzip", "zstd", "none"] as const) {
  for (const dtype of ["float32", "float16"] as const) CASES.push(["pickle", codec, dtype]);
  for (const dtype of ["float32", "float16", "bfloat16"] as const) CASES.push(["safetensors", codec, dtype]);
}

Deno.test("shard bytes are pinned per format × codec × dtype (sha256 of every file)", async () => {
  const got: Record<string, string[]> = {};
  for (const [format, codec, dtype] of CASES) {
    await using d = await tempDir();
    const w = await ShardWriter.open({
      dir: d.path,
      format,
      codec,
      dtype,
      // ≈ 3 prompts' float32 payload: two shards per case.
      shardSizeBytes: 3 * 2 * 50 * HIDDEN * (dtype === "float32" ? 4 : 2),
      base: { shard_size_gb: 1 },
      gzipWorkers: 2,
    });
    for (const g of PROMPTS) await w.write(g);
    const meta = await w.close();
    const hashes: string[] = [];
    for (const s of meta.shards) {
      const bytes = await Deno.readFile(`${d.path}/${s.filename}`);
      const h = await sha256Hex(bytes);
      assertEquals(s.sha256, h, `${s.filename}: metadata sha256 is the file's`);
      hashes.push(`${s.filename} ${h}`);
    }
    got[`${format}/${codec}/${dtype}`] = hashes;
  }
  if (Deno.env.get("ACTSHARD_PRINT_PINS")) console.log(JSON.stringify(got, null, 2));
  for (const [k, v] of Object.entries(got)) assertEquals(v, PINS[k], k);
});
