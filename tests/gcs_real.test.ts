// Opt-in smoke test against real GCS: runs only with ACTSHARD_GCS_TEST_BUCKET set and Application Default
// Credentials available (gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS);
// otherwise it is registered as ignored, with a note.
import { join } from "node:path";
import { GcsStore } from "../lib/storage/gcs.ts";
import { assertEquals } from "./_assert.ts";
import { tempDir } from "./_shared.ts";

const bucket = Deno.env.get("ACTSHARD_GCS_TEST_BUCKET");
const haveCreds = !!(Deno.env.get("GOOGLE_APPLICATION_CREDENTIALS") ||
  (() => {
    try {
      return Deno.statSync(
        join(Deno.env.get("HOME") ?? "", ".config/gcloud/application_default_credentials.json"),
      )
        .isFile;
    } catch {
      return false;
    }
  })());
const run = !!bucket && haveCreds && !Deno.env.get("STORAGE_EMULATOR_HOST");
if (!run) {
  console.warn(
    "note: real-GCS smoke test skipped (set ACTSHARD_GCS_TEST_BUCKET and Application Default Credentials)",
  );
}

Deno.test({
  name: "real GCS: upload, stat, ranged read, idempotent re-upload, delete",
  ignore: !run,
  async fn() {
    await using tmp = await tempDir();
    const prefix = `actshard-smoke/${crypto.randomUUID()}`;
    const store = await GcsStore.open(bucket!, prefix);
    const data = crypto.getRandomValues(new Uint8Array(300_000));
    await Deno.writeFile(join(tmp.path, "f.bin"), data);
    try {
      const a = await store.uploadFile(join(tmp.path, "f.bin"), "f.bin");
      const b = await store.uploadFile(join(tmp.path, "f.bin"), "f.bin");
      assertEquals(a.generation, b.generation);
      assertEquals(await store.readRange("f.bin", 1000, 1010), data.subarray(1000, 1010));
      assertEquals((await store.list()).map((o) => o.name), ["f.bin"]);
    } finally {
      await store.delete("f.bin");
    }
  },
});
