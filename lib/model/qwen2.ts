/**
 * Qwen2 (and Qwen2.5), written once against the graph IR: every backend emits or interprets this graph.
 * The outputs are the residual streams after the requested decoder blocks (`layer_<i>`, HF
 * `hidden_states[i + 1]`); blocks after the last requested one are not built, and the final norm and LM head
 * never are (tied embeddings therefore change nothing here).
 *
 * @example
 * ```ts
 * import { buildQwen2Graph } from "./qwen2.ts";
 * import { loadModelConfig } from "./config.ts";
 * import { writeTinyModel } from "./tiny.ts";
 * const dir = await Deno.makeTempDir();
 * await writeTinyModel(dir, { hidden: 32, layers: 2, vocab: 1000, tokenizer: false });
 * const graph = buildQwen2Graph(await loadModelConfig(dir), [0, 1]);
 * console.log(graph.outputs.map((o) => o.name)); // ["layer_0", "layer_1"]
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
import { ActshardError } from "../errors.ts";
import type { Qwen2Config } from "./config.ts";
import { type Graph, GraphBuilder, type Value } from "./ir.ts";

/** Graph output name of a layer. */
export function layerOutputName(layer: number): string {
  return `layer_${layer}`;
}

/** Check requested layers against the config: integers in `[0, num_hidden_layers)`, returned sorted, unique. */
export function validateLayers(cfg: Qwen2Config, layers: number[]): number[] {
  if (layers.length === 0) {
    throw new ActshardError("no layers requested", { kind: "usage", hint: "pass at least one layer index" });
  }
  for (const l of layers) {
    if (!Number.isInteger(l) || l < 0 || l >= cfg.num_hidden_layers) {
      throw new ActshardError(`layer index ${l} is out of range`, {
        kind: "usage",
        where: "--layers_to_extract",
        hint: `this model has ${cfg.num_hidden_layers} layers: use 0..${cfg.num_hidden_layers - 1}`,
      });
    }
  }
  return [...new Set(layers)].sort((a, b) => a - b);
}

/** The Qwen2 decoder up to the deepest requested layer, with one output per requested layer. */
export function buildQwen2Graph(cfg: Qwen2Config, layers: number[]): Graph {
  const wanted = validateLayers(cfg, layers);
  const H = cfg.hidden_size, D = cfg.head_dim;
  const nQ = cfg.num_attention_heads, nKV = cfg.num_key_value_heads, I = cfg.intermediate_size;
  const g = new GraphBuilder();
  const ids = g.input("ids");
  const lengths = g.input("lengths");

  const linear = (x: Value, name: string, outF: number, inF: number, bias: boolean) =>
    g.linear(x, g.weight(`${name}.weight`, [outF, inF]), bias ? g.weight(`${name}.bias`, [outF]) : undefined);
  const heads = (x: Value, n: number) => g.reshape(x, ["batch", "seq", n, D]);

  let h = g.embed(g.weight("model.embed_tokens.weight", [cfg.vocab_size, H]), ids);
  for (let i = 0; i <= wanted.at(-1)!; i++) {
    const p = `model.layers.${i}`;
    // Self-attention block: pre-norm, q/k/v projections with bias, RoPE on q and k, causal GQA, output proj.
    const x = g.rmsnorm(h, g.weight(`${p}.input_layernorm.weight`, [H]), cfg.rms_norm_eps);
    const q = g.rope(heads(linear(x, `${p}.self_attn.q_proj`, nQ * D, H, true), nQ), cfg.rope_theta);
    const k = g.rope(heads(linear(x, `${p}.self_attn.k_proj`, nKV * D, H, true), nKV), cfg.rope_theta);
    const v = heads(linear(x, `${p}.self_attn.v_proj`, nKV * D, H, true), nKV);
    const attn = g.reshape(g.attention(q, k, v, lengths), ["batch", "seq", nQ * D]);
    h = g.add(h, linear(attn, `${p}.self_attn.o_proj`, H, nQ * D, false));
    // MLP block: pre-norm, SwiGLU (silu(gate) * up), down projection.
    const y = g.rmsnorm(h, g.weight(`${p}.post_attention_layernorm.weight`, [H]), cfg.rms_norm_eps);
    const gate = g.silu(linear(y, `${p}.mlp.gate_proj`, I, H, false));
    const up = linear(y, `${p}.mlp.up_proj`, I, H, false);
    h = g.add(h, linear(g.mul(gate, up), `${p}.mlp.down_proj`, H, I, false));
    if (wanted.includes(i)) g.output(layerOutputName(i), h);
  }
  return g.finish();
}
