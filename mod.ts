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

// Datasets, prompts, tokens.
export { type ArcTask, type Grid, loadArcDataset } from "./lib/arc/dataset.ts";
export { Tokenizer } from "./lib/tokenizer/mod.ts";
export {
  buildPromptPlan,
  loadPromptFormat,
  type PromptFormat,
  type PromptItem,
  type PromptPlanOptions,
} from "./lib/prompts/plan.ts";

// Models and backends.
export { loadModelConfig, type Qwen2Config } from "./lib/model/config.ts";
export { resolveModelDir } from "./lib/model/hub.ts";
export { type TinyModelOptions, writeTinyModel } from "./lib/model/tiny.ts";
export { createOnnxBackend, type OnnxBackendOptions } from "./lib/backend/onnx/index.ts";
export { createPjrtBackend, findPjrtPlugin, type PjrtBackendOptions } from "./lib/backend/pjrt/index.ts";

// Datasets on disk or GCS: write, read, verify, merge, upload.
export { ShardWriter, type ShardWriterOptions } from "./lib/shard/writer.ts";
export { Dataset, type ReadRecord, type RecordFilter } from "./lib/shard/reader.ts";
export { type DatasetMetadata, readMetadata, type ShardEntry } from "./lib/shard/metadata.ts";
export { verifyDataset, type VerifyOptions, type VerifyReport } from "./lib/shard/verify.ts";
export { mergeDatasets, type MergedWorker } from "./lib/pipeline/merge.ts";
export type { BlobStore, ObjectInfo } from "./lib/storage/types.ts";
export { openStore } from "./lib/storage/open.ts";
export { GcsStore, type GcsStoreOptions, parseGsUrl } from "./lib/storage/gcs.ts";
export { uploadDataset } from "./lib/pipeline/shard_uploader.ts";

// The extract job and scale-out.
export { type ExtractConfig, parseExtractFlags } from "./lib/cli/extract_flags.ts";
export { type ExtractHooks, type ExtractSummary, runExtract } from "./lib/pipeline/extract.ts";
export { resolveWorker, splitWork } from "./lib/pipeline/work_split.ts";

// Internals with entry points of their own (deno.json "exports"): the PJRT C API binding is
// `actshard/pjrt` (native/pjrt/mod.ts); the GCS emulator for tests is `actshard/gcs-emulator`
// (lib/storage/gcs_emulator/server.ts).
