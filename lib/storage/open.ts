/**
 * Open a dataset location (a local directory or `gs://bucket/prefix`) as a {@link BlobStore}.
 *
 * @example
 * ```ts
 * import { openStore } from "./open.ts";
 * const store = await openStore(await Deno.makeTempDir());
 * console.log(store.url, await store.list()); // an empty directory: []
 * ```
 *
 * @module
 */
import { ActshardError } from "../errors.ts";
import { LocalStore } from "./local.ts";
import { GcsStore, parseGsUrl } from "./gcs.ts";
import type { BlobStore } from "./types.ts";

/**
 * A store for `location`; local directories must exist.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { openStore } from "./open.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/metadata.json`, "{}");
 * const store = await openStore(dir); // or "gs://bucket/prefix" (Application Default Credentials)
 * assert.deepStrictEqual((await store.list()).map((o) => [o.name, o.size]), [["metadata.json", 2]]);
 * await openStore(`${dir}/missing`).catch((e) => console.log(e.line())); // directory not found (…): check the path
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function openStore(location: string): Promise<BlobStore> {
  if (location.startsWith("gs://")) {
    // gs://bucket/prefix: GcsStore (ADC auth; STORAGE_EMULATOR_HOST honoured for the emulator).
    const { bucket, prefix } = parseGsUrl(location);
    return await GcsStore.open(bucket, prefix);
  }
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(location);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ActshardError("directory not found", {
        where: location,
        kind: "input",
        hint: "check the path",
      });
    }
    throw e;
  }
  if (!st.isDirectory) {
    throw new ActshardError("not a directory", {
      where: location,
      kind: "input",
      hint: "give the dataset directory (the one holding metadata.json), not a file",
    });
  }
  return new LocalStore(location);
}
