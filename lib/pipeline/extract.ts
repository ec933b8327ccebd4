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
import type { ExtractConfig } from "./config.ts";
import { type DatasetMetadata, type ShardEntry, writeMetadataAtomic } from "../shard/metadata.ts";
import { ShardWriter } from "../shard/writer.ts";
import type { Backend } from "../types.ts";
import { createBackend } from "./backend_select.ts";
import { killPoint } from "./kill_point.ts";
import { checkFreeDisk, freeBytes } from "./disk.ts";
import { runBatches, type RunBatchesStats } from "./overlap.ts";
import { type PreparedRun, prepareRun, runSummaryLines } from "./prepare.ts";
import { formatSize, Progress, type ProgressOptions, shardLines } from "./progress.ts";
import { clearOutputDir, decideResume, type ResumeDecision } from "./resume.ts";
import type { UploadSession } from "./extract_upload.ts";

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
  if (decision.mode === "fresh" && config.upload_to_gcs && config.gcs_bucket && !config.overwrite) {
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
    // a safetensors shard is written twice over at its commit (body temp file, then the shard)
    inFlightBytes: config.format === "safetensors" ? config.shard_size_gb * GB : 0,
  });
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
  const start = run.first + decision.durablePrompts, end = run.first + run.items.length;
  // Tokens this process will compute (partner rows included): the ETA is by tokens, not prompts.
  const batchesLeft = run.plan.filter((b) => b.some((p) => p >= start && p < end));
  let uploads: UploadSession | null = null;
  let writer: ShardWriter | null = null;
  if (config.upload_to_gcs) {
    // Before the model loads: credentials, a write probe, the prefix's lease and dataset (one line if refused).
    // Loaded only when uploading: a local run never loads the GCS code.
    const { openUploader } = await import("./extract_upload.ts");
    uploads = await openUploader(config, run, () => writer!, hooks.gcsEndpoint, log);
  }
  const progress = new Progress({
    total: run.items.length,
    already: decision.durablePrompts,
    totalTokens: batchesLeft.reduce(
      (s, b) => s + b.reduce((t, p) => t + run.allItems[p].input_ids.length, 0),
      0,
    ),
    ...hooks.progress,
  });
  let bytes = 0, shards = 0;
  let loop: RunBatchesStats | null = null;
  // Ctrl-C / SIGTERM (a preempted pod): drop the open shard's temp file, say how to continue (committed shards
  // stay). The forward runs off the main thread (the onnx session is in a Worker), so this runs at once.
  const interrupted = onInterrupt(async (sig) => {
    progress.finish();
    await writer?.abort().catch(() => {});
    const durable = writer?.metadata.shards.length ?? decision.existing?.shards.length ?? 0;
    log(
      `extract: interrupted (${sig}): ${durable} shards durable in ${run.outDir}, the partial shard removed; ` +
        `rerun the same command to continue after them`,
    );
  });
  let backend: Backend | null = null;
  const tLoop = performance.now();
  try {
    progress.phase(`loading the model (${run.modelConfig.num_hidden_layers} layers) from ${run.modelDir}`);
    // A model that fails to load aborts the uploader opened above (the catch below).
    backend = hooks.backend ??
      await createBackend(config, run.modelDir, run.layers, log, (text) => progress.phase(text));
    if (config.verbose) log(`extract: backend ${backend.name}`);
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
        progress.update({ bytes, shards: ++shards });
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
    if (uploads && decision.existing) await uploads.resumePending(decision.existing.shards);
    let tokens = 0;
    const first = batchesLeft[0] ?? [];
    const firstTokens = first.reduce((t, p) => t + run.allItems[p].input_ids.length, 0);
    progress.phase(`first batch (${first.length} prompts, ${firstTokens} tokens)`);
    progress.startCompute();
    loop = await runBatches({
      items: run.allItems,
      plan: run.plan,
      start,
      end,
      skipRecords: decision.durableRecordsOfNext,
      backend,
      layers: run.layers,
      padId: run.padId,
      keepPadding: config.keep_padding,
      write: (group) => {
        uploads?.check(); // an upload that failed for good stops the run (durable shards kept, resumable)
        return writer!.write(group);
      },
      onForward: (f) => {
        tokens += f.tokens;
        progress.update({ tokens });
      },
      onWritten: (position) =>
        progress.update({ prompts: position - run.first + 1, bytes: bytes + writer!.openShardBytes }),
    });
    await writer.close();
    if (uploads) await uploads.finish();
    progress.finish();
  } catch (e) {
    // Interrupted: the signal handler cleans up and exits 130; errors it causes in the loop are not news.
    if (interrupted.active) await interrupted.exited;
    progress.finish();
    await writer?.abort().catch(() => {});
    await uploads?.abort().catch(() => {});
    throw e;
  } finally {
    interrupted.dispose();
    if (!hooks.backend) await backend?.close();
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
    tokens: loop!.tokens,
    layers: run.layers,
    wall_s: (performance.now() - t0) / 1000,
    loop_s: (performance.now() - tLoop) / 1000,
    forward_s: loop!.forwardSeconds,
    gcs_url: uploads?.url,
  };
  log(
    `extract: done: ${summary.records} records in ${summary.shards} shards (${formatSize(summary.bytes)}) ` +
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
    const { openUploader } = await import("./extract_upload.ts");
    let uploads: UploadSession | null = null;
    try {
      uploads = await openUploader(run.config, run, () => writer!, hooks.gcsEndpoint, log);
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

/**
 * Run `cleanup` on SIGINT/SIGTERM, then exit 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as a
 * shell reports a process killed by it. The kernel drops the output lock with the process; committed shards
 * and metadata.json are already durable.
 */
function onInterrupt(
  cleanup: (sig: string) => Promise<void>,
): { dispose(): void; readonly active: boolean; exited: Promise<never> } {
  const sigs = ["SIGINT", "SIGTERM"] as const;
  let active = false;
  const handlers = sigs.map((sig) => {
    const h = () => {
      if (active) return;
      active = true;
      cleanup(sig).finally(() => Deno.exit(sig === "SIGINT" ? 130 : 143));
    };
    try {
      Deno.addSignalListener(sig, h);
    } catch {
      return null; // signals unsupported here (Windows SIGTERM): the run is still resumable after a kill
    }
    return [sig, h] as const;
  });
  return {
    dispose() {
      for (const x of handlers) if (x) Deno.removeSignalListener(x[0], x[1]);
    },
    get active() {
      return active;
    },
    exited: new Promise<never>(() => {}),
  };
}
