/**
 * The multithreaded libzstd engine (lib/shard/zstd_mt.ts) and the engine choice (lib/shard/zstd_stream.ts): the
 * frame depends on the input only (not on the thread count, not on how the input is cut into calls), it is one
 * standard frame with its checksum that node:zlib, python-zstandard and `zstd -d` read, and the fallback engine
 * (node:zlib) is what runs when libzstd cannot be used. Inputs span several of libzstd's 2 MiB jobs.
 */
import { zstdDecompressSync } from "node:zlib";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { PYTHON, pythonTest } from "./_python.ts";
import { activation, sha256Hex } from "./_shard_fixtures.ts";
import { openZstdEngine, type ZstdEngine, type ZstdEngineChoice } from "../lib/shard/zstd_stream.ts";
import { libzstdErrorLine, openLibzstdEngine } from "../lib/shard/zstd_mt.ts";
import { ActshardError } from "../lib/errors.ts";
import { mulberry32 } from "../lib/util/seeded.ts";

/** ≈ 7 MB that zstd finds matches in (hex text of random bytes, zero rows, float rows): MT and ST frames differ. */
function payload(): Uint8Array {
  const rand = mulberry32(11);
  const out = new Uint8Array(7_000_000);
  const rows = new Uint8Array(activation(400, 896, 3).buffer);
  const hex = new TextEncoder().encode("0123456789abcdef");
  for (let o = 0; o < out.length;) {
    const kind = Math.floor(rand() * 3), n = Math.min(out.length - o, 20_000 + Math.floor(rand() * 200_000));
    if (kind === 0) {
      for (let i = 0; i < n; i++) {
        out[o + i] = i % 3 === 2 ? 32 : hex[Math.floor(rand() * 16)];
      }
    } else if (kind === 1) out.set(rows.subarray(0, n), o); // zero rows stay zero
    else {
      const at = Math.floor(rand() * (rows.length - n));
      out.set(rows.subarray(at, at + n), o);
    }
    o += n;
  }
  return out;
}
const PAYLOAD = payload();
/** sha256 of PAYLOAD's frame: libzstd 1.5.4 MT, and node:zlib (Deno 2.9's bundled zstd, single thread). */
const PIN_MT_154 = "cb1a8834e3c0d356d35ad656519cbb099232fd7ea0a739df4a93a73f41746723";
const PIN_NODE = "7a332e1363a793dd958786ff454fbda0cf0eb74aaab66cce26b9bc9275d23dad";
const noLibzstd = (() => {
  const probe = openLibzstdEngine({ level: 1, threads: 1 });
  if (typeof probe === "string") return true;
  probe.close();
  return false;
})();

/** Compress `src` with one engine, handed over in writes of `writeBytes`, libzstd fed `chunkBytes` at a time. */
async function compress(
  engine: ZstdEngine,
  src: Uint8Array,
  chunkBytes = 256 << 10,
  writeBytes = 100_003,
): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const c = engine.compressor((b) => (parts.push(b.slice()), Promise.resolve()), chunkBytes);
  for (let o = 0; o < src.length; o += writeBytes) await c.write(src.subarray(o, o + writeBytes));
  await c.finish();
  const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

async function withEngine<T>(
  opts: { engine: ZstdEngineChoice; threads?: number },
  f: (e: ZstdEngine) => Promise<T>,
) {
  const e = openZstdEngine({ level: 1, ...opts });
  try {
    return await f(e);
  } finally {
    e.close();
  }
}

/** Frame header descriptor bit 2 = Content_Checksum_flag (RFC 8878 §3.1.1.1.1). */
function hasChecksum(b: Uint8Array): boolean {
  assertEquals([...b.subarray(0, 4)], [0x28, 0xb5, 0x2f, 0xfd], "zstd magic");
  return (b[4] & 0x04) !== 0;
}

Deno.test({
  name:
    "libzstd MT frame: the same bytes for 1 or 3 threads and any cut of the input into calls; not node:zlib's",
  ignore: noLibzstd,
  fn: async () => {
    const one = await withEngine({ engine: "libzstd", threads: 1 }, (e) => compress(e, PAYLOAD));
    const three = await withEngine({ engine: "libzstd", threads: 3 }, (e) => compress(e, PAYLOAD));
    assertEquals(three, one, "1 vs 3 threads");
    for (const [chunk, writes] of [[1000, 777], [1 << 20, 3 << 20], [300_001, PAYLOAD.length]]) {
      const got = await withEngine(
        { engine: "libzstd", threads: 2 },
        (e) => compress(e, PAYLOAD, chunk, writes),
      );
      assertEquals(got, one, `calls of ${4 * chunk} bytes, writes of ${writes}`);
    }
    // The same engine writes frame after frame (a writer's shards): the second equals the first.
    await withEngine({ engine: "libzstd", threads: 2 }, async (e) => {
      assertEquals(await compress(e, PAYLOAD), one);
      assertEquals(await compress(e, PAYLOAD), one);
    });
    const node = await withEngine({ engine: "node" }, (e) => compress(e, PAYLOAD));
    assert(!node.every((b, i) => b === one[i]) || node.length !== one.length, "MT mode is really on");
    assertEquals(new Uint8Array(zstdDecompressSync(one)), PAYLOAD, "node:zlib reads it back");
    assertEquals(new Uint8Array(zstdDecompressSync(node)), PAYLOAD);
    assert(hasChecksum(one), "the frame carries its content checksum");
    if (Deno.env.get("ACTSHARD_PRINT_PINS")) console.log(await sha256Hex(one), await sha256Hex(node));
    // Pinned for the libzstd this project is tested with (frames may change with libzstd's version).
    const name = openLibzstdEngine({ level: 1 });
    if (typeof name !== "string") {
      name.close();
      if (name.name.startsWith("libzstd 1.5.4,")) assertEquals(await sha256Hex(one), PIN_MT_154);
    }
    assertEquals(await sha256Hex(node), PIN_NODE);
  },
});

Deno.test({
  name: "libzstd MT frame: `zstd -d` reads it back (one frame, checksum verified); a flipped byte fails it",
  ignore: noLibzstd || !new Deno.Command("sh", { args: ["-c", "command -v zstd"] }).outputSync().success,
  fn: async () => {
    await using d = await tempDir();
    const frame = await withEngine({ engine: "libzstd" }, (e) => compress(e, PAYLOAD));
    await Deno.writeFile(`${d.path}/x.zst`, frame);
    const o = await new Deno.Command("zstd", { args: ["-d", "-c", `${d.path}/x.zst`], stdout: "piped" })
      .output();
    assert(o.success);
    assertEquals(o.stdout, PAYLOAD);
    const list = await new Deno.Command("zstd", { args: ["-lv", `${d.path}/x.zst`], stdout: "piped" })
      .output();
    const text = new TextDecoder().decode(list.stdout);
    assert(/# Zstandard Frames: 1\b/.test(text), text);
    assert(/Check: XXH64/.test(text), text);
    const bad = frame.slice();
    bad[Math.floor(bad.length / 2)] ^= 0x40;
    await Deno.writeFile(`${d.path}/x.zst`, bad);
    const f = await new Deno.Command("zstd", {
      args: ["-d", "-c", `${d.path}/x.zst`],
      stdout: "null",
      stderr: "null",
    })
      .output();
    assert(!f.success, "a corrupted frame is refused");
  },
});

pythonTest(
  "libzstd MT frame: python-zstandard's stream_reader reads all of it (one frame) and sees the checksum flag",
  { modules: ["zstandard"], skipBecause: noLibzstd ? "libzstd with multithreading is not loadable" : null },
  async () => {
    await using d = await tempDir();
    await Deno.writeFile(
      `${d.path}/x.zst`,
      await withEngine({ engine: "libzstd" }, (e) => compress(e, PAYLOAD)),
    );
    const out = await new Deno.Command(PYTHON, {
      args: [
        "-c",
        "import sys,hashlib,zstandard as z; b=open(sys.argv[1],'rb').read(); " +
        "r=z.ZstdDecompressor().stream_reader(open(sys.argv[1],'rb')).read(); " +
        "print(z.get_frame_parameters(b).has_checksum, hashlib.sha256(r).hexdigest())",
        `${d.path}/x.zst`,
      ],
      stdout: "piped",
    }).output();
    assertEquals(new TextDecoder().decode(out.stdout).trim(), `True ${await sha256Hex(PAYLOAD)}`);
  },
);

Deno.test("engine choice: ACTSHARD_ZSTD_ENGINE=node forces node:zlib; a missing libzstd falls back silently (auto) or is one line (libzstd)", async () => {
  const saved = { engine: Deno.env.get("ACTSHARD_ZSTD_ENGINE"), lib: Deno.env.get("ACTSHARD_ZSTD_LIB") };
  const restore = (k: string, v: string | undefined) =>
    v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  try {
    Deno.env.set("ACTSHARD_ZSTD_ENGINE", "node");
    const forced = openZstdEngine();
    assertEquals(forced.name, "node:zlib (single thread)");
    forced.close();
    Deno.env.delete("ACTSHARD_ZSTD_ENGINE");
    Deno.env.set("ACTSHARD_ZSTD_LIB", "/nonexistent/libzstd.so.1");
    const fallback = openZstdEngine();
    assertEquals(fallback.name, "node:zlib (single thread)");
    const frame = await compress(fallback, PAYLOAD.subarray(0, 3 << 20));
    fallback.close();
    assertEquals(new Uint8Array(zstdDecompressSync(frame)), PAYLOAD.subarray(0, 3 << 20));
    Deno.env.set("ACTSHARD_ZSTD_ENGINE", "libzstd");
    const e = (() => {
      try {
        openZstdEngine().close();
      } catch (e) {
        return e;
      }
    })();
    assert(e instanceof ActshardError && e.kind === "usage", String(e));
    assert(!e.line().includes("\n") && e.line().includes("/nonexistent/libzstd.so.1"), e.line());
    Deno.env.set("ACTSHARD_ZSTD_ENGINE", "fast");
    let bad: unknown = null;
    try {
      openZstdEngine();
    } catch (e) {
      bad = e;
    }
    assert(
      bad instanceof ActshardError && bad.line().includes("auto (default), libzstd or node"),
      String(bad),
    );
  } finally {
    restore("ACTSHARD_ZSTD_ENGINE", saved.engine);
    restore("ACTSHARD_ZSTD_LIB", saved.lib);
  }
});

Deno.test({
  name: "a libzstd error code becomes one line with what failed and what to do",
  ignore: noLibzstd,
  fn: () => {
    // ZSTD_error_memory_allocation = 64; error codes are (size_t)-code.
    const line = libzstdErrorLine(2n ** 64n - 64n, "ZSTD_compressStream2");
    assert(!line.includes("\n"), line);
    assert(/zstd compression failed: Allocation error.*ACTSHARD_ZSTD_ENGINE=node/.test(line), line);
  },
});

Deno.test("without FFI permission the zstd engine is node:zlib, silently (same bytes as ACTSHARD_ZSTD_ENGINE=node)", async () => {
  await using d = await tempDir();
  const script = `${d.path}/engine.ts`;
  const zstdStream = new URL("../lib/shard/zstd_stream.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { openZstdEngine } from ${JSON.stringify(zstdStream)};\n` +
      "const e = openZstdEngine();\nconst parts = [];\n" +
      "const c = e.compressor((b) => (parts.push(b.slice()), Promise.resolve()), 1 << 18);\n" +
      "await c.write(new Uint8Array(await Deno.readFile(Deno.args[0])));\nawait c.finish();\ne.close();\n" +
      "await Deno.writeFile(Deno.args[1], new Uint8Array(parts.flatMap((p) => [...p])));\nconsole.log(e.name);\n",
  );
  const input = PAYLOAD.subarray(0, 3 << 20);
  await Deno.writeFile(`${d.path}/in`, input);
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      `--allow-read`,
      `--allow-write=${d.path}`,
      "--config",
      new URL("../deno.json", import.meta.url).pathname,
      script,
      `${d.path}/in`,
      `${d.path}/out.zst`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(o.stderr);
  assert(o.success, err);
  assertEquals(new TextDecoder().decode(o.stdout).trim(), "node:zlib (single thread)");
  assert(!/warn|libzstd/i.test(err), `no warning: ${err}`);
  const want = await withEngine({ engine: "node" }, (e) => compress(e, input, 1 << 18, input.length));
  assertEquals(await Deno.readFile(`${d.path}/out.zst`), want);
});

Deno.test({
  name: "libzstd engine: a frame aborted mid-way (a call in flight) leaves the next frame's bytes unchanged",
  ignore: noLibzstd,
  fn: async () => {
    await withEngine({ engine: "libzstd", threads: 2 }, async (e) => {
      const ref = await compress(e, PAYLOAD);
      for (const cut of [3 << 20, 5_000_001]) {
        const c = e.compressor(() => Promise.resolve(), 1 << 18);
        const pending = c.write(PAYLOAD.subarray(0, cut));
        c.abort();
        await pending.catch(() => {});
        assertEquals(await compress(e, PAYLOAD), ref, `after an abort at ${cut} bytes`);
      }
    });
  },
});
