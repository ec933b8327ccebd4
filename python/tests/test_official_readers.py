"""Our shards read by the official libraries — whatever they reject is a defect of ours:
safetensors.safe_open (F32, F16, BF16), python-zstandard's stream reader (default: one frame), the seed's
pickle.gz snippet under numpy 1.x (Debian's /usr/bin/python3) and 2.x, and `read --out` .npy with numpy.load.
Each is compared value for value with actshard's own reader."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import actshard
from conftest import REQUIRE, require, run_script, shard_files


def records_of(root):
    return {(r.layer, r.sample_idx): r for r in actshard.open_dataset(str(root)).records()}


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("codec", ["none", "gzip", "zstd"])
def test_safetensors_safe_open(converted, tmp_path, codec, dtype):
    safetensors = require("safetensors")
    if codec == "zstd":
        require("zstandard")
    torch = require("torch") if dtype == "bfloat16" else None  # safetensors' numpy API has no bfloat16
    root = converted("safetensors", codec, dtype)
    ours = records_of(root)
    seen = set()
    for path in shard_files(root):
        raw = path.read_bytes()
        if codec != "none":  # safe_open wants a file of the uncompressed payload
            from actshard.codecs import decompress
            plain = tmp_path / path.name.rsplit(".", 1)[0]
            plain.write_bytes(decompress(raw, codec, str(path)))
        else:
            plain = path
        with safetensors.safe_open(str(plain), framework="pt" if torch else "np") as f:
            meta = f.metadata()
            assert meta["format"] == "actshard"
            for name in f.keys():
                facts = json.loads(meta[name])
                a = f.get_tensor(name)
                if torch is not None:
                    assert a.dtype == torch.bfloat16
                    a = a.to(torch.float32).numpy()
                else:
                    assert a.dtype == {"float32": np.float32, "float16": np.float16}[dtype]
                r = ours[(facts["layer"], facts["sample_idx"])]
                assert name == f"layer_{r.layer}/sample_{r.sample_idx}"
                assert facts["task_id"] == r.task_id and facts["prompt"] == r.prompt
                np.testing.assert_array_equal(a, r.activation)
                seen.add((r.layer, r.sample_idx))
    assert seen == set(ours)


@pytest.mark.parametrize("fmt", ["pickle", "safetensors"])
def test_zstd_stream_reader_reads_one_frame(converted, fmt):
    """python-zstandard's stream_reader stops after the first frame by default: all data must be in it."""
    zstandard = require("zstandard")
    root = converted(fmt, "zstd", "float32")
    plain = converted(fmt, "none", "float32")
    files, plain_files = shard_files(root), shard_files(plain)
    assert len(files) == len(plain_files)
    for zf, pf in zip(files, plain_files):
        with open(zf, "rb") as f:
            params = zstandard.get_frame_parameters(f.read(18))
            f.seek(0)
            with zstandard.ZstdDecompressor().stream_reader(f) as r:
                one_frame = r.read()
        assert params.content_size in (zstandard.CONTENTSIZE_UNKNOWN, len(one_frame))
        assert one_frame == pf.read_bytes(), f"{zf.name}: the first frame is not the whole payload"


SEED_SNIPPET = r"""
import gzip, pickle, hashlib, json, sys
import numpy as np
out = []
for path in sys.argv[1:]:
    with gzip.open(path, 'rb') as f:
        shard_data = pickle.load(f)
    for layer_idx, acts in shard_data.items():
        for act in acts:
            a = act['activation']
            assert isinstance(a, np.ndarray)
            out.append([layer_idx, act['task_id'], act['sample_idx'], list(act['shape']), str(a.dtype),
                        list(a.shape), hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()])
print(json.dumps({"numpy": np.__version__, "records": out}))
"""


@pytest.mark.parametrize("python", [sys.executable, "/usr/bin/python3"], ids=["numpy2", "numpy1"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_seed_snippet_reads_pickle_gz(converted, python, dtype):
    if not os.path.exists(python):
        (pytest.fail if REQUIRE else pytest.skip)(f"{python} not found")
    root = converted("pickle", "gzip", dtype)
    p = subprocess.run([python, "-W", "error", "-c", SEED_SNIPPET, *map(str, shard_files(root))],
                       capture_output=True, text=True)
    if p.returncode != 0 and "No module named 'numpy'" in p.stderr and not REQUIRE:
        pytest.skip(f"{python} has no numpy")
    assert p.returncode == 0, p.stderr  # -W error: no DeprecationWarning either
    res = json.loads(p.stdout)
    major = int(res["numpy"].split(".")[0])
    assert major == (1 if python == "/usr/bin/python3" else 2), res["numpy"]
    ours = records_of(root)
    assert len(res["records"]) == len(ours)
    for layer, task, idx, shape, dt, ashape, sha in res["records"]:
        r = ours[(layer, idx)]
        assert (task, tuple(shape), tuple(ashape), dt) == (r.task_id, r.shape, r.activation.shape, dtype)
        assert sha == hashlib.sha256(np.ascontiguousarray(r.activation).tobytes()).hexdigest()


@pytest.mark.parametrize("fmt,codec,dtype", [("pickle", "gzip", "float32"), ("safetensors", "none", "bfloat16"),
                                             ("safetensors", "zstd", "float16")])
def test_read_out_npy_loads_with_numpy(converted, tmp_path, fmt, codec, dtype):
    if codec == "zstd":
        require("zstandard")
    root = converted(fmt, codec, dtype)
    ours = records_of(root)
    for layer, idx in [(0, 0), (2, 5), (1, 3)]:
        npy = tmp_path / f"{fmt}_{codec}_{dtype}_{layer}_{idx}.npy"
        run_script("read.ts", root, "--layer", layer, "--sample_idx", idx, "--out", npy)
        a = np.load(npy, allow_pickle=False)
        r = ours[(layer, idx)]
        assert a.dtype == np.float32 and a.shape == r.shape
        np.testing.assert_array_equal(a, r.activation.astype(np.float32))
        # and the header is what numpy itself writes for such an array
        buf = io.BytesIO()
        np.save(buf, a)
        assert npy.read_bytes() == buf.getvalue()
