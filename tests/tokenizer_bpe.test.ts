import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { FIXTURE_MERGES, FIXTURE_SPECIALS, writeTinyTokenizer } from "./_tokenizer_fixture.ts";
import { BYTE_TO_CHAR, CHAR_TO_BYTE, toByteLevel } from "../lib/tokenizer/byte_level.ts";
import { compileHfRegex, QWEN2_PATTERN, splitPieces } from "../lib/tokenizer/pretokenize.ts";
import { Tokenizer } from "../lib/tokenizer/bpe.ts";
import { ActshardError } from "../lib/errors.ts";

Deno.test("tokenizer: byte-level alphabet is a bijection with GPT-2's fixed points", () => {
  assertEquals(new Set(BYTE_TO_CHAR).size, 256);
  assertEquals(BYTE_TO_CHAR[32], "Ġ");
  assertEquals(BYTE_TO_CHAR[10], "Ċ");
  assertEquals(BYTE_TO_CHAR[65], "A");
  assertEquals(BYTE_TO_CHAR[0], "Ā");
  for (let b = 0; b < 256; b++) assertEquals(CHAR_TO_BYTE[BYTE_TO_CHAR[b].charCodeAt(0)], b);
  assertEquals(toByteLevel("é"), "Ã©"); // UTF-8 C3 A9
});

Deno.test("tokenizer: Qwen2 pre-tokenizer splits digits singly, contractions case-insensitively", () => {
  const re = compileHfRegex(QWEN2_PATTERN);
  assertEquals(splitPieces("Hello 123", re), ["Hello", " ", "1", "2", "3"]);
  assertEquals(splitPieces("I'M here", re), ["I", "'M", " here"]);
  assertEquals(splitPieces("a  \n\nb", re), ["a", "  \n\n", "b"]);
  assertEquals(splitPieces("x   y", re), ["x", "  ", " y"]);
  // U+0085 is Unicode White_Space (Rust/Oniguruma \s) though not JS \s.
  assertEquals(splitPieces("a\u0085\u0085b", re), ["a", "\u0085", "\u0085b"]);
  assertEquals(splitPieces("", re), []);
});

Deno.test("tokenizer: ranked merges, special tokens, decode round trip (generated fixture)", async () => {
  await using dir = await tempDir();
  await writeTinyTokenizer(dir.path);
  const tok = await Tokenizer.fromModelDir(dir.path);
  const the = tok.tokenToId("Ġthe")!;
  const grid = tok.tokenToId("grid")!;
  assert(the !== undefined && grid !== undefined);
  // " the" merges fully via Ġ t → Ġt, h e → he, Ġt he → Ġthe (ranks 0, 1, 3); "th" (rank 2) loses to "he".
  assertEquals(Array.from(tok.encode(" the")), [the]);
  assertEquals(Array.from(tok.encode("grid")), [grid]);
  const im = tok.tokenToId("<|im_start|>")!;
  const ids = Array.from(tok.encode("<|im_start|>grid<|im_end|>"));
  assertEquals(ids, [im, grid, tok.tokenToId("<|im_end|>")]);
  assertEquals(tok.eosId, tok.tokenToId("<|endoftext|>"));
  assertEquals(tok.padId, tok.eosId);
  assertEquals(tok.vocabSize, 256 + FIXTURE_MERGES.length + FIXTURE_SPECIALS.length);
  assertEquals(tok.chatTemplate, null);
  for (const s of ["Ünïcödé 🦙 text\n\twith tabs", "<|im_start|>x<|im_end|>", "", "the grid   "]) {
    assertEquals(tok.decode(tok.encode(s)), s.normalize("NFC"));
  }
  // NFC: "e" + combining acute encodes like the precomposed "é".
  assertEquals(Array.from(tok.encode("e\u0301")), Array.from(tok.encode("\u00e9")));
  // An invalid UTF-8 byte sequence decodes with U+FFFD (errors="replace").
  assertEquals(tok.decode([tok.tokenToId("Ã")!]), "\ufffd");
  assertThrows(() => tok.decode([999999]), ActshardError);
});

Deno.test("tokenizer: a directory without tokenizer files is a clear error", async () => {
  await using dir = await tempDir();
  try {
    await Tokenizer.fromModelDir(dir.path);
    throw new Error("expected a failure");
  } catch (e) {
    assert(e instanceof ActshardError);
    assert(e.line().includes(dir.path) && e.line().includes("vocab.json"), e.line());
  }
});
