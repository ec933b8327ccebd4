/**
 * Pins the exact bytes (sha256) of small shards per format × codec × dtype, so that work on the writer's speed
 * (worker pools, fewer copies, hashing off the main thread) can never change what lands on disk: resume and
 * scale-out rely on the same records giving the same files. Records are big enough (≈ 140 KB) to cross the
 * codecs' 256 KiB chunks and the shard bound (two shards per case).
 *
 * The zstd pins include the frame content checksum (#16); they equal what main's writer wrote before the
 * speed work was merged. Both zstd engines (zstd_stream.ts) must give them: these shards (< 2 MiB) are one
 * libzstd MT job, whose frame equals node:zlib's single-threaded one; MT and single-threaded frames of larger,
 * compressible inputs differ (pinned in zstd_mt.test.ts). To print the table after an intended format change: `ACTSHARD_PRINT_PINS=1 deno test -A tests/shard_bytes_pinned.test.ts`.
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
    "shard_0001.pkl.zst 6258f13a35fc05adcc0275dbbd414945fd79d35628613cf1f5d06a082c95e542",
    "shard_0002.pkl.zst b7b93f79198c78d26c9c8ef603b1d4d0e648b877bb589b79b64facfc9e3a153d",
  ],
  "pickle/zstd/float16": [
    "shard_0001.pkl.zst d63196ac2d291d05ce242c9dc740fa9c25a5ea9b657d4743db5a87cc6b6773e0",
    "shard_0002.pkl.zst 8ccebf963af168bcf494645dc6f14341ff0703dfa7e5bd8e119cd8bdbc971831",
  ],
  "safetensors/zstd/float32": [
    "shard_0001.safetensors.zst 9e45d031953c1d9c0796dc6f99a8cf0845d6aa6948e9ea11318bb2edbe95f677",
    "shard_0002.safetensors.zst 526efa44fca8363e75c4d32dbdec7f84e2c27c7a15f086265b6c4dd77d6266a8",
  ],
  "safetensors/zstd/float16": [
    "shard_0001.safetensors.zst db939fd89ecbeafb33cfc8778368152c1e03887416f903866ffd018ea8816a18",
    "shard_0002.safetensors.zst 2b1c6a206fd2993da6f2305f3c09f4258a3b20d11aac4f83a5ab29d73d61d319",
  ],
  "safetensors/zstd/bfloat16": [
    "shard_0001.safetensors.zst 0e774b71639d01ee8f9a58c0290175d83c51c5737b324552bb56e9f733178573",
    "shard_0002.safetensors.zst dfb6b17283771103d4686ace66f23cfa25efaa73f9e240ec0bbef3bc312c0c6e",
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

/** sha256 of every shard per case written with `cases`. */
async function shardHashes(cases: typeof CASES): Promise<Record<string, string[]>> {
  const got: Record<string, string[]> = {};
  for (const [format, codec, dtype] of cases) {
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
  return got;
}

Deno.test("shard bytes are pinned per format × codec × dtype (sha256 of every file)", async () => {
  const got = await shardHashes(CASES);
  if (Deno.env.get("ACTSHARD_PRINT_PINS")) console.log(JSON.stringify(got, null, 2));
  for (const [k, v] of Object.entries(got)) assertEquals(v, PINS[k], k);
});

Deno.test("zstd shard bytes are pinned for the fallback engine too (node:zlib, ACTSHARD_ZSTD_ENGINE=node)", async () => {
  const saved = Deno.env.get("ACTSHARD_ZSTD_ENGINE");
  Deno.env.set("ACTSHARD_ZSTD_ENGINE", "node");
  try {
    const got = await shardHashes(CASES.filter(([, codec]) => codec === "zstd"));
    assertEquals(Object.keys(got).length, 5);
    for (const [k, v] of Object.entries(got)) assertEquals(v, PINS[k], k);
  } finally {
    if (saved === undefined) Deno.env.delete("ACTSHARD_ZSTD_ENGINE");
    else Deno.env.set("ACTSHARD_ZSTD_ENGINE", saved);
  }
});
