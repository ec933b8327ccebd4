/**
 * The Qwen2 fields of a Hugging Face `config.json`, validated. Anything a user can get wrong (missing file, other
 * architecture, inconsistent head counts) is an {@link ActshardError} naming the file.
 *
 * @example
 * ```ts
 * import { loadModelConfig } from "./config.ts";
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 256, tokenizer: false });
 * const cfg = await loadModelConfig(dir);
 * console.log(cfg.hidden_size, cfg.num_hidden_layers); // 32 2
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { join } from "node:path";
import { ActshardError } from "../errors.ts";

/** What the Qwen2 definition reads from config.json. */
export interface Qwen2Config {
  /** e.g. `["Qwen2ForCausalLM"]`; one of {@link SUPPORTED_ARCHITECTURES}. */
  architectures: string[];
  /** `qwen2`. */
  model_type: string;
  /** Width of the residual stream (896 for Qwen2.5-0.5B). */
  hidden_size: number;
  /** Number of decoder blocks (24 for Qwen2.5-0.5B). */
  num_hidden_layers: number;
  /** Query heads per block. */
  num_attention_heads: number;
  /** Key/value heads per block (grouped-query attention; divides `num_attention_heads`). */
  num_key_value_heads: number;
  /** Width of the MLP's hidden layer. */
  intermediate_size: number;
  /** Embedding rows. */
  vocab_size: number;
  /** RoPE base frequency. */
  rope_theta: number;
  /** RMSNorm epsilon. */
  rms_norm_eps: number;
  /** True when lm_head shares the embedding matrix. */
  tie_word_embeddings: boolean;
  /** The longest position the model was trained for. */
  max_position_embeddings: number;
  /** `hidden_size / num_attention_heads` unless config.json says otherwise. */
  head_dim: number;
  /** The stored dtype the checkpoint claims (informational). */
  torch_dtype?: string;
}

/** Architectures this definition implements. */
export const SUPPORTED_ARCHITECTURES = ["Qwen2ForCausalLM", "Qwen2Model"];

/**
 * Read and validate `DIR/config.json`.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { loadModelConfig } from "./config.ts";
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 3, vocab: 256, tokenizer: false });
 * const cfg = await loadModelConfig(dir);
 * assert(cfg.hidden_size === 32 && cfg.num_hidden_layers === 3 && cfg.head_dim === 8);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function loadModelConfig(dir: string): Promise<Qwen2Config> {
  const path = join(dir, "config.json");
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ActshardError("model config.json is missing", {
        where: path,
        hint:
          "--model_path must be a Hugging Face model directory (config.json + *.safetensors) or a Hub repo id",
      });
    }
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ActshardError("model config.json is not valid JSON", { where: path, kind: "data", cause: e });
  }
  return parseModelConfig(raw, path);
}

/** Validate a parsed config.json (exported for tests). */
export function parseModelConfig(raw: unknown, where = "config.json"): Qwen2Config {
  if (typeof raw !== "object" || raw === null) {
    throw new ActshardError("model config.json is not a JSON object", { where, kind: "data" });
  }
  const c = raw as Record<string, unknown>;
  const archs = Array.isArray(c.architectures) ? c.architectures.map(String) : [];
  const modelType = String(c.model_type ?? "");
  if (!archs.some((a) => SUPPORTED_ARCHITECTURES.includes(a)) && modelType !== "qwen2") {
    throw new ActshardError(
      `unsupported model architecture ${archs.join(",") || modelType || "(none given)"}`,
      { where, hint: `supported: ${SUPPORTED_ARCHITECTURES.join(", ")} (model_type "qwen2")` },
    );
  }
  const int = (k: string, dflt?: number): number => {
    const v = c[k] ?? dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new ActshardError(`config.json: ${k} must be a positive integer, got ${JSON.stringify(v)}`, {
        where,
        kind: "data",
      });
    }
    return v;
  };
  const num = (k: string, dflt: number): number => {
    const v = c[k] ?? dflt;
    if (typeof v !== "number" || !(v > 0)) {
      throw new ActshardError(`config.json: ${k} must be a positive number, got ${JSON.stringify(v)}`, {
        where,
        kind: "data",
      });
    }
    return v;
  };
  const hidden = int("hidden_size");
  const heads = int("num_attention_heads");
  const kvHeads = int("num_key_value_heads", heads);
  const headDim = c.head_dim === undefined || c.head_dim === null ? hidden / heads : int("head_dim");
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new ActshardError(
      `config.json: head dim ${headDim} (hidden_size / num_attention_heads) must be even`,
      {
        where,
        kind: "data",
      },
    );
  }
  if (heads % kvHeads !== 0) {
    throw new ActshardError(
      `config.json: num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`,
      { where, kind: "data" },
    );
  }
  return {
    architectures: archs,
    model_type: modelType || "qwen2",
    hidden_size: hidden,
    num_hidden_layers: int("num_hidden_layers"),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    intermediate_size: int("intermediate_size"),
    vocab_size: int("vocab_size"),
    rope_theta: num("rope_theta", 10000),
    rms_norm_eps: num("rms_norm_eps", 1e-6),
    tie_word_embeddings: c.tie_word_embeddings === undefined ? false : Boolean(c.tie_word_embeddings),
    max_position_embeddings: int("max_position_embeddings", 32768),
    head_dim: headDim,
    torch_dtype: typeof c.torch_dtype === "string" ? c.torch_dtype : undefined,
  };
}
