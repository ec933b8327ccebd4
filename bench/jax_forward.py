"""jax.jit of the same Qwen2 math as the emitted StableHLO (lib/model/qwen2.ts), for `deno task bench forward`.

Reads a checkpoint directory (config.json + model.safetensors, HF Qwen2 layout), jits a forward that returns the
residual stream after every decoder layer (weights are jit arguments, as in our program), and prints one JSON
line per case: {"batch", "seq", "seconds", "tokens_per_s", "cpu_seconds", "tokens_per_cpu_s", "compile_seconds"}
(CPU seconds: the process's, all threads). Timed: best of `--repeat` runs
after a compiling run, outputs copied to host (np.asarray), as our backend copies them.

Usage: python3 bench/jax_forward.py MODEL_DIR --cases 1x512 1x2048 8x512 [--repeat 2]
"""
import argparse
import json
import os
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--cases", nargs="+", default=["1x512"])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dump", help="write the first case's layer outputs here as layer_<l>.f32 (checks)")
    a = ap.parse_args()

    import jax
    import jax.numpy as jnp
    from safetensors.numpy import load_file

    jax.config.update("jax_default_matmul_precision", "highest")
    cfg = json.load(open(os.path.join(a.model, "config.json")))
    H, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D, eps, theta = H // nq, cfg["rms_norm_eps"], cfg["rope_theta"]
    raw = load_file(os.path.join(a.model, "model.safetensors"))
    f32 = lambda k: jnp.asarray(raw[k].astype(np.float32))
    names = ["q_proj", "k_proj", "v_proj", "o_proj"]
    params = {
        "embed": f32("model.embed_tokens.weight"),
        "layers": [
            {
                **{n: f32(f"model.layers.{l}.self_attn.{n}.weight") for n in names},
                **{f"{n}_b": f32(f"model.layers.{l}.self_attn.{n}.bias") for n in names[:3]},
                "gate": f32(f"model.layers.{l}.mlp.gate_proj.weight"),
                "up": f32(f"model.layers.{l}.mlp.up_proj.weight"),
                "down": f32(f"model.layers.{l}.mlp.down_proj.weight"),
                "ln1": f32(f"model.layers.{l}.input_layernorm.weight"),
                "ln2": f32(f"model.layers.{l}.post_attention_layernorm.weight"),
            }
            for l in range(L)
        ],
    }
    del raw

    def rms(x, w):
        return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def rope(x, cos, sin):  # x [B, S, h, D]; rotate_half as HF
        x1, x2 = x[..., : D // 2], x[..., D // 2 :]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        return jnp.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)

    def forward(p, ids, lengths):
        B, S = ids.shape
        inv = 1.0 / (theta ** (jnp.arange(0, D // 2, dtype=jnp.float32) * 2 / D))
        ang = jnp.arange(S, dtype=jnp.float32)[:, None] * inv[None, :]
        cos, sin = jnp.cos(ang), jnp.sin(ang)
        pos = jnp.arange(S)
        mask = (pos[None, :] <= pos[:, None])[None] & (pos[None, None, :] < lengths[:, None, None])
        x = p["embed"][ids]
        outs = []
        for w in p["layers"]:
            h = rms(x, w["ln1"])
            q = (h @ w["q_proj"].T + w["q_proj_b"]).reshape(B, S, nq, D)
            k = (h @ w["k_proj"].T + w["k_proj_b"]).reshape(B, S, nkv, D)
            v = (h @ w["v_proj"].T + w["v_proj_b"]).reshape(B, S, nkv, D)
            q, k = rope(q, cos, sin), rope(k, cos, sin)
            q = q.reshape(B, S, nkv, nq // nkv, D)
            sc = jnp.einsum("bqkgd,bskd->bkgqs", q, k) / np.sqrt(D)
            sc = jnp.where(mask[:, None, None], sc, -jnp.inf)
            pr = jax.nn.softmax(sc, axis=-1)
            o = jnp.einsum("bkgqs,bskd->bqkgd", pr, v).reshape(B, S, nq * D)
            x = x + o @ w["o_proj"].T
            h = rms(x, w["ln2"])
            x = x + (jax.nn.silu(h @ w["gate"].T) * (h @ w["up"].T)) @ w["down"].T
            outs.append(x)
        return outs

    fn = jax.jit(forward)
    for case in a.cases:
        b, s = (int(t) for t in case.split("x"))
        ids = jnp.asarray((np.arange(b * s, dtype=np.int64) * 2654435761 % 150000).astype(np.int32).reshape(b, s))
        lengths = jnp.full((b,), s, dtype=jnp.int32)
        t0 = time.perf_counter()
        first = [np.asarray(o) for o in fn(params, ids, lengths)]
        compile_s = time.perf_counter() - t0
        if a.dump and case == a.cases[0]:
            os.makedirs(a.dump, exist_ok=True)
            for l, o in enumerate(first):
                o.astype(np.float32).tofile(os.path.join(a.dump, f"layer_{l}.f32"))
        best, best_cpu = float("inf"), float("inf")
        for _ in range(a.repeat):
            t0, c0 = time.perf_counter(), time.process_time()
            [np.asarray(o) for o in fn(params, ids, lengths)]
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        print(json.dumps({"batch": b, "seq": s, "seconds": best, "tokens_per_s": b * s / best,
                          "cpu_seconds": best_cpu, "tokens_per_cpu_s": b * s / best_cpu,
                          "compile_seconds": compile_s}), flush=True)


if __name__ == "__main__":
    main()
