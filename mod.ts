/**
 * actshard — the public TypeScript API: readers, writers and the extract job.
 *
 * Run the extract job from code (the same config `deno task extract` builds from its flags), here on a tiny
 * generated checkpoint and generated ARC-format tasks:
 *
 * ```ts
 * import { parseExtractFlags, runExtract, writeTinyModel } from "./mod.ts";
 * import { syntheticArcTasks } from "./lib/arc/synthetic.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(`${dir}/model`, { hidden: 32, layers: 2 }); // the real vocab: prompts use all of it
 * await Deno.writeTextFile(`${dir}/tasks.json`, JSON.stringify(syntheticArcTasks({ nTasks: 2 })));
 * const config = parseExtractFlags([
 *   "--model_path", `${dir}/model`, "--dataset_path", `${dir}/tasks.json`, "--output_dir", `${dir}/acts`,
 *   "--layers_to_extract", "0", "1", "--predictions_per_task", "2",
 * ]);
 * if (!("help" in config)) console.log(await runExtract(config, { log: () => {}, progress: { write: () => {} } }));
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * Read a dataset (local directory, `gs://bucket/prefix`, or a merged multi-worker root) and verify it:
 *
 * ```ts
 * import { Dataset, ShardWriter, verifyDataset, openStore } from "./mod.ts";
 * const dir = await Deno.makeTempDir(); // a dataset of one record, written here
 * const w = await ShardWriter.open({ dir, format: "safetensors", codec: "zstd", dtype: "bfloat16", shardSizeBytes: 1 << 20, base: {} });
 * await w.write([{ task_id: "t", sample_idx: 0, layer: 20, prompt: "p", activation: new Float32Array(8), shape: [2, 4] }]);
 * await w.close();
 * const ds = await Dataset.open(dir);
 * for await (const r of ds.records({ layer: 20 })) {
 *   console.log(r.task_id, r.sample_idx, r.shape); // r.activation: Float32Array [n_tokens * hidden]
 * }
 * console.log((await verifyDataset(await openStore(dir))).ok); // true
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */

// Contracts between stages.
export type { ActivationDType, ActivationRecord, Backend, TokenBatch } from "./lib/types.ts";
export { ActshardError, type ErrorContext, type ErrorKind, errorLine } from "./lib/errors.ts";

// Datasets, prompts, tokens.
export { type ArcLoadOptions, type ArcTask, type Grid, loadArcDataset } from "./lib/arc/dataset.ts";
export { Tokenizer } from "./lib/tokenizer/mod.ts";
export {
  buildPromptPlan,
  loadPromptFormat,
  type PromptFormat,
  type PromptItem,
  type PromptPlanOptions,
} from "./lib/prompts/plan.ts";
export type { PromptFormatData } from "./lib/prompts/format.ts";
export type { GridEncoder } from "./lib/prompts/encoders.ts";
export type { CompiledTemplate } from "./lib/prompts/jinja.ts";

// Models and backends.
export { loadModelConfig, type Qwen2Config } from "./lib/model/config.ts";
export { type DownloadProgress, resolveModelDir, type ResolveModelOptions } from "./lib/model/hub.ts";
export { type TinyModelOptions, writeTinyModel } from "./lib/model/tiny.ts";
export { createOnnxBackend, type OnnxBackendOptions } from "./lib/backend/onnx/index.ts";
export {
  type ComputeDtype,
  createPjrtBackend,
  findPjrtPlugin,
  type PjrtBackendOptions,
} from "./lib/backend/pjrt/index.ts";
export type { FindPluginOptions, PluginKind } from "./lib/backend/pjrt/discover.ts";

// Datasets on disk or GCS: write, read, verify, merge, re-shard, upload.
export { type ShardFormat, ShardWriter, type ShardWriterOptions } from "./lib/shard/writer.ts";
export type { Codec } from "./lib/shard/codecs.ts";
export { Dataset, type ReadRecord, type RecordFilter } from "./lib/shard/reader.ts";
export { type DatasetMetadata, readMetadata, type ShardEntry } from "./lib/shard/metadata.ts";
export {
  type ShardCheck,
  verifyDataset,
  type VerifyIssue,
  type VerifyOptions,
  type VerifyReport,
} from "./lib/shard/verify.ts";
export { mergeDatasets, type MergedWorker } from "./lib/pipeline/merge.ts";
export { reshardDataset, type ReshardOptions, type ReshardResult } from "./lib/shard/reshard.ts";
export type { BlobStore, ObjectInfo } from "./lib/storage/types.ts";
export { openStore } from "./lib/storage/open.ts";
export type { RetryPolicy } from "./lib/storage/gcs_transport.ts";
export {
  uploadDataset,
  type UploadDatasetOptions,
  type UploadReport,
} from "./lib/pipeline/upload_dataset.ts";

// The extract job (scale-out is its num_workers/worker_index config; the work split itself is internal).
export { type ExtractConfig, parseExtractFlags } from "./lib/cli/extract_flags.ts";
export { type ExtractHooks, type ExtractSummary, runExtract } from "./lib/pipeline/extract.ts";
export type { ProgressOptions } from "./lib/pipeline/progress.ts";

// Internals with entry points of their own (deno.json "exports"): the PJRT C API binding is
// `actshard/pjrt` (native/pjrt/mod.ts); the GCS emulator for tests is `actshard/gcs-emulator`
// (lib/storage/gcs_emulator/server.ts). GcsStore, the work split and the rest of lib/ are internal.
