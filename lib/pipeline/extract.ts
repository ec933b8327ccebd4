/**
 * `deno task extract`: the main job. prompts → token batches → forward → records → shard writer (→ GCS),
 * with forwards overlapped with encoding/compression/writing/uploading, live progress, a free-disk check up
 * front, and crash-safe resume (rerun the same command after a kill and it continues after the last durable
 * shard; the final records equal an uninterrupted run's). See docs/extract.md.
 *
 * @example
 * ```ts
 * import { runExtract } from "./extract.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 });
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags(["--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`,
 *   "--output_dir", `${dir}/acts`, "--layers_to_extract", "0", "1", "--predictions_per_task", "1"]);
 * if (!("help" in config)) console.log((await runExtract(config, { log: () => {} })).status); // "complete"
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { lockOutputDir } from "./lock.ts";
import { type ExtractConfig, gcsPrefixFor, gcsUrlFor } from "./config.ts";
import { type DatasetMetadata, type ShardEntry, writeMetadataAtomic } from "../shard/metadata.ts";
import { ShardWriter } from "../shard/writer.ts";
import { shardFormat } from "../shard/formats/mod.ts";
import type { Backend } from "../types.ts";
import { checkFreeDisk, freeBytes } from "./disk.ts";
import { type PreparedRun, prepareRun, runSummaryLines } from "./prepare.ts";
import type { ProgressOptions } from "./progress.ts";
import { clearOutputDir, decideResume, type ResumeDecision } from "./resume.ts";
import type { UploadSession } from "./extract_upload.ts";
import {
  datasetTotals,
  extractRemaining,
  finishRun,
  openRun,
  openUploads,
  writerOptions,
} from "./extract_loop.ts";

/** What a run did. */
export interface ExtractSummary {
  /** Where this worker's shards and metadata.json are. */
  output_dir: string;
  /** "complete" after a run; "already_complete" when the output was complete before it started. */
  status: "complete" | "already_complete";
  /** True when the run continued an earlier one. */
  resumed: boolean;
  /** Where the resumed run's state came from: the local output dir, or GCS (the local dir held no run). */
  resumed_from?: "local" | "gcs";
  /** Prompts of this worker, and how many were durable before this run. */
  prompts: number;
  /** Prompts already durable, not recomputed. */
  prompts_skipped: number;
  /** Records in the dataset (prompts × layers). */
  records: number;
  /** Shards in the dataset. */
  shards: number;
  /** Total bytes of the dataset's shard files. */
  bytes: number;
  /** Real tokens this run pushed through the model. */
  tokens: number;
  /** The layers extracted. */
  layers: number[];
  /** Seconds: the whole call, the forward/write loop, and time spent awaiting forwards. */
  wall_s: number;
  /** Seconds in the forward/write loop. */
  loop_s: number;
  /** Seconds awaiting forwards. */
  forward_s: number;
  /** gs://bucket/prefix of the uploaded dataset, when uploading. */
  gcs_url?: string;
}

/**
 * Knobs for tests and benchmarks, and observers of a run's durable points (the CLI wires its crash-test kill
 * points to them: lib/pipeline/kill_point.ts; library code carries no test hook).
 */
export interface ExtractHooks {
  /** Use this backend instead of creating one (it is not closed). */
  backend?: Backend;
  /** Progress display options (e.g. `{ tty: false, intervalMs: 0 }`). */
  progress?: Partial<ProgressOptions>;
  /** Where info lines go (default: stderr). */
  log?: (line: string) => void;
  /** GCS endpoint (the emulator) for uploads. */
  gcsEndpoint?: string;
  /**
   * Hears each shard this run commits once it is durable (fsynced, renamed into place, listed in
   * metadata.json), before progress or the uploader hear of it. Synchronous: it must not hold up the commit.
   */
  onShardCommitted?: (entry: ShardEntry) => void;
  /**
   * Hears each shard once its GCS object's size and CRC-32C are confirmed and recorded in the local
   * metadata.json, before the GCS metadata.json lists it. Synchronous, like {@link onShardCommitted}.
   */
  onShardVerified?: (entry: ShardEntry) => void;
}

const GB = 1024 ** 3;

/**
 * Run the extract job described by `config`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { runExtract } from "./extract.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 });
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags(["--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`,
 *   "--output_dir", `${dir}/acts`, "--layers_to_extract", "0", "1", "--predictions_per_task", "1"]);
 * assert(!("help" in config));
 * const summary = await runExtract(config, { log: () => {}, progress: { write: () => {} } });
 * assert(summary.status === "complete" && summary.records === 2 * summary.prompts);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function runExtract(config: ExtractConfig, hooks: ExtractHooks = {}): Promise<ExtractSummary> {
  const t0 = performance.now();
  const run = await prepareRun(config);
  // Everything below reads or writes the output dir: one process at a time.
  const lock = await lockOutputDir(run.outDir);
  try {
    return await extractLocked(config, hooks, run, t0);
  } finally {
    lock.release();
  }
}

/**
 * The job under the output dir's lock, in the order of docs/extract.md's "What a run does": decide (resume
 * state, local or GCS) → check (summary, free disk) → either finish an already complete output, or open the
 * run (output dir, upload session, progress) → loop (backend → batches → shard writer → uploads) → summary.
 */
async function extractLocked(
  config: ExtractConfig,
  hooks: ExtractHooks,
  run: PreparedRun,
  t0: number,
): Promise<ExtractSummary> {
  const log = hooks.log ?? ((l: string) => console.error(l));
  noteIgnoredFlags(config, log);
  const { decision, fromGcs } = await resumeState(config, hooks, run, log);
  await summarizeAndCheckDisk(config, run, decision, log);
  logPartnersAndResume(run, decision, fromGcs, log);
  if (decision.mode === "overwrite") {
    const n = await clearOutputDir(run.outDir);
    log(`extract: --overwrite: removed ${n} files of the previous run`);
  }
  if (decision.mode === "complete") return await finishComplete(run, decision, hooks, t0, log, fromGcs);
  const state = await openRun(config, hooks, run, decision, fromGcs, log);
  const tLoop = performance.now();
  const loop = await extractRemaining(state);
  return finishRun(state, loop, t0, tLoop);
}

/** Say so when a flag does nothing (the seed ignored it silently; the user clearly expected the disk freed). */
function noteIgnoredFlags(config: ExtractConfig, log: (l: string) => void): void {
  if (config.delete_local_after_upload && !config.upload_to_gcs) {
    log(
      "extract: note: --delete_local_after_upload does nothing without --upload_to_gcs; shards stay on disk",
    );
  }
}

/** Fresh, resume, complete or overwrite: from the local output dir, else (uploading) from the GCS prefix. */
async function resumeState(
  config: ExtractConfig,
  hooks: ExtractHooks,
  run: PreparedRun,
  log: (l: string) => void,
): Promise<{ decision: ResumeDecision; fromGcs: boolean }> {
  const sampleIdx = run.items.map((p) => p.sample_idx);
  const decision = await decideResume(run.outDir, run.fingerprint, {
    overwrite: config.overwrite,
    sampleIdx,
    layers: run.layers.length,
  });
  // A replacement pod starts with an empty local dir: the previous attempt's state is what it published on GCS.
  if (decision.mode !== "fresh" || !config.upload_to_gcs || !config.gcs_bucket || config.overwrite) {
    return { decision, fromGcs: false };
  }
  const { decideRemoteResume } = await import("./remote_resume.ts");
  const remote = await decideRemoteResume({
    bucket: config.gcs_bucket,
    prefix: gcsPrefixFor(config, run),
    fingerprint: run.fingerprint,
    sampleIdx,
    layers: run.layers.length,
    apiEndpoint: hooks.gcsEndpoint,
  });
  if (!remote) return { decision, fromGcs: false };
  log(
    `extract: no run in ${run.outDir}; ${remote.url} holds one (${remote.decision.existing!.status}, ` +
      `${remote.listed} shards listed): continuing after its ${remote.kept} verified leading shards`,
  );
  return { decision: remote.decision, fromGcs: true };
}

/** Print the run's summary, then refuse it (one line) when the disk cannot hold what is left to write. */
async function summarizeAndCheckDisk(
  config: ExtractConfig,
  run: PreparedRun,
  decision: ResumeDecision,
  log: (l: string) => void,
): Promise<void> {
  const remaining = run.items.length - decision.durablePrompts;
  const needBytes = remaining === 0 ? 0 : run.estimateBytes * (remaining / Math.max(1, run.items.length));
  const leaving = config.upload_to_gcs && config.delete_local_after_upload;
  // Shards that leave the disk as they are uploaded only need room for a few in flight.
  const diskNeed = leaving ? Math.min(needBytes, 4 * config.shard_size_gb * GB) : needBytes;
  const free = await freeBytes(run.outDir);
  // The summary first: a run refused for disk space still shows what it would have been.
  for (const line of runSummaryLines(run, { needBytes: diskNeed, freeBytes: free, ok: true }, remaining)) {
    log(`extract: ${line}`);
  }
  await checkFreeDisk(run.outDir, {
    needBytes: diskNeed,
    freeBytes: free,
    // a format that stages a shard (safetensors: body temp file, then the shard) holds it twice at its commit
    inFlightBytes: shardFormat(config.format).scratchShards * config.shard_size_gb * GB,
  });
}

/** The cost of batches shared with neighbouring workers, and where a resumed run continues. */
function logPartnersAndResume(
  run: PreparedRun,
  decision: ResumeDecision,
  fromGcs: boolean,
  log: (l: string) => void,
): void {
  if (run.partners.batches > 0) {
    // The whole run's batching (records bit-identical to a single host's) costs the boundary batches' partners.
    const own = run.items.reduce((s, p) => s + p.input_ids.length, 0);
    const pct = (100 * run.partners.tokens / Math.max(1, own)).toFixed(1);
    log(
      `extract: ${run.partners.batches} batches shared with neighbouring workers: +${run.partners.prompts} ` +
        `partner prompts, +${run.partners.tokens} tokens (${pct}% of this worker's ${own})`,
    );
  }
  if (decision.mode === "resume") {
    log(
      `extract: resuming: ${decision.durablePrompts}/${run.items.length} prompts already durable ` +
        `in ${decision.existing!.shards.length} shards${fromGcs ? " on GCS" : ""}`,
    );
  }
}

/**
 * The output was complete already: a dataset found on GCS gets its metadata.json in the local dir (its shards
 * live on GCS); pending uploads are finished (if asked); then the report.
 */
async function finishComplete(
  run: PreparedRun,
  decision: ResumeDecision,
  hooks: ExtractHooks,
  t0: number,
  log: (l: string) => void,
  fromGcs = false,
): Promise<ExtractSummary> {
  const meta = decision.existing!;
  if (fromGcs) {
    // Nothing to extract or upload; the local dir gets the dataset's metadata (its shards live on GCS).
    await Deno.mkdir(run.outDir, { recursive: true });
    await writeMetadataAtomic(run.outDir, meta);
  }
  let gcsUrl: string | undefined;
  if (run.config.upload_to_gcs && meta.shards.some((s) => !s.gcs_verified)) {
    gcsUrl = await finishPendingUploads(run, meta, hooks, log);
  } else {
    const where = fromGcs ? gcsUrlFor(run.config, run) : run.outDir;
    log(`extract: ${where} is already complete (${meta.total_shards} shards); nothing to do`);
    if (fromGcs) gcsUrl = where;
  }
  return {
    output_dir: run.outDir,
    status: "already_complete",
    resumed: false,
    prompts: run.items.length,
    prompts_skipped: run.items.length,
    ...datasetTotals(meta),
    tokens: 0,
    layers: run.layers,
    wall_s: (performance.now() - t0) / 1000,
    loop_s: 0,
    forward_s: 0,
    gcs_url: gcsUrl,
  };
}

/** Upload a complete local dataset's unverified shards and publish its metadata.json; returns its gs:// URL. */
async function finishPendingUploads(
  run: PreparedRun,
  meta: DatasetMetadata,
  hooks: ExtractHooks,
  log: (l: string) => void,
): Promise<string> {
  const writer = await ShardWriter.open(writerOptions(run, meta));
  let uploads: UploadSession | null = null;
  try {
    uploads = await openUploads(run, () => writer, hooks, log);
    await uploads.resumePending(meta.shards);
  } catch (e) {
    await writer.close(); // nothing was added: the local dataset stays complete, as it was
    await uploads?.abort();
    throw e;
  }
  // Closed first: close() marks the metadata complete again (open() made it in_progress), and the
  // metadata.json that finish() publishes must say so once every shard is verified.
  await writer.close();
  await uploads.finish();
  return uploads.url;
}
