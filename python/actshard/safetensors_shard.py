"""safetensors shards: ``u64 header length | JSON header | tensor bytes``, one tensor per (layer, sample) named
``layer_<L>/sample_<idx>``, per-tensor facts as JSON strings in ``__metadata__``. Decoded with numpy alone (the
``safetensors`` package is not needed); BF16 is widened to float32 exactly (numpy has no bfloat16)."""

from __future__ import annotations

import json
import re
from typing import Any, Dict, Iterator, Tuple

import numpy as np

from .errors import ActshardError

_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"), "F64": np.dtype("<f8")}
_NAME = re.compile(r"^layer_(\d+)/sample_(\d+)$")


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) → float32, exactly (bfloat16 is the top half of a float32)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def iter_safetensors(payload: bytes, where: str) -> Iterator[Tuple[Dict[str, Any], np.ndarray, str]]:
    """``(facts, array, stored dtype name)`` per tensor, in data order; arrays are views of ``payload`` where
    the dtype allows (F32/F16), float32 copies for BF16."""
    if len(payload) < 8:
        raise ActshardError("file is shorter than a safetensors header", where, "the shard is truncated")
    n = int.from_bytes(payload[:8], "little")
    if n > 100_000_000 or 8 + n > len(payload):
        raise ActshardError(f"safetensors header length {n} is implausible", where, "the shard is corrupt")
    try:
        header = json.loads(payload[8:8 + n])
    except ValueError:
        raise ActshardError("safetensors header is not valid JSON", where, "the shard is corrupt") from None
    meta = header.pop("__metadata__", None) or {}
    start = 8 + n
    buf = memoryview(payload)
    for name, t in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        st = t.get("dtype")
        if st not in _DTYPES:
            raise ActshardError(f"tensor {name} has unsupported dtype {st}", where)
        b, e = t["data_offsets"]
        if start + e > len(payload):
            raise ActshardError(f"tensor {name} runs past the end of the file", where, "the shard is truncated")
        shape = tuple(int(x) for x in t["shape"])
        a = np.frombuffer(buf[start + b:start + e], dtype=_DTYPES[st])
        if a.size != int(np.prod(shape)):
            raise ActshardError(f"tensor {name} has {a.size} values for shape {shape}", where)
        a = a.reshape(shape)
        if st == "BF16":
            a = bf16_to_float32(a)
        try:
            facts = json.loads(meta[name]) if name in meta else {}
        except ValueError:
            facts = {}
        if not isinstance(facts, dict):
            facts = {}
        m = _NAME.match(name)
        facts.setdefault("layer", int(m.group(1)) if m else -1)
        facts.setdefault("sample_idx", int(m.group(2)) if m else -1)
        yield facts, a, {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}[st]
