import { assert, assertEquals } from "./_assert.ts";
import { GRID_ENCODER_NAMES, parseGridEncoder } from "../lib/prompts/encoders.ts";
import { ActshardError } from "../lib/errors.ts";

const G = [[1, 2], [3, 0]];

Deno.test("prompts: each grid encoder of the seed's family", () => {
  const t = (spec: string) => parseGridEncoder(spec).toText(G);
  assertEquals(t("MinimalGridEncoder()"), "12\n30");
  assertEquals(t("GridWithSeparationEncoder('|')"), "1|2\n3|0");
  assertEquals(t('GridWithSeparationEncoder(split_symbol=", ")'), "1, 2\n3, 0");
  assertEquals(t("GridCodeBlockEncoder(MinimalGridEncoder())"), "```grid\n12\n30\n```");
  assertEquals(t("RowNumberEncoder(MinimalGridEncoder())"), "1 12\n2 30");
  assertEquals(t("GridShapeEncoder(MinimalGridEncoder())"), "```grid shape: 2x2\n12\n30\n```");
  assertEquals(t("RepeatNumberEncoder()"), "111222\n333000");
  assertEquals(t("RepeatNumberEncoder(n=2)"), "1122\n3300");
  assertEquals(t("RepeatNumberEncoder(2)"), "1122\n3300");
  assertEquals(t("ReplaceNumberEncoder(MinimalGridEncoder())"), "ò÷\nûñ");
  // The seed's default; shape is rows x columns.
  assertEquals(
    parseGridEncoder("GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))").toText([[0, 0, 0], [
      1,
      1,
      1,
    ]]),
    "```grid shape: 2x3\n1 000\n2 111\n```",
  );
  // Row numbers go past 9 without padding, as in the seed.
  const tall = Array.from({ length: 11 }, () => [5]);
  assert(parseGridEncoder("RowNumberEncoder(MinimalGridEncoder())").toText(tall).endsWith("\n10 5\n11 5"));
  // Whitespace is allowed, the canonical spec is normalized.
  assertEquals(
    parseGridEncoder(" GridShapeEncoder( RowNumberEncoder(MinimalGridEncoder()) ) ").spec,
    "GridShapeEncoder(RowNumberEncoder(MinimalGridEncoder()))",
  );
  assertEquals(GRID_ENCODER_NAMES.length, 7);
});

Deno.test("prompts: encoder specs are parsed, never evaluated; bad ones fail clearly", () => {
  const bad: [string, RegExp][] = [
    ["FancyEncoder()", /unknown encoder FancyEncoder/],
    ["GridShapeEncoder(MinimalGridEncoder()", /expected/],
    ["GridShapeEncoder()", /needs its base_encoder/],
    ["MinimalGridEncoder(1)", /takes 0 argument/],
    ["GridWithSeparationEncoder(MinimalGridEncoder())", /needs a string/],
    ["MinimalGridEncoder() + 1", /unexpected text/],
    ["__import__('os').system('true')", /unknown encoder __import__/],
    ["GridWithSeparationEncoder('|)", /unterminated string/],
    ["RepeatNumberEncoder(m=2)", /has no parameter m/],
    ["", /expected a name/],
  ];
  for (const [spec, re] of bad) {
    try {
      parseGridEncoder(spec);
      throw new Error(`accepted ${spec}`);
    } catch (e) {
      assert(e instanceof ActshardError, `${spec}: ${e}`);
      assert(re.test(e.message), `${spec}: ${e.message}`);
      assert(e.line().includes("known encoders"), e.line());
    }
  }
});
