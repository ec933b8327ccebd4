/**
 * The CRC-32C engines (lib/util/crc32c_isal.ts): ISA-L through FFI where it loads, the JS tables otherwise. Both
 * must give the standard CRC-32C at every length and alignment; the choice follows ACTSHARD_CRC_ENGINE and falls
 * back silently only under `auto`. CI installs libisal2 and requires the native engine there.
 */
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { ActshardError } from "../lib/errors.ts";
import { Crc32c, crc32c, crc32cTablesUpdate, NATIVE_MIN_BYTES } from "../lib/util/crc32c.ts";
import { crc32cEngine, crc32cEngineNote, openCrc32cEngine } from "../lib/util/crc32c_isal.ts";
import { runScript, writeDataset } from "./_shard_fixtures.ts";

const native = openCrc32cEngine();
const inCi = Deno.env.get("CI") === "true";
if (!native.update && !inCi) {
  console.log(
    `crc32c_engine: ISA-L not loaded (${native.engine}); the native cases are skipped (CI runs them)`,
  );
}

function bitwise(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) {
    c ^= x;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

const DATA = new Uint8Array(5000).map((_, i) => (i * 197 + 11 + (i >> 7)) & 0xff);
const LENGTHS = [0, 1, 15, 16, 17, 255, 256, 257, 1023, 1024, 1025, 4095, 4096, 4097, 4990];

Deno.test("crc32c engine: CI loads ISA-L (libisal2 is installed there)", () => {
  if (!inCi) return console.log(`  not CI: engine here is ${crc32cEngine()}`);
  assert(native.update !== null, `CI must run the native engine: ${native.engine}`);
  assert(crc32cEngine().startsWith("isal ("), crc32cEngine());
});

Deno.test({
  name:
    "crc32c engine: ISA-L equals a bit-wise reference at every length around its threshold and every alignment",
  ignore: native.update === null && !inCi,
  fn: () => {
    const update = native.update!;
    for (let off = 0; off < 8; off++) {
      for (const len of LENGTHS) {
        const v = DATA.subarray(off, off + len);
        assertEquals((~update(0xffffffff, v)) >>> 0, bitwise(v), `offset ${off} length ${len}`);
      }
    }
    // Continuing from a running state, as Crc32c does across chunks.
    const a = DATA.subarray(0, 3001), b = DATA.subarray(3001);
    assertEquals((~update(update(0xffffffff, a), b)) >>> 0, bitwise(DATA));
  },
});

Deno.test("crc32c engine: the JS tables equal a bit-wise reference past the native threshold (they are the fallback)", () => {
  for (let off = 0; off < 4; off++) {
    for (const len of LENGTHS) {
      const v = DATA.subarray(off, off + len);
      assertEquals((~crc32cTablesUpdate(0xffffffff, v)) >>> 0, bitwise(v), `offset ${off} length ${len}`);
    }
  }
});

Deno.test("crc32c engine: Crc32c mixes short (JS) and long (native) updates into one CRC", () => {
  const c = new Crc32c();
  let o = 0;
  for (const n of [3, NATIVE_MIN_BYTES, 1, 2000, 7, NATIVE_MIN_BYTES - 1, 999]) {
    c.update(DATA.subarray(o, o + n));
    o += n;
  }
  c.update(DATA.subarray(o));
  assertEquals(c.value(), bitwise(DATA));
  assertEquals(crc32c(DATA), bitwise(DATA));
});

Deno.test("crc32c engine: ACTSHARD_CRC_ENGINE picks js or isal; a missing ISA-L falls back under auto, is one usage line under isal", () => {
  const saved = { engine: Deno.env.get("ACTSHARD_CRC_ENGINE"), lib: Deno.env.get("ACTSHARD_ISAL_LIB") };
  const restore = (k: string, v: string | undefined) =>
    v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  const thrown = () => {
    try {
      openCrc32cEngine();
    } catch (e) {
      return e;
    }
    return null;
  };
  try {
    Deno.env.set("ACTSHARD_CRC_ENGINE", "js");
    assertEquals(openCrc32cEngine(), { update: null, engine: "js (ACTSHARD_CRC_ENGINE=js)" });
    Deno.env.delete("ACTSHARD_CRC_ENGINE");
    Deno.env.set("ACTSHARD_ISAL_LIB", "/nonexistent/libisal.so.2");
    const fallback = openCrc32cEngine();
    assertEquals(fallback.update, null);
    assert(fallback.engine.startsWith("js (/nonexistent/libisal.so.2: "), fallback.engine);
    Deno.env.set("ACTSHARD_CRC_ENGINE", "isal");
    const e = thrown();
    assert(e instanceof ActshardError && e.kind === "usage", String(e));
    assert(
      !e.line().includes("\n") && /\/nonexistent\/libisal\.so\.2.*apt-get install libisal2/.test(e.line()),
      e.line(),
    );
    Deno.env.set("ACTSHARD_CRC_ENGINE", "fast");
    const bad = thrown();
    assert(bad instanceof ActshardError && bad.line().includes("auto (default), isal or js"), String(bad));
  } finally {
    restore("ACTSHARD_CRC_ENGINE", saved.engine);
    restore("ACTSHARD_ISAL_LIB", saved.lib);
  }
});

Deno.test("crc32c engine: without FFI permission it is the JS tables, silently, with the same CRC", async () => {
  await using d = await tempDir();
  const script = `${d.path}/crc.ts`;
  const mod = new URL("../lib/util/crc32c.ts", import.meta.url).href;
  const isal = new URL("../lib/util/crc32c_isal.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { crc32c } from ${JSON.stringify(mod)};\nimport { crc32cEngine } from ${
      JSON.stringify(isal)
    };\n` +
      `const data = new Uint8Array(5000).map((_, i) => (i * 197 + 11 + (i >> 7)) & 0xff);\n` +
      `console.log(JSON.stringify({ crc: crc32c(data), engine: crc32cEngine() }));\n`,
  );
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", script],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(o.stderr);
  assert(o.success, err);
  assertEquals(JSON.parse(new TextDecoder().decode(o.stdout)), {
    crc: bitwise(DATA),
    engine: "js (no FFI permission (--allow-ffi))",
  });
  assertEquals(err, "");
});

Deno.test("crc32c engine: a note says what the JS tables cost and what to install, only where ISA-L did not load", () => {
  assertEquals(crc32cEngineNote("isal (libisal.so.2)"), null);
  assertEquals(crc32cEngineNote("js (ACTSHARD_CRC_ENGINE=js)"), null); // chosen: nothing to say
  const note = crc32cEngineNote(
    "js (libisal.so.2: cannot open shared object file; libisal.so: no such file)",
  );
  assert(note !== null);
  assert(note.includes("(libisal.so.2: cannot open shared object file)"), note); // the first reason only
  assert(note.includes("apt-get install libisal2") && note.includes("ACTSHARD_ISAL_LIB"), note);
  assert(!note.includes("\n"), note);
});

Deno.test("crc32c engine: the shard stage prints the note where ISA-L cannot load, and not where js was chosen", async () => {
  await using a = await tempDir();
  await using b = await tempDir();
  await using c = await tempDir();
  await writeDataset(a.path, 2, [4, 6], { gzipWorkers: 1 });
  const missing = await runScript("shard.ts", ["--input", a.path, "--output", b.path, "--codec", "none"], {
    ACTSHARD_ISAL_LIB: `${a.path}/no-such-libisal.so`,
  });
  assertEquals(missing.code, 0, missing.stderr);
  const notes = missing.stderr.split("\n").filter((l) => l.startsWith("shard: note: CRC-32C on JS tables"));
  assertEquals(notes.length, 1, missing.stderr);
  assert(notes[0].includes("no-such-libisal.so"), notes[0]);
  const chosen = await runScript("shard.ts", ["--input", a.path, "--output", c.path, "--codec", "none"], {
    ACTSHARD_CRC_ENGINE: "js",
  });
  assertEquals(chosen.code, 0, chosen.stderr);
  assert(!chosen.stderr.includes("note:"), chosen.stderr);
  // Both wrote the same shards (the CRCs are the same values either way).
  const [mb, mc] = await Promise.all(
    [b.path, c.path].map(async (d) => JSON.parse(await Deno.readTextFile(`${d}/metadata.json`))),
  );
  assertEquals(
    mb.shards.map((s: { crc32c: string }) => s.crc32c),
    mc.shards.map((s: { crc32c: string }) => s.crc32c),
  );
});
