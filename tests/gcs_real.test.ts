// Opt-in smoke test against real GCS: runs only with ACTSHARD_GCS_TEST_BUCKET set and Application Default
// Credentials available (gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS);
// otherwise it is registered as ignored, with a note.
import { join } from "node:path";
import { GcsStore } from "../lib/storage/gcs.ts";
import { PrefixLease } from "../lib/storage/gcs_lease.ts";
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
  name:
    "real GCS: write probe, lease, multi-chunk upload (streamed chunk PUTs), ranged read, re-upload, delete",
  ignore: !run,
  async fn() {
    await using tmp = await tempDir();
    const prefix = `actshard-smoke/${crypto.randomUUID()}`;
    const store = await GcsStore.open(bucket!, prefix, { chunkSize: 256 * 1024 }); // 2 chunks
    await store.probeWrite();
    const lease = await PrefixLease.acquire(store, { outputDir: tmp.path });
    await lease.release();
    const data = crypto.getRandomValues(new Uint8Array(60_000)); // getRandomValues: at most 64 KiB a call
    const big = new Uint8Array(300_000);
    for (let o = 0; o < big.length; o += data.length) {
      big.set(data.subarray(0, Math.min(data.length, big.length - o)), o);
    }
    await Deno.writeFile(join(tmp.path, "f.bin"), big);
    try {
      const a = await store.uploadFile(join(tmp.path, "f.bin"), "f.bin");
      const b = await store.uploadFile(join(tmp.path, "f.bin"), "f.bin");
      assertEquals(a.generation, b.generation);
      assertEquals(await store.readRange("f.bin", 1000, 1010), big.subarray(1000, 1010));
      assertEquals(await store.read("f.bin"), big);
      assertEquals((await store.list()).map((o) => o.name), ["f.bin"]);
    } finally {
      await store.delete("f.bin");
    }
  },
});
