import { join } from "node:path";
import { assert, assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";
import { main } from "../scripts/demo.ts";
import { readMetadata } from "../lib/shard/metadata.ts";
import { LocalStore } from "../lib/storage/local.ts";

Deno.test("demo: tiny checkpoint + generated tasks → extract with upload to the emulator → verify → read", async () => {
  await using tmp = await tempDir();
  const out = join(tmp.path, "demo");
  assertEquals(await main(["--out", out]), 0);
  const meta = await readMetadata(new LocalStore(join(out, "activations")));
  assertEquals(meta.status, "complete");
  assertEquals(meta.total_samples, 4 * 2 * 3, "4 tasks × 2 predictions × 3 layers");
  assert(
    meta.shards.every((s) =>
      s.gcs_verified === true && s.gcs_path?.startsWith("gs://actshard-demo/activations/")
    ),
  );
  // The emulator persisted the uploaded objects (and metadata.json) under demo/gcs.
  const files: string[] = [];
  for await (const e of Deno.readDir(join(out, "gcs"))) files.push(e.name);
  assert(files.length > 0, "emulator state written");
});
