#!/usr/bin/env python3
"""Device check, comparison step (docs/pjrt.md): per layer, max relative error of the PJRT outputs against the
ONNX backend's (computed beforehand, carried) and against HF transformers (each decoder layer's output, hooked)
(PyTorch, float32, one row at a time, no padding). Relative error = max |a - b| / max |b| over the layer, as
tests/_assert.ts maxRelError. Prints a Markdown table and the tokens/s lines; exit 1 if a float32 layer is
over 1e-4 against ONNX.

usage: device_check_compare.py DC_DIR   (DC_DIR holds model/, rows.json, onnx/, pjrt_float32/, pjrt_bfloat16/)
"""
import json
import os
import sys

import numpy as np


def load(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    layers = {l: np.fromfile(os.path.join(d, f"layer_{l}.f32"), dtype="<f4").reshape(-1, meta["hidden"])
              for l in meta["layers"]}
    return meta, layers


def rel(a, b):
    return float(np.max(np.abs(a.astype(np.float64) - b)) / max(float(np.max(np.abs(b))), 1e-6))


def hf_hidden(model_dir, rows, layers):
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        print(f"HF transformers comparison skipped: {e}")
        return None
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = {l: [] for l in layers}
    # Each decoder layer's own output (the residual stream), taken with a hook: HF's `hidden_states[-1]` is the
    # last layer's output *after* the final norm, which would make the last layer differ by O(1).
    captured = {}

    def hook(l):
        def f(_module, _inputs, output):
            captured[l] = (output[0] if isinstance(output, tuple) else output)[0].numpy().copy()
        return f

    handles = [model.model.layers[l].register_forward_hook(hook(l)) for l in layers]
    with torch.no_grad():
        for r in rows:
            model(torch.tensor([r]))
            for l in layers:
                out[l].append(captured[l])
    for h in handles:
        h.remove()
    return {l: np.concatenate(v) for l, v in out.items()}


def main():
    dc = sys.argv[1]
    rows = json.load(open(os.path.join(dc, "rows.json")))["rows"]
    onnx_meta, onnx = load(os.path.join(dc, "onnx"))
    runs = {d: load(os.path.join(dc, f"pjrt_{d}")) for d in ("float32", "bfloat16")
            if os.path.exists(os.path.join(dc, f"pjrt_{d}", "meta.json"))}
    hf = hf_hidden(os.path.join(dc, "model"), rows, onnx_meta["layers"])
    print("\n| layer | pjrt f32 vs onnx | pjrt f32 vs HF | onnx vs HF | pjrt bf16 vs onnx |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    worst = 0.0
    for l in onnx_meta["layers"]:
        f32 = runs.get("float32", (None, {}))[1].get(l)
        bf = runs.get("bfloat16", (None, {}))[1].get(l)
        cells = [
            rel(f32, onnx[l]) if f32 is not None else None,
            rel(f32, hf[l]) if f32 is not None and hf is not None else None,
            rel(onnx[l], hf[l]) if hf is not None else None,
            rel(bf, onnx[l]) if bf is not None else None,
        ]
        if cells[0] is not None:
            worst = max(worst, cells[0])
        print(f"| {l} | " + " | ".join("—" if c is None else f"{c:.2e}" for c in cells) + " |")
    print()
    for d, (meta, _) in runs.items():
        print(f"pjrt {d}: {meta['tokens_per_s']:.1f} tokens/s (first pass incl. compile "
              f"{meta['first_pass_seconds']:.2f} s)")
    print(f"onnx (prepare machine): {onnx_meta['tokens_per_s']:.1f} tokens/s")
    if "float32" not in runs:
        print("device check: no float32 PJRT run to compare")
        sys.exit(1)
    print(f"device check: max rel error pjrt f32 vs onnx = {worst:.2e} ({'PASS' if worst <= 1e-4 else 'FAIL'} at 1e-4)")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
