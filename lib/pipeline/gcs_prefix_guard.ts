/**
 * One dataset per GCS prefix. Before a run writes under `gs://B/P` it looks at the metadata.json there: absent,
 * or the same run (same fingerprint: settings, model, data, prompts) → go on; another run → refused, naming the
 * settings that differ, unless the user asked to replace it (`--overwrite`), which clears that dataset first
 * (lib/storage/gcs_clear.ts). Used by `extract --upload_to_gcs` and `upload` as their uploader's `checkRemote`.
 *
 * @example
 * ```ts
 * import { prefixGuard } from "./gcs_prefix_guard.ts";
 * // ShardUploader.create({ ..., checkRemote: prefixGuard(meta.config, { overwrite: false, log: console.error }) });
 * ```
 */
import { ActshardError } from "../errors.ts";
import type { DatasetMetadata } from "../shard/metadata.ts";
import { clearDataset, type ClearReport } from "../storage/gcs_clear.ts";
import { GcsStore } from "../storage/gcs.ts";
import { PrefixLease } from "../storage/gcs_lease.ts";
import { describeDiffs, diffFingerprints } from "./fingerprint.ts";

/** How a run meets a prefix that holds a dataset. */
export interface PrefixGuardOptions {
  /** Replace another dataset found there (clears it first). */
  overwrite: boolean;
  log: (line: string) => void;
}

/** What differs between the dataset at the prefix and ours, or null when it is the same run. */
export function datasetDifference(
  current: Record<string, unknown> | undefined,
  remote: DatasetMetadata,
): string | null {
  const stored = remote.config as Record<string, unknown> | undefined;
  if (stored && current) {
    const diffs = diffFingerprints(stored, current);
    return diffs.length ? describeDiffs(diffs) : null;
  }
  if (!stored && !current) return null; // neither says what it is (old datasets): the shard checks decide
  return stored
    ? "ours has no run fingerprint, the remote one does"
    : "the remote one has no run fingerprint";
}

/** A `checkRemote` for ShardUploader: refuse (or, with overwrite, clear) another dataset at the prefix. */
export function prefixGuard(
  current: Record<string, unknown> | undefined,
  o: PrefixGuardOptions,
): (remote: DatasetMetadata | null, store: GcsStore) => Promise<void> {
  return async (remote, store) => {
    if (!remote) return;
    const diff = datasetDifference(current, remote);
    if (diff === null) return;
    if (!o.overwrite) {
      throw new ActshardError(`${store.url} holds another dataset (${diff})`, {
        where: store.url,
        kind: "input",
        hint:
          `use another --gcs_prefix, or replace it deliberately: rerun with --overwrite, or clear it with ` +
          `\`deno task upload --clear_prefix --gcs_bucket ${store.bucket} --gcs_prefix ${store.prefix}\``,
      });
    }
    const r = await clearDataset(store);
    o.log(
      `--overwrite: cleared the other dataset at ${store.url} (${r.deleted} objects; ${diff})` +
        (r.left.length ? `; left ${r.left.length} objects that are not ours` : ""),
    );
  };
}

/**
 * `upload --clear_prefix`: take the prefix's writer lease (a running writer is refused, named), delete its
 * dataset, release the lease.
 */
export async function clearPrefix(
  bucket: string,
  prefix: string,
  apiEndpoint?: string,
): Promise<ClearReport> {
  const store = await GcsStore.open(bucket, prefix, { apiEndpoint });
  const lease = await PrefixLease.acquire(store, { outputDir: "(upload --clear_prefix)" });
  try {
    return await clearDataset(store);
  } finally {
    await lease.release();
  }
}
