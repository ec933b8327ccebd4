/**
 * The extract job's open run, once its decisions are made (lib/pipeline/extract.ts): the output dir, the GCS
 * upload session and the progress line → the backend → the shard writer (continuing after the durable shards)
 * → the batch loop (forwards overlapped with writing, lib/pipeline/overlap.ts) → last shard committed, uploads
 * drained → the summary. Ctrl-C/SIGTERM drops the open shard and says how to continue.
 *
 * @example
 * ```ts
 * import { extractRemaining, finishRun, openRun } from "./extract_loop.ts";
 * import { prepareRun } from "./prepare.ts";
 * import { decideResume } from "./resume.ts";
 * import { parseExtractFlags } from "../cli/extract_flags.ts";
 * import type { ExtractConfig } from "./config.ts";
 * import { syntheticArcTasks } from "../arc/synthetic.ts";
 * import { writeTinyModel } from "../model/tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 });
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags([
 *   ...["--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`, "--output_dir", `${dir}/out`],
 *   ...["--layers_to_extract", "0", "1", "--predictions_per_task", "1"],
 * ]) as ExtractConfig;
 * const run = await prepareRun(config);
 * const sampleIdx = run.items.map((p) => p.sample_idx);
 * const decision = await decideResume(run.outDir, run.fingerprint, {
 *   overwrite: false,
 *   sampleIdx,
 *   layers: run.layers.length,
 * });
 * const t0 = performance.now();
 * const r = await openRun(run.config, { progress: { write: () => {} } }, run, decision, false, () => {});
 * console.log(finishRun(r, await extractRemaining(r), t0, t0).status); // complete
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import type { ExtractConfig } from "./config.ts";
import { gcsPrefixFor } from "./config.ts";
import type { ExtractHooks, ExtractSummary } from "./extract.ts";
import { type DatasetMetadata, type ShardEntry, writeMetadataAtomic } from "../shard/metadata.ts";
import { ShardWriter, type ShardWriterOptions } from "../shard/writer.ts";
import type { Backend } from "../types.ts";
import { createBackend } from "./backend_select.ts";
import { runBatches, type RunBatchesStats } from "./overlap.ts";
import type { PreparedRun } from "./prepare.ts";
import { formatSize, Progress, shardLines } from "./progress.ts";
import type { ResumeDecision } from "./resume.ts";
import type { UploadSession } from "./extract_upload.ts";

const GB = 1024 ** 3;

/** One open run's parts, shared by its steps: built by {@link openRun}, the writer set once the model loaded. */
export interface OpenRun {
  config: ExtractConfig;
  hooks: ExtractHooks;
  run: PreparedRun;
  decision: ResumeDecision;
  fromGcs: boolean;
  log: (line: string) => void;
  /** Positions in `run.allItems` this run still writes: `[start, end)`. */
  start: number;
  end: number;
  /** The batches holding at least one of them (partner rows included). */
  batchesLeft: number[][];
  uploads: UploadSession | null;
  /** Opened after the model loads (null before). */
  writer: ShardWriter | null;
  progress: Progress;
  /** Bytes and shards this run committed. */
  bytes: number;
  shards: number;
}

/** The output dir, the upload session (before the model loads: refusals come first) and the progress line. */
export async function openRun(
  config: ExtractConfig,
  hooks: ExtractHooks,
  run: PreparedRun,
  decision: ResumeDecision,
  fromGcs: boolean,
  log: (l: string) => void,
): Promise<OpenRun> {
  await Deno.mkdir(run.outDir, { recursive: true });
  const start = run.first + decision.durablePrompts, end = run.first + run.items.length;
  const batchesLeft = run.plan.filter((b) => b.some((p) => p >= start && p < end));
  // The uploader records verified uploads through the writer, which exists once the model has loaded.
  let opened: OpenRun | null = null;
  // Credentials, a write probe, the prefix's lease and dataset (one line if refused), before the model loads.
  const uploads = config.upload_to_gcs ? await openUploads(run, () => opened!.writer!, hooks, log) : null;
  opened = {
    config,
    hooks,
    run,
    decision,
    fromGcs,
    log,
    start,
    end,
    batchesLeft,
    uploads,
    writer: null,
    progress: new Progress({
      total: run.items.length,
      already: decision.durablePrompts,
      // Tokens this process will compute (partner rows included): the ETA is by tokens, not prompts.
      totalTokens: batchesLeft.reduce((s, b) => s + batchTokens(run, b), 0),
      ...hooks.progress,
    }),
    bytes: 0,
    shards: 0,
  };
  return opened;
}

/**
 * The run's GCS upload session; loaded only when uploading (a local run never loads the GCS code). Verified
 * uploads are recorded through `writer` and reported to the `onShardVerified` observer.
 */
export async function openUploads(
  run: PreparedRun,
  writer: () => ShardWriter,
  hooks: ExtractHooks,
  log: (l: string) => void,
): Promise<UploadSession> {
  const { openUploader } = await import("./extract_upload.ts");
  return await openUploader(run.config, run, writer, hooks.gcsEndpoint, log, hooks.onShardVerified);
}

/**
 * Load the backend, open the shard writer, run the batch loop and finish (last shard committed, uploads
 * drained); on failure the open shard and the uploads are dropped (committed shards stay), on Ctrl-C too.
 */
export async function extractRemaining(r: OpenRun): Promise<RunBatchesStats> {
  // Ctrl-C / SIGTERM (a preempted pod): the forward runs off the main thread (the onnx session is in a
  // Worker), so this runs at once.
  const interrupted = onInterrupt((sig) => cleanUpInterrupted(r, sig));
  let backend: Backend | null = null;
  try {
    r.progress.phase(
      `loading the model (${r.run.modelConfig.num_hidden_layers} layers) from ${r.run.modelDir}`,
    );
    // A model that fails to load aborts the uploader opened before (the catch below).
    backend = r.hooks.backend ??
      await createBackend(r.config, r.run.modelDir, r.run.layers, r.log, (text) => r.progress.phase(text));
    if (r.config.verbose) r.log(`extract: backend ${backend.name}`);
    const writer = await openShardWriter(r);
    const loop = await runBatchLoop(r, backend, writer);
    await writer.close();
    if (r.uploads) await r.uploads.finish();
    r.progress.finish();
    return loop;
  } catch (e) {
    // Interrupted: the signal handler cleans up and exits 130; errors it causes in the loop are not news.
    if (interrupted.active) await interrupted.exited;
    r.progress.finish();
    await r.writer?.abort().catch(() => {});
    await r.uploads?.abort().catch(() => {});
    throw e;
  } finally {
    interrupted.dispose();
    if (!r.hooks.backend) await backend?.close();
  }
}

/** Drop the open shard's temp file and say how to continue (committed shards stay). */
async function cleanUpInterrupted(r: OpenRun, sig: string): Promise<void> {
  r.progress.finish();
  await r.writer?.abort().catch(() => {});
  const durable = r.writer?.metadata.shards.length ?? r.decision.existing?.shards.length ?? 0;
  r.log(
    `extract: interrupted (${sig}): ${durable} shards durable in ${r.run.outDir}, the partial shard removed; ` +
      `rerun the same command to continue after them`,
  );
}

/**
 * Open the shard writer (`r.writer`, at once: a failure below must abort it, and uploads record through it),
 * continuing after the durable shards; the fingerprint goes on disk before the first shard, and committed
 * shards not yet verified on GCS are queued for upload again.
 */
async function openShardWriter(r: OpenRun): Promise<ShardWriter> {
  const { decision } = r;
  const writer = r.writer = await ShardWriter.open({
    ...writerOptions(r.run, decision.existing ?? undefined),
    onShardCommitted: (entry) => shardCommitted(r, entry),
  });
  // A run killed at any moment is recognised; after a resume from GCS, so do the remote shards it continues
  // after (listed, their files only on GCS).
  if (!decision.existing || r.fromGcs) await writeMetadataAtomic(r.run.outDir, writer.metadata);
  if (r.uploads && decision.existing) await r.uploads.resumePending(decision.existing.shards);
  return writer;
}

/** A shard is durable: observers first, then the progress line, `--verbose`'s shard block, the upload queue. */
async function shardCommitted(r: OpenRun, entry: ShardEntry): Promise<void> {
  r.hooks.onShardCommitted?.(entry);
  r.bytes += entry.bytes;
  r.progress.update({ bytes: r.bytes, shards: ++r.shards });
  if (r.config.verbose) {
    const block = shardLines({
      ...entry,
      buffer_bytes: entry.buffer_size_mb * 1024 * 1024,
      file_bytes: entry.bytes,
    });
    for (const line of block) r.progress.log(line);
  }
  await r.uploads?.enqueue(entry);
}

/** Forward every batch still to do, overlapped with writing its records, feeding the progress line. */
async function runBatchLoop(r: OpenRun, backend: Backend, writer: ShardWriter): Promise<RunBatchesStats> {
  const { run, progress } = r;
  let tokens = 0;
  const first = r.batchesLeft[0] ?? [];
  progress.phase(`first batch (${first.length} prompts, ${batchTokens(run, first)} tokens)`);
  progress.startCompute();
  return await runBatches({
    items: run.allItems,
    plan: run.plan,
    start: r.start,
    end: r.end,
    skipRecords: r.decision.durableRecordsOfNext,
    backend,
    layers: run.layers,
    padId: run.padId,
    keepPadding: r.config.keep_padding,
    write: (group) => {
      r.uploads?.check(); // an upload that failed for good stops the run (durable shards kept, resumable)
      return writer.write(group);
    },
    onForward: (f) => {
      tokens += f.tokens;
      progress.update({ tokens });
    },
    onWritten: (position) =>
      progress.update({ prompts: position - run.first + 1, bytes: r.bytes + writer.openShardBytes }),
  });
}

/** The finished run's summary, and its "done" line. */
export function finishRun(r: OpenRun, loop: RunBatchesStats, t0: number, tLoop: number): ExtractSummary {
  const { run, decision } = r;
  const summary: ExtractSummary = {
    output_dir: run.outDir,
    status: "complete",
    resumed: decision.mode === "resume",
    resumed_from: decision.mode === "resume" ? (r.fromGcs ? "gcs" : "local") : undefined,
    prompts: run.items.length,
    prompts_skipped: decision.durablePrompts,
    ...datasetTotals(r.writer!.metadata),
    tokens: loop.tokens,
    layers: run.layers,
    wall_s: (performance.now() - t0) / 1000,
    loop_s: (performance.now() - tLoop) / 1000,
    forward_s: loop.forwardSeconds,
    gcs_url: r.uploads?.url,
  };
  r.log(
    `extract: done: ${summary.records} records in ${summary.shards} shards (${formatSize(summary.bytes)}) ` +
      `at ${run.outDir}${summary.gcs_url ? ` and ${summary.gcs_url}` : ""}, ${summary.wall_s.toFixed(1)}s`,
  );
  return summary;
}

/** The shard writer's settings for this run's output, continuing after `existing`'s shards when given. */
export function writerOptions(run: PreparedRun, existing: DatasetMetadata | undefined): ShardWriterOptions {
  const c = run.config;
  return {
    dir: run.outDir,
    format: c.format,
    codec: c.codec,
    dtype: c.dtype,
    shardSizeBytes: Math.max(1, Math.round(c.shard_size_gb * GB)),
    base: baseMetadata(run),
    existing,
  };
}

/** A dataset's record, shard and byte counts, as the summary reports them. */
export function datasetTotals(meta: DatasetMetadata): Pick<ExtractSummary, "records" | "shards" | "bytes"> {
  return {
    records: meta.total_samples,
    shards: meta.total_shards,
    bytes: meta.shards.reduce((s, e) => s + (e.bytes ?? 0), 0),
  };
}

/** Real tokens of the prompts at `positions` (partner rows included). */
function batchTokens(run: PreparedRun, positions: readonly number[]): number {
  return positions.reduce((t, p) => t + run.allItems[p].input_ids.length, 0);
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
