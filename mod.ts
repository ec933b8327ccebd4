/**
 * actshard — the public TypeScript API: readers, writers and the extract job.
 *
 * Read a dataset (local directory, `gs://bucket/prefix`, or a merged multi-worker root):
 *
 * ```ts
 * import { Dataset } from "./mod.ts";
 * const ds = await Dataset.open("./activations_arc");
 * for await (const r of ds.records({ layer: 20 })) {
 *   console.log(r.task_id, r.sample_idx, r.shape); // r.activation: Float32Array [n_tokens * hidden]
 * }
 * ```
 *
 * Run the extract job from code (the same config `deno task extract` builds from its flags):
 *
 * ```ts
 * import { parseExtractFlags, runExtract } from "./mod.ts";
 * const config = parseExtractFlags(["--model_path", "./tiny", "--dataset_path", "tasks.json"]);
 * if (!("help" in config)) console.log(await runExtract(config));
 * ```
 *
 * @module
 */

// Contracts between stages.
export type { ActivationDType, ActivationRecord, Backend, TokenBatch } from "./lib/types.ts";
export { ActshardError, errorLine } from "./lib/errors.ts";
export { Crc32c, crc32c } from "./lib/util/crc32c.ts";

// Datasets, prompts, tokens.
export { type ArcTask, type Grid, loadArcDataset } from "./lib/arc/dataset.ts";
export { syntheticArcTasks } from "./lib/arc/synthetic.ts";
export { Tokenizer } from "./lib/tokenizer/mod.ts";
export {
  buildPromptPlan,
  loadPromptFormat,
  type PromptFormat,
  type PromptItem,
  promptPlanItems,
  type PromptPlanOptions,
} from "./lib/prompts/plan.ts";
export { parseGridEncoder } from "./lib/prompts/encoders.ts";

// Models and backends.
export { loadModelConfig, type Qwen2Config } from "./lib/model/config.ts";
export { DEFAULT_MODEL_ID, resolveModelDir, resolveTokenizerDir } from "./lib/model/hub.ts";
export { referenceForward } from "./lib/model/reference.ts";
export { type TinyModelOptions, writeTinyModel } from "./lib/model/tiny.ts";
export { createOnnxBackend, type OnnxBackendOptions } from "./lib/backend/onnx/index.ts";
export { createPjrtBackend, findPjrtPlugin, type PjrtBackendOptions } from "./lib/backend/pjrt/index.ts";
export { PjrtApi, PjrtClient, PjrtError, PjrtLoadError } from "./native/pjrt/mod.ts";

// Shards: writer, reader, metadata, verify, merge.
export { ShardWriter, type ShardWriterOptions } from "./lib/shard/writer.ts";
export {
  Dataset,
  type ReadRecord,
  readShard,
  readShardRanged,
  type RecordFilter,
} from "./lib/shard/reader.ts";
export {
  type DatasetMetadata,
  readMetadata,
  type ShardEntry,
  writeMetadataAtomic,
} from "./lib/shard/metadata.ts";
export { verifyDataset, type VerifyOptions, type VerifyReport } from "./lib/shard/verify.ts";
export { mergeDatasets, type MergedWorker } from "./lib/pipeline/merge.ts";

// Storage: local, GCS, the built-in emulator.
export type { BlobStore, ObjectInfo } from "./lib/storage/types.ts";
export { LocalStore } from "./lib/storage/local.ts";
export { openStore } from "./lib/storage/open.ts";
export { GcsStore, type GcsStoreOptions, parseGsUrl, type RetryPolicy } from "./lib/storage/gcs.ts";
export { ShardUploader, type ShardUploaderOptions, uploadDataset } from "./lib/pipeline/shard_uploader.ts";
export { type FaultRule, type GcsEmulator, startGcsEmulator } from "./lib/storage/gcs_emulator/server.ts";

// The extract job and scale-out.
export { type ExtractConfig, parseExtractFlags } from "./lib/cli/extract_flags.ts";
export { type ExtractHooks, type ExtractSummary, runExtract } from "./lib/pipeline/extract.ts";
export { decideRemoteResume, durablePrefix } from "./lib/pipeline/remote_resume.ts";
export {
  NUM_WORKERS_ENV,
  resolveWorker,
  splitWork,
  WORKER_INDEX_ENV,
  workerDirName,
  workerFromEnv,
} from "./lib/pipeline/work_split.ts";
