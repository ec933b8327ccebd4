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
 * const config = parseExtractFlags(["--model_path", "tiny", "--dataset_path", "tasks.json", "--n_tasks", "2"]);
 * if (!("help" in config)) console.log(await runExtract(config));
 * ```
 */
import { lockOutputDir } from "./lock.ts";
import type { ExtractConfig } from "../cli/extract_flags.ts";
import { ActshardError } from "../errors.ts";
import { type DatasetMetadata, type ShardEntry, writeMetadataAtomic } from "../shard/metadata.ts";
import { ShardWriter } from "../shard/writer.ts";
import type { Backend } from "../types.ts";
import { createBackend } from "./backend.ts";
import { killPoint } from "./kill_point.ts";
import { checkFreeDisk } from "./disk.ts";
import { runBatches, type RunBatchesStats } from "./overlap.ts";
import { type PreparedRun, prepareRun } from "./prepare.ts";
import { formatMB, Progress, type ProgressOptions, shardLines } from "./progress.ts";
import { clearOutputDir, decideResume, type ResumeDecision } from "./resume.ts";
import type { UploadSession } from "./upload.ts";

/** What a run did. */
export interface ExtractSummary {
  /** Where this worker's shards and metadata.json are. */
  output_dir: string;
  /** "complete" after a run; "already_complete" when the output was complete before it started. */
  status: "complete" | "already_complete";
  resumed: boolean;
  /** Where the resumed run's state came from: the local output dir, or GCS (the local dir held no run). */
  resumed_from?: "local" | "gcs";
  /** Prompts of this worker, and how many were durable before this run. */
  prompts: number;
  prompts_skipped: number;
  records: number;
  shards: number;
  /** Total bytes of the dataset's shard files. */
  bytes: number;
  /** Real tokens this run pushed through the model. */
  tokens: number;
  layers: number[];
  /** Seconds: the whole call, the forward/write loop, and time spent awaiting forwards. */
  wall_s: number;
  loop_s: number;
  forward_s: number;
  /** gs://bucket/prefix of the uploaded dataset, when uploading. */
  gcs_url?: string;
}

/** Knobs for tests and benchmarks (the CLI uses none). */
export interface ExtractHooks {
  /** Use this backend instead of creating one (it is not closed). */
  backend?: Backend;
  /** Progress display options (e.g. `{ tty: false, intervalMs: 0 }`). */
  progress?: Partial<ProgressOptions>;
  /** Where info lines go (default: stderr). */
  log?: (line: string) => void;
  /** GCS endpoint (the emulator) for uploads. */
  gcsEndpoint?: string;
}

const GB = 1024 ** 3;

/** Run the extract job described by `config`. */
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

async function extractLocked(
  config: ExtractConfig,
  hooks: ExtractHooks,
  run: PreparedRun,
  t0: number,
): Promise<ExtractSummary> {
  const log = hooks.log ?? ((l: string) => console.error(l));
  if (config.delete_local_after_upload && !config.upload_to_gcs) {
    // The seed ignored it silently; say so, since the user clearly expected the disk to be freed.
    log(
      "extract: note: --delete_local_after_upload does nothing without --upload_to_gcs; shards stay on disk",
    );
  }
  const sampleIdx = run.items.map((p) => p.sample_idx);
  let decision = await decideResume(run.outDir, run.fingerprint, {
    overwrite: config.overwrite,
    sampleIdx,
    layers: run.layers.length,
  });
  // A replacement pod starts with an empty local dir: the previous attempt's state is what it published on GCS.
  let fromGcs = false;
  if (decision.mode === "fresh" && config.upload_to_gcs && config.gcs_bucket) {
    const { decideRemoteResume } = await import("./remote_resume.ts");
    const remote = await decideRemoteResume({
      bucket: config.gcs_bucket,
      prefix: gcsPrefixFor(config, run),
      fingerprint: run.fingerprint,
      sampleIdx,
      layers: run.layers.length,
      apiEndpoint: hooks.gcsEndpoint,
    });
    if (remote) {
      decision = remote.decision;
      fromGcs = true;
      log(
        `extract: no run in ${run.outDir}; ${remote.url} holds one (${remote.decision.existing!.status}, ` +
          `${remote.listed} shards listed): continuing after its ${remote.kept} verified leading shards`,
      );
    }
  }
  const remaining = run.items.length - decision.durablePrompts;
  const needBytes = remaining === 0 ? 0 : run.estimateBytes * (remaining / Math.max(1, run.items.length));
  const leaving = config.upload_to_gcs && config.delete_local_after_upload;
  const disk = await checkFreeDisk(run.outDir, {
    // Shards that leave the disk as they are uploaded only need room for a few in flight.
    needBytes: leaving ? Math.min(needBytes, 4 * config.shard_size_gb * GB) : needBytes,
    // a safetensors shard is written twice over at its commit (body temp file, then the shard)
    inFlightBytes: config.format === "safetensors" ? config.shard_size_gb * GB : 0,
  });
  log(
    `extract: ${run.items.length} prompts (${run.totalPrompts} in the run), layers ${
      fmtLayers(run.layers)
    }, ` +
      `~${
        formatMB(run.estimateBytes)
      } of ${config.format}/${config.codec}/${config.dtype} to ${run.outDir} ` +
      `(${(disk.freeBytes / 1e9).toFixed(1)} GB free)`,
  );
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
  if (decision.mode === "overwrite") {
    const n = await clearOutputDir(run.outDir);
    log(`extract: --overwrite: removed ${n} files of the previous run`);
  }
  if (decision.mode === "complete") {
    if (fromGcs) {
      // Nothing to extract or upload; the local dir gets the dataset's metadata (its shards live on GCS).
      await Deno.mkdir(run.outDir, { recursive: true });
      await writeMetadataAtomic(run.outDir, decision.existing!);
    }
    return await finishComplete(run, decision, hooks, t0, log, fromGcs);
  }

  await Deno.mkdir(run.outDir, { recursive: true });
  const backend = hooks.backend ?? await createBackend(config, run.modelDir, run.layers, log);
  if (config.verbose) log(`extract: backend ${backend.name}`);
  const progress = new Progress({
    total: run.items.length,
    already: decision.durablePrompts,
    ...hooks.progress,
  });
  let uploads: UploadSession | null = null;
  let writer: ShardWriter | null = null;
  let bytes = 0;
  let loop: RunBatchesStats | null = null;
  const tLoop = performance.now();
  try {
    if (config.upload_to_gcs) {
      // Loaded only when uploading: a local run never loads the GCS client.
      const { openUploader } = await import("./upload.ts");
      uploads = await openUploader(
        config,
        run,
        () => writer!,
        hooks.gcsEndpoint,
        log,
      );
    }
    writer = await ShardWriter.open({
      dir: run.outDir,
      format: config.format,
      codec: config.codec,
      dtype: config.dtype,
      shardSizeBytes: Math.max(1, Math.round(config.shard_size_gb * GB)),
      base: baseMetadata(run),
      existing: decision.existing ?? undefined,
      onShardCommitted: async (entry: ShardEntry) => {
        killPoint("committed", entry.shard_id);
        bytes += entry.bytes;
        progress.update({ bytes });
        if (config.verbose) {
          for (
            const line of shardLines({
              ...entry,
              buffer_bytes: entry.buffer_size_mb * 1024 * 1024,
              file_bytes: entry.bytes,
            })
          ) {
            progress.log(line);
          }
        }
        await uploads?.enqueue(entry);
      },
    });
    // The fingerprint goes on disk before the first shard, so a run killed at any moment is recognised; after
    // a resume from GCS, so do the remote shards it continues after (listed, their files only on GCS).
    if (!decision.existing || fromGcs) await writeMetadataAtomic(run.outDir, writer.metadata);
    if (uploads && decision.existing) uploads.resumePending(decision.existing.shards);
    let tokens = 0;
    loop = await runBatches({
      items: run.allItems,
      plan: run.plan,
      start: run.first + decision.durablePrompts,
      end: run.first + run.items.length,
      skipRecords: decision.durableRecordsOfNext,
      backend,
      layers: run.layers,
      padId: run.padId,
      keepPadding: config.keep_padding,
      write: (group) => writer!.write(group),
      onForward: (f) => {
        tokens += f.tokens;
        progress.update({ tokens });
      },
      onWritten: (position) => progress.update({ prompts: position - run.first + 1 }),
    });
    await writer.close();
    if (uploads) await uploads.finish();
    progress.finish();
  } catch (e) {
    progress.finish();
    await writer?.abort().catch(() => {});
    await uploads?.abort().catch(() => {});
    throw e;
  } finally {
    if (!hooks.backend) await backend.close();
  }
  const meta = writer.metadata;
  const summary: ExtractSummary = {
    output_dir: run.outDir,
    status: "complete",
    resumed: decision.mode === "resume",
    resumed_from: decision.mode === "resume" ? (fromGcs ? "gcs" : "local") : undefined,
    prompts: run.items.length,
    prompts_skipped: decision.durablePrompts,
    records: meta.total_samples,
    shards: meta.total_shards,
    bytes: meta.shards.reduce((s, e) => s + (e.bytes ?? 0), 0),
    tokens: loop.tokens,
    layers: run.layers,
    wall_s: (performance.now() - t0) / 1000,
    loop_s: (performance.now() - tLoop) / 1000,
    forward_s: loop.forwardSeconds,
    gcs_url: uploads?.url,
  };
  log(
    `extract: done: ${summary.records} records in ${summary.shards} shards (${formatMB(summary.bytes)}) ` +
      `at ${run.outDir}${summary.gcs_url ? ` and ${summary.gcs_url}` : ""}, ${summary.wall_s.toFixed(1)}s`,
  );
  return summary;
}

/** The output was complete already: finish pending uploads (if asked) and report. */
async function finishComplete(
  run: PreparedRun,
  decision: ResumeDecision,
  hooks: ExtractHooks,
  t0: number,
  log: (l: string) => void,
  fromGcs = false,
): Promise<ExtractSummary> {
  const meta = decision.existing!;
  let gcsUrl: string | undefined;
  if (run.config.upload_to_gcs && meta.shards.some((s) => !s.gcs_verified)) {
    let writer: ShardWriter | null = null;
    writer = await ShardWriter.open({
      dir: run.outDir,
      format: run.config.format,
      codec: run.config.codec,
      dtype: run.config.dtype,
      shardSizeBytes: Math.max(1, Math.round(run.config.shard_size_gb * GB)),
      base: baseMetadata(run),
      existing: meta,
    });
    const { openUploader } = await import("./upload.ts");
    const uploads = await openUploader(run.config, run, () => writer!, hooks.gcsEndpoint, log);
    uploads.resumePending(meta.shards);
    // Closed first: close() marks the metadata complete again (open() made it in_progress), and the
    // metadata.json that finish() publishes must say so once every shard is verified.
    await writer.close();
    await uploads.finish();
    gcsUrl = uploads.url;
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
    records: meta.total_samples,
    shards: meta.total_shards,
    bytes: meta.shards.reduce((s, e) => s + (e.bytes ?? 0), 0),
    tokens: 0,
    layers: run.layers,
    wall_s: (performance.now() - t0) / 1000,
    loop_s: 0,
    forward_s: 0,
    gcs_url: gcsUrl,
  };
}

/** The seed's top-level fields plus our fingerprint. */
function baseMetadata(run: PreparedRun): Partial<DatasetMetadata> {
  const c = run.config;
  return {
    shard_size_gb: c.shard_size_gb,
    upload_to_gcs: c.upload_to_gcs,
    gcs_bucket: c.gcs_bucket,
    gcs_prefix: c.upload_to_gcs ? gcsPrefixFor(c, run) : c.gcs_prefix,
    config: run.fingerprint as unknown as Record<string, unknown>,
  };
}

/** `PREFIX` or `PREFIX/worker-IIIII-of-NNNNN`. */
export function gcsPrefixFor(c: ExtractConfig, run: Pick<PreparedRun, "workerDir">): string {
  const p = c.gcs_prefix.replace(/^\/+|\/+$/g, "");
  return run.workerDir ? (p ? `${p}/${run.workerDir}` : run.workerDir) : p;
}

function gcsUrlFor(c: ExtractConfig, run: Pick<PreparedRun, "workerDir">): string {
  return `gs://${c.gcs_bucket}/${gcsPrefixFor(c, run)}`;
}

function fmtLayers(layers: number[]): string {
  const contiguous = layers.every((l, i) => i === 0 || l === layers[i - 1] + 1);
  return contiguous && layers.length > 2 ? `${layers[0]}-${layers[layers.length - 1]}` : layers.join(",");
}

/** Thrown for internal inconsistencies the user cannot fix. */
export function internal(msg: string): ActshardError {
  return new ActshardError(msg, { kind: "internal" });
}
