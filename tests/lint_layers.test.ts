import { assertEquals } from "./_assert.ts";
import { importsOf, layerViolations, unitOf } from "../scripts/lint_layers.ts";

Deno.test("lint:layers: finds upward and sideways imports, allows downward ones and imports within a folder", () => {
  const files = new Map([
    ["lib/shard/reader.ts", 'import { x } from "../storage/open.ts";\nimport { y } from "./codecs.ts";'],
    ["lib/storage/up.ts", 'import type { M } from "../shard/metadata.ts";'],
    [
      "lib/backend/pjrt/runner.ts",
      'export { z } from "../../shard/dtype.ts";\nconst m = await import("../../util/a.ts");',
    ],
    ["lib/util/a.ts", 'import "../errors.ts";'],
    ["scripts/x.ts", 'import { a } from "../lib/pipeline/extract.ts";'],
    ["tests/t.ts", 'import { a } from "../lib/cli/flags.ts";'],
  ]);
  const got = layerViolations(files).map((v) => `${v.from} → ${v.to}`);
  assertEquals(got, [
    "lib/backend/pjrt/runner.ts → lib/shard/dtype.ts",
    "lib/storage/up.ts → lib/shard/metadata.ts",
  ]);
});

Deno.test("lint:layers: import forms and units", () => {
  assertEquals(
    importsOf(
      'import a from "./a.ts";\nimport "./b.ts";\nexport * from "../c.ts";\nawait import("./d.ts");\nimport x from "npm:y";',
    ),
    ["./a.ts", "./b.ts", "../c.ts", "./d.ts"],
  );
  assertEquals(unitOf("lib/errors.ts"), "lib/util");
  assertEquals(unitOf("lib/shard/formats/pickle.ts"), "lib/shard");
  assertEquals(unitOf("native/pjrt/api.ts"), "native");
  assertEquals(unitOf("tests/x.ts"), null);
});
