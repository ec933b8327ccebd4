/**
 * Resume from GCS: a preempted pod's replacement starts with an empty local output dir (an `emptyDir`), but
 * with `--upload_to_gcs` the previous attempt's verified shards are durable in `gs://BUCKET/PREFIX[/worker-…]/`,
 * listed by the metadata.json published there. When the local dir holds no run, that remote metadata decides:
 *
 * - absent: a fresh run;
 * - a different config: refused, as a local mismatch is (nothing is touched, here or there);
 * - `in_progress`: resume after the remote shards — only the leading ones, shard 1..k without a gap (uploads
 *   run two at a time, so shard k+2 can be verified before k+1; a shard after a gap is recomputed, and its
 *   upload then finds the identical object already there and accepts it without sending it);
 * - `complete`: nothing to extract.
 *
 * Remote shards are not downloaded: the writer lists them (with `gcs_verified`) and numbers its shards after
 * them, and the local metadata.json lists them too, as it does with `--delete_local_after_upload`.
 *
 * @example
 * ```ts
 * import { decideRemoteResume } from "./remote_resume.ts";
 * import { prepareRun } from "./prepare.ts";
 * import { startGcsEmulator } from "../storage/gcs_emulator/server.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import type { ExtractConfig } from "../pipeline/config.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 }); // the real vocab: prompts use all of it
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags([
 *   "--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`, "--output_dir", `${dir}/out`,
 *   "--layers_to_extract", "0", "1", "--predictions_per_task", "1",
 * ]) as ExtractConfig;
 * const { fingerprint, items } = await prepareRun(config);
 * const emu = await startGcsEmulator({ autoCreateBuckets: true }); // stands in for GCS
 * const r = await decideRemoteResume({
 *   bucket: "my-bucket", prefix: "acts/worker-00003-of-00016", fingerprint,
 *   sampleIdx: items.map((p) => p.sample_idx), layers: 2, apiEndpoint: emu.url,
 * });
 * if (r) console.log(`${r.url}: ${r.decision.mode} after ${r.decision.durablePrompts} prompts`);
 * else console.log("nothing under the prefix: a fresh start");
 * await emu.close();
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { type DatasetMetadata, METADATA_NAME, readMetadata } from "../shard/metadata.ts";
import { GcsStore } from "../storage/gcs.ts";
import type { RunFingerprint } from "./fingerprint.ts";
import { decideFromMetadata, type ResumeDecision } from "./resume.ts";

/** Where the remote state is and what it means for this run. */
export interface RemoteResume {
  /** gs://bucket/prefix */
  url: string;
  decision: ResumeDecision;
  /** Shards the remote metadata.json lists, and how many of them (a gap-free prefix) the run keeps. */
  listed: number;
  kept: number;
}

/** Options for {@link decideRemoteResume}. */
export interface RemoteResumeOptions {
  bucket: string;
  /** The worker's prefix (`PREFIX` or `PREFIX/worker-IIIII-of-NNNNN`). */
  prefix: string;
  fingerprint: RunFingerprint;
  /** This worker's prompt list (ascending sample_idx) and records per prompt. */
  sampleIdx: readonly number[];
  layers: number;
  /** GCS endpoint (the emulator); default: STORAGE_EMULATOR_HOST or Google. */
  apiEndpoint?: string;
}

/** The remote state's decision, or null when the prefix holds no metadata.json. Reads only. */
export async function decideRemoteResume(o: RemoteResumeOptions): Promise<RemoteResume | null> {
  const store = await GcsStore.open(o.bucket, o.prefix, { apiEndpoint: o.apiEndpoint });
  if (!(await store.stat(METADATA_NAME))) return null;
  const remote = await readMetadata(store);
  const kept = durablePrefix(remote);
  const decision = decideFromMetadata(kept, o.fingerprint, o, {
    what: "GCS prefix",
    where: store.url,
    hint: "use another --gcs_prefix or the same settings; --overwrite replaces that dataset, and " +
      `\`deno task upload --clear_prefix --gcs_bucket ${o.bucket} --gcs_prefix ${o.prefix}\` clears it`,
  });
  return { url: store.url, decision, listed: remote.shards.length, kept: kept.shards.length };
}

/**
 * The remote metadata cut to its gap-free, verified leading shards (1..k), totals recomputed. A `complete`
 * metadata is kept whole (it is published only after every upload was verified).
 */
export function durablePrefix(remote: DatasetMetadata): DatasetMetadata {
  const sorted = [...remote.shards].sort((a, b) => a.shard_id - b.shard_id);
  let k = 0;
  while (k < sorted.length && sorted[k].shard_id === k + 1 && sorted[k].gcs_verified === true) k++;
  if (remote.status === "complete" && k === sorted.length) return { ...remote, shards: sorted };
  const shards = sorted.slice(0, k);
  return {
    ...remote,
    status: "in_progress",
    shards,
    total_shards: shards.length,
    total_samples: shards.reduce((s, e) => s + (e.n_records ?? e.total_samples_in_shard), 0),
  };
}
