import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { choiceFlag, numberFlag, parseFlags } from "../lib/cli/flags.ts";
import { ActshardError } from "../lib/errors.ts";

const specs = {
  layers_to_extract: { type: "string" as const, list: true, default: "10-23", help: "layers" },
  compress_shards: { type: "boolean" as const, negatable: true, default: true, help: "gzip" },
  verbose: { type: "boolean" as const, help: "talk" },
  batch_size: { type: "string" as const, default: "8", help: "batch" },
};

Deno.test("flags: argparse-style lists, negation, defaults", () => {
  const r = parseFlags(
    "x",
    ["--layers_to_extract", "20", "21", "22", "--no_compress_shards", "--verbose"],
    specs,
  );
  assertEquals(r.values.layers_to_extract, "20,21,22");
  assertEquals(r.values.compress_shards, false);
  assertEquals(r.values.verbose, true);
  assertEquals(r.values.batch_size, "8");
  assertEquals(parseFlags("x", ["--batch_size", "-1"], specs).values.batch_size, "-1");
  const d = parseFlags("x", [], specs);
  assertEquals(d.values.compress_shards, true);
  assertEquals(d.values.verbose, false);
});

Deno.test("flags: unknown flag and bad values are usage errors (exit 2)", () => {
  const e = assertThrows(() => parseFlags("x", ["--nope"], specs), ActshardError);
  void e;
  try {
    parseFlags("x", ["--nope"], specs);
  } catch (err) {
    assert(err instanceof ActshardError);
    assertEquals(err.exitCode(), 2);
    assert(err.line().includes("--nope"));
  }
  assertThrows(() => numberFlag("batch_size", "abc", { integer: true }), ActshardError);
  assertThrows(() => numberFlag("batch_size", "0", { integer: true, min: 1 }), ActshardError);
  assertEquals(numberFlag("batch_size", "4", { integer: true, min: 1 }), 4);
  assertThrows(() => choiceFlag("codec", "lz4", ["gzip", "zstd", "none"] as const), ActshardError);
  assertThrows(() => parseFlags("x", ["stray"], specs), ActshardError);
});

Deno.test("flags: --help returns generated text", () => {
  const r = parseFlags("extract", ["--help"], specs);
  assert(r.help?.includes("--layers_to_extract"));
  assert(r.help?.includes("--no_compress_shards"));
  assert(r.help?.includes("(default: 10-23)"));
});
