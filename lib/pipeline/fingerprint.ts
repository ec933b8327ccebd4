/**
 * The run fingerprint: every setting that changes which records an extract run writes, or their bytes. It is
 * stored in `metadata.json` (`config`) when a run starts; a rerun into the same output dir compares its own
 * fingerprint with the stored one and resumes only when they agree, so a resumed dataset is always one
 * consistent run. Differing settings are named in the refusal, with both values.
 *
 * Keys are the extract flags' names. Paths are informational (moving a dataset or model does not change it);
 * their content hashes are what is compared.
 *
 * @example
 * ```ts
 * import { diffFingerprints } from "./fingerprint.ts";
 * diffFingerprints({ layers_to_extract: [10, 11], random_seed: 42 }, { layers_to_extract: [20], random_seed: 42 });
 * // [{ key: "layers_to_extract", stored: [10, 11], current: [20] }]
 * ```
 */
import { createHash } from "node:crypto";
import { join } from "node:path";

/** What a run's records depend on. JSON-serialisable; stored as metadata.json `config`. */
export interface RunFingerprint {
  /** Informational: the `--model_path` given. */
  model_path: string;
  /** sha256 over config.json and the weight files' names and sizes (hashing GBs of weights would be slow). */
  model_sha256: string;
  /** Informational: the `--dataset_path` given. */
  dataset_path: string;
  dataset_sha256: string;
  n_tasks: number | null;
  layers_to_extract: number[];
  /** "default" or the sha256 of the prompt format file. */
  prompt_format: string;
  random_seed: number;
  predictions_per_task: number;
  max_seq_length: number;
  augment: string;
  dtype: string;
  format: string;
  codec: string;
  shard_size_gb: number;
  keep_padding: boolean;
  /**
   * `--batch_size` and the length-sorting window (in batches; 1 under `--keep_padding`): with the prompt list
   * they define the batch plan, which every worker computes over the whole run, and a prompt's batch partners
   * decide its records' last bits (onnxruntime) and, under `--keep_padding`, their padded shape. Part of the
   * fingerprint so that a resumed run is byte-identical to an uninterrupted one and merged workers form one
   * plan, bit-identical to a single-host run. (Runs started before the plan was whole-run stored `batch_size`
   * only under `--keep_padding` and no `batch_window`: they are refused on resume, naming both keys, rather
   * than continued under a different plan.)
   */
  batch_size: number;
  batch_window: number;
  num_workers: number;
  worker_index: number;
  /** Prompts this worker extracts (a consistency check on the prompt plan). */
  n_prompts: number;
  /**
   * sha256 over the whole run's prompt list (every worker's: sample_idx and token ids), so a resume whose
   * prompts or tokens came out differently (a changed tokenizer, prompt code or actshard version, e.g. a
   * preempted pod restarted on a new image) is refused instead of mixing two prompt lists in one dataset.
   * The same for all workers of a run, so merged workers still agree on it.
   */
  prompts_sha256: string;
}

/** Keys that describe but do not define a run. */
export const INFORMATIONAL_KEYS: ReadonlySet<string> = new Set(["model_path", "dataset_path"]);

/** One differing setting. */
export interface FingerprintDiff {
  key: string;
  stored: unknown;
  current: unknown;
}

/** Settings that differ between a stored and a current fingerprint (informational keys ignored). */
export function diffFingerprints(
  stored: Record<string, unknown>,
  current: Record<string, unknown>,
): FingerprintDiff[] {
  const keys = new Set([...Object.keys(stored), ...Object.keys(current)]);
  const out: FingerprintDiff[] = [];
  for (const key of keys) {
    if (INFORMATIONAL_KEYS.has(key)) continue;
    if (JSON.stringify(stored[key] ?? null) !== JSON.stringify(current[key] ?? null)) {
      out.push({ key, stored: stored[key], current: current[key] });
    }
  }
  return out;
}

/** `layers_to_extract (stored 10-23, now 20-23)` for each difference. */
export function describeDiffs(diffs: FingerprintDiff[]): string {
  const show = (v: unknown): string => {
    if (Array.isArray(v) && v.length > 2 && v.every((x, i) => i === 0 || x === v[i - 1] + 1)) {
      return `${v[0]}-${v[v.length - 1]}`;
    }
    if (typeof v === "string" && /^[0-9a-f]{64}$/.test(v)) return `sha256 ${v.slice(0, 12)}…`;
    return v === undefined ? "unset" : JSON.stringify(v);
  };
  return diffs.map((d) => `${d.key} (stored ${show(d.stored)}, now ${show(d.current)})`).join(", ");
}

/** sha256 hex of bytes. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** sha256 over a prompt list's (sample_idx, token ids), in list order. */
export function promptsSha256(prompts: readonly { sample_idx: number; input_ids: Int32Array }[]): string {
  const h = createHash("sha256");
  const head = new Int32Array(2);
  for (const p of prompts) {
    head[0] = p.sample_idx;
    head[1] = p.input_ids.length;
    h.update(new Uint8Array(head.buffer));
    h.update(new Uint8Array(p.input_ids.buffer, p.input_ids.byteOffset, p.input_ids.byteLength));
  }
  return h.digest("hex");
}

/** sha256 of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  const h = createHash("sha256");
  const f = await Deno.open(path);
  // The readable closes the file when it ends.
  for await (const chunk of f.readable) h.update(chunk);
  return h.digest("hex");
}

/** sha256 of a dataset: the file's bytes, or for a directory each file's name and sha256, sorted by name. */
export async function datasetSha256(path: string): Promise<string> {
  const st = await Deno.stat(path);
  if (!st.isDirectory) return await sha256File(path);
  const names: string[] = [];
  for await (const e of Deno.readDir(path)) if (e.isFile) names.push(e.name);
  const h = createHash("sha256");
  for (const name of names.sort()) h.update(`${name}:${await sha256File(join(path, name))}\n`);
  return h.digest("hex");
}

/** The model identity hash: config.json's bytes plus each `*.safetensors` file's name and size. */
export async function modelSha256(modelDir: string): Promise<string> {
  const h = createHash("sha256");
  h.update(await Deno.readFile(join(modelDir, "config.json")));
  const weights: string[] = [];
  for await (const e of Deno.readDir(modelDir)) {
    if (e.name.endsWith(".safetensors")) weights.push(e.name);
  }
  for (const name of weights.sort()) {
    const st = await Deno.stat(join(modelDir, name));
    h.update(`\n${name}:${st.size}`);
  }
  return h.digest("hex");
}
