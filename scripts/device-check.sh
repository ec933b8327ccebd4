#!/usr/bin/env bash
# The PJRT backend's real check on an accelerator machine (docs/pjrt.md § Device check).
#
#   scripts/device-check.sh prepare   # here (CPU, npm installed): tiny checkpoint + token rows + ONNX outputs
#                                     # + the Deno binary, xz-compressed, all under .cache/device-check/ (< 64 MiB)
#   scripts/device-check.sh run       # there (GPU/TPU, no internet): unpack Deno, --backend pjrt on the same
#                                     # rows, compare every layer with the ONNX outputs and with HF transformers
#                                     # output_hidden_states (PyTorch), print max rel errors and tokens/s
#
# `run` needs an accelerator PJRT plugin (DC_PLUGIN, or jax_plugins.xla_cuda13 in python3, or discovery of a
# TPU/CUDA plugin as in lib/backend/pjrt/discover.ts — never an XLA CPU plugin) and python3
# with numpy (+ torch and transformers for the HF column; skipped with a note when absent).
# Env: DC_DIR (default .cache/device-check), DC_PLUGIN (--pjrt_plugin), DC_SKIP_BENCH=1 (no tokens/s model).
set -euo pipefail
cd "$(dirname "$0")/.."
DC_DIR="${DC_DIR:-.cache/device-check}"
LAYERS="0 1 2 3"

prepare() {
  export PATH="$PWD/node_modules/.bin:$PATH"
  rm -rf "$DC_DIR" && mkdir -p "$DC_DIR"
  deno run -A scripts/make_tiny_model.ts --out "$DC_DIR/model" --hidden 64 --layers 4 --heads 4 --kv_heads 2 \
    --vocab 1000 --seed 3 >/dev/null
  rm -f "$DC_DIR"/model/tokenizer*.json # the device needs ids only
  # 6 rows of different lengths (token ids < vocab), fixed.
  python3 - "$DC_DIR/rows.json" <<'EOF'
import json, sys
rows = [[(r * 131 + s * 17 + 3) % 1000 for s in range(n)] for r, n in enumerate([37, 5, 64, 19, 1, 50])]
json.dump({"rows": rows}, open(sys.argv[1], "w"))
EOF
  deno run -A scripts/pjrt_forward.ts --backend onnx --model_path "$DC_DIR/model" --rows "$DC_DIR/rows.json" \
    --layers $LAYERS --batch_size 3 --out "$DC_DIR/onnx"
  local bin
  bin="$(deno eval 'console.log(Deno.execPath())')"
  xz -T0 -6 -c "$bin" >"$DC_DIR/deno.xz"
  du -sh "$DC_DIR" | awk '{print "prepared " $2 " (" $1 ")"}'
}

run() {
  [ -f "$DC_DIR/deno.xz" ] || { echo "device-check: $DC_DIR/deno.xz missing: run 'scripts/device-check.sh prepare' first"; exit 1; }
  local deno="$DC_DIR/bin/deno"
  mkdir -p "$DC_DIR/bin"
  [ -x "$deno" ] || { xz -dc "$DC_DIR/deno.xz" >"$deno" && chmod +x "$deno"; }
  "$deno" --version | head -1
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
  local plugin=()
  export DENO_NO_UPDATE_CHECK=1 DENO_DIR="$DC_DIR/deno_dir"
  if [ -z "${DC_PLUGIN:-}" ]; then # ask the Python that has JAX's CUDA plugin where it is
    DC_PLUGIN="$(python3 -c 'import os, jax_plugins.xla_cuda13 as m; print(os.path.join(os.path.dirname(m.__file__), "xla_cuda_plugin.so"))' 2>/dev/null || true)"
  fi
  if [ -z "${DC_PLUGIN:-}" ]; then # else discovery, accelerators only: an XLA CPU plugin would "pass" on the CPU
    DC_PLUGIN="$("$deno" eval "import { findPjrtPlugin } from './lib/backend/pjrt/discover.ts';
      try { console.log(findPjrtPlugin(null, Deno.env, { kinds: ['tpu', 'cuda'] })); } catch { console.log(''); }")"
  fi
  [ -n "${DC_PLUGIN:-}" ] || { echo "device-check: no TPU/GPU PJRT plugin found (set DC_PLUGIN=PATH)"; exit 1; }
  plugin=(--pjrt_plugin "$DC_PLUGIN")
  for dtype in float32 bfloat16; do
    "$deno" run -A scripts/pjrt_forward.ts --backend pjrt --verbose "${plugin[@]}" --compute_dtype "$dtype" \
      --model_path "$DC_DIR/model" --rows "$DC_DIR/rows.json" --layers $LAYERS --batch_size 3 --repeat 3 \
      --out "$DC_DIR/pjrt_$dtype"
  done
  python3 scripts/device_check_compare.py "$DC_DIR"
  if [ -z "${DC_SKIP_BENCH:-}" ]; then
    # Throughput on a 0.5B-shaped model (4 of its 24 layers, 32k vocab), generated on the device.
    "$deno" eval "import { writeTinyModel } from './lib/model/tiny.ts';
      await writeTinyModel('$DC_DIR/bench_model', { hidden: 896, layers: 4, heads: 14, kvHeads: 2,
        intermediate: 4864, vocab: 32000, tokenizer: false });"
    python3 - "$DC_DIR/bench_rows.json" <<'EOF'
import json, sys
json.dump({"rows": [[(r * 7919 + s * 104729) % 32000 for s in range(1024)] for r in range(32)]}, open(sys.argv[1], "w"))
EOF
    for dp in --data_parallel --no_data_parallel; do
      "$deno" run -A scripts/pjrt_forward.ts --backend pjrt "${plugin[@]}" $dp --model_path "$DC_DIR/bench_model" \
        --rows "$DC_DIR/bench_rows.json" --layers 3 --batch_size 8 --repeat 3 --out "$DC_DIR/bench_out" || true
    done
  fi
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: scripts/device-check.sh prepare|run"; exit 2 ;;
esac
