/**
 * An independent check of the Qwen2 definition: a numpy port of Hugging Face's `modeling_qwen2` forward
 * (rotate_half RoPE, repeat_kv, causal softmax, SwiGLU; float64), run by /usr/bin/python3 on a generated tiny
 * checkpoint, against the reference interpreter's `hidden_states[i+1]`. Ignored when numpy is unavailable.
 */
import { assertClose } from "./_assert.ts";
import { DEBIAN_PYTHON, ignoreWithoutPython } from "./_python.ts";
import { tempDir } from "./_shared.ts";
import { referenceForward } from "../lib/model/reference.ts";
import { writeTinyModel } from "../lib/model/tiny.ts";

const HF_PORT = `
import json, sys, numpy as np
d = sys.argv[1]; ids = np.array(json.loads(sys.argv[2]))
cfg = json.load(open(d + "/config.json"))
raw = open(d + "/model.safetensors", "rb").read()
n = int.from_bytes(raw[:8], "little"); hdr = json.loads(raw[8:8 + n])
def W(name):
    t = hdr[name]; b, e = t["data_offsets"]
    return np.frombuffer(raw[8 + n + b:8 + n + e], dtype=np.float32).reshape(t["shape"]).astype(np.float64)
H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
D = H // nh; S = len(ids); eps = cfg["rms_norm_eps"]
def rmsnorm(x, w): return w * (x / np.sqrt((x * x).mean(-1, keepdims=True) + eps))
def rotate_half(x): return np.concatenate([-x[..., D // 2:], x[..., :D // 2]], -1)
inv_freq = 1.0 / (cfg["rope_theta"] ** (np.arange(0, D, 2, dtype=np.int64).astype(np.float64) / D))
freqs = np.arange(S)[:, None] * inv_freq[None, :]
emb = np.concatenate([freqs, freqs], -1); cos, sin = np.cos(emb)[None], np.sin(emb)[None]
h = W("model.embed_tokens.weight")[ids]
mask = np.triu(np.full((S, S), -np.inf), 1)
out = []
for i in range(cfg["num_hidden_layers"]):
    p = f"model.layers.{i}."
    lin = lambda x, nm, bias=True: x @ W(p + nm + ".weight").T + (W(p + nm + ".bias") if bias else 0)
    x = rmsnorm(h, W(p + "input_layernorm.weight"))
    q = lin(x, "self_attn.q_proj").reshape(S, nh, D).transpose(1, 0, 2)
    k = lin(x, "self_attn.k_proj").reshape(S, nkv, D).transpose(1, 0, 2)
    v = lin(x, "self_attn.v_proj").reshape(S, nkv, D).transpose(1, 0, 2)
    q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
    k, v = np.repeat(k, nh // nkv, axis=0), np.repeat(v, nh // nkv, axis=0)   # repeat_kv
    s = q @ k.transpose(0, 2, 1) / np.sqrt(D) + mask
    pr = np.exp(s - s.max(-1, keepdims=True)); pr /= pr.sum(-1, keepdims=True)
    a = (pr @ v).transpose(1, 0, 2).reshape(S, nh * D)
    h = h + lin(a, "self_attn.o_proj", False)
    y = rmsnorm(h, W(p + "post_attention_layernorm.weight"))
    g = lin(y, "mlp.gate_proj", False)
    h = h + lin((g / (1 + np.exp(-g))) * lin(y, "mlp.up_proj", False), "mlp.down_proj", False)
    out.append(h.ravel().tolist())
print(json.dumps(out))
`;

Deno.test({
  name: "qwen2 definition matches a numpy port of HF modeling_qwen2 (GQA ratio 3, 3 layers)",
  ignore: ignoreWithoutPython(["numpy"], DEBIAN_PYTHON),
  fn: async () => {
    await using dir = await tempDir();
    await writeTinyModel(dir.path, {
      hidden: 48,
      layers: 3,
      heads: 6,
      kvHeads: 2,
      vocab: 97,
      seed: 12,
      tokenizer: false,
    });
    const ids = [5, 17, 3, 96, 40, 40, 1, 77, 23];
    const py = await new Deno.Command("/usr/bin/python3", {
      args: ["-c", HF_PORT, dir.path, JSON.stringify(ids)],
    }).output();
    if (!py.success) throw new Error(new TextDecoder().decode(py.stderr));
    const hf: number[][] = JSON.parse(new TextDecoder().decode(py.stdout));
    const ours = await referenceForward(
      dir.path,
      { ids: Int32Array.from(ids), lengths: Int32Array.from([ids.length]), batch: 1, seqLen: ids.length },
      [0, 1, 2],
    );
    for (let l = 0; l < 3; l++) assertClose(ours.get(l)!, hf[l], 1e-6, `layer ${l}`);
  },
});
