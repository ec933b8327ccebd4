/**
 * Open a dataset location (a local directory or `gs://bucket/prefix`) as a {@link BlobStore}.
 *
 * @example
 * ```ts
 * import { openStore } from "./open.ts";
 * const store = await openStore("activations_arc");
 * console.log(store.url);
 * ```
 */
import { ActshardError } from "../errors.ts";
import { LocalStore } from "./local.ts";
import type { BlobStore } from "./types.ts";

/** A store for `location`; local directories must exist. */
export async function openStore(location: string): Promise<BlobStore> {
  if (location.startsWith("gs://")) {
    // --- GCS branch: replaced by the GCS module's GcsStore. ---
    throw new ActshardError("gs:// locations need the GCS module", {
      where: location,
      kind: "input",
      hint: "copy the dataset locally (gsutil -m cp -r) or use a build with GCS support",
    });
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
