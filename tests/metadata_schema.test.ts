// metadata.json carries the contract's schema_version; every stage refuses a newer major version with one line.
import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { runScript, writeDataset } from "./_shard_fixtures.ts";
import { SCHEMA_VERSION } from "../lib/shard/metadata.ts";

async function setVersion(dir: string, v: unknown): Promise<void> {
  const p = join(dir, "metadata.json");
  const m = JSON.parse(await Deno.readTextFile(p));
  if (v === undefined) delete m.schema_version;
  else m.schema_version = v;
  await Deno.writeTextFile(p, JSON.stringify(m, null, 2));
}

Deno.test("metadata.json: written with schema_version; a newer major is refused by verify and read, a newer minor and none (the seed's) are read", async () => {
  await using d = await tempDir();
  const meta = await writeDataset(d.path, 3, [1, 2]);
  assertEquals(meta.schema_version, SCHEMA_VERSION);
  assertEquals(JSON.parse(await Deno.readTextFile(join(d.path, "metadata.json"))).schema_version, "1.0");

  await setVersion(d.path, "2.0");
  for (const [script, args] of [["verify.ts", [d.path]], ["read.ts", [d.path]]] as const) {
    const r = await runScript(script, [...args]);
    assertEquals(r.code, 1, `${script}: ${r.stderr}`);
    const first = r.stderr.trim().split("\n")[0];
    assert(first.includes("schema_version 2.0, newer than this actshard reads (1.0)"), first);
    assert(first.includes("upgrade actshard"), first);
  }

  await setVersion(d.path, "x1");
  const bad = await runScript("verify.ts", [d.path]);
  assertEquals(bad.code, 1, bad.stderr);
  assert(bad.stderr.includes("malformed schema_version"), bad.stderr);

  for (const v of ["1.7", undefined]) {
    await setVersion(d.path, v);
    const ok = await runScript("verify.ts", [d.path]);
    assertEquals(ok.code, 0, `schema_version ${v}: ${ok.stderr}`);
  }
});
