/**
 * Deliberately clear the dataset under a GCS prefix (`deno task upload --clear_prefix`, `--overwrite`):
 * metadata.json goes first — so at no moment does a metadata.json list a shard that is gone — then every object
 * our runs write there (`shard_NNNN.*`, `worker-IIIII-of-NNNNN/…` of a scaled-out run, write probes). Anything
 * else under the prefix is left alone and named, and the writer lease is kept (the caller holds it).
 *
 * @example
 * ```ts
 * import { clearDataset } from "./gcs_clear.ts";
 * import { GcsStore } from "./gcs.ts";
 * import { startGcsEmulator } from "./gcs_emulator/server.ts";
 * const emu = await startGcsEmulator({ autoCreateBuckets: true });
 * const store = await GcsStore.open("my-bucket", "run", { apiEndpoint: emu.url });
 * const x = new TextEncoder().encode("x");
 * for (const name of ["metadata.json", "shard_0001.pkl.gz", "notes.txt"]) await store.writeSmall(name, x);
 * const { deleted, left } = await clearDataset(store);
 * console.log(deleted, left); // 2 ["notes.txt"]
 * await emu.close();
 * ```
 */
import type { GcsStore } from "./gcs.ts";
import { LEASE_NAME } from "./gcs_lease.ts";

/** Names (relative to a prefix) that a run of ours writes. */
const DATASET_OBJECT =
  /^(worker-\d{5}-of-\d{5}\/)?(metadata\.json|shard_\d+\.[A-Za-z0-9.]+|\.actshard-write-probe-[0-9a-f-]+|\.actshard-lease\.json)$/;

/** What {@link clearDataset} did. */
export interface ClearReport {
  deleted: number;
  /** Objects under the prefix that are not ours, left in place. */
  left: string[];
}

/** Delete the dataset objects under the store's prefix (metadata.json files first); see the module doc. */
export async function clearDataset(store: GcsStore): Promise<ClearReport> {
  const all = await store.list();
  const ours = all.filter((o) => DATASET_OBJECT.test(o.name) && o.name !== LEASE_NAME);
  const left = all.filter((o) => !DATASET_OBJECT.test(o.name)).map((o) => o.name);
  const metas = ours.filter((o) => o.name.endsWith("metadata.json"));
  // Merged root's metadata.json before the workers' ones, then the rest.
  metas.sort((a, b) => a.name.length - b.name.length);
  for (const o of metas) await store.delete(o.name, { ifGenerationMatch: o.generation });
  const rest = ours.filter((o) => !o.name.endsWith("metadata.json"));
  // Small batches in parallel: a prefix can hold thousands of shards.
  for (let i = 0; i < rest.length; i += 16) {
    await Promise.all(rest.slice(i, i + 16).map((o) => store.delete(o.name)));
  }
  return { deleted: metas.length + rest.length, left };
}
