"""actshard.open_dataset / records(): every format × codec × dtype our CLI writes, filters, integrity checks,
seed-written datasets, merged scale-out roots, and metadata fields the reader does not know."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import shutil
import subprocess

import numpy as np
import pytest

import actshard
from actshard import ActshardError, ShardIntegrityError
from conftest import COMBOS, LAYERS, REPO, REQUIRE, SHARED, extract, require, run_script, shard_files


def to_bf16_float32(a: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 (round to nearest even) → float32, in numpy."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return (bits.astype(np.uint32) << 16).view(np.float32)


def by_key(ds, **f):
    return {(r.layer, r.sample_idx): r for r in ds.records(**f)}


@pytest.fixture(scope="module")
def base_records(base_dataset):
    return by_key(actshard.open_dataset(str(base_dataset)))


def test_base_dataset_has_every_record(base_dataset, base_records):
    meta = json.loads((base_dataset / "metadata.json").read_text())
    assert len(meta["shards"]) >= 3, "the fixture is meant to span several shards"
    assert len(base_records) == meta["total_samples"] == 6 * len(LAYERS)
    assert sorted({k[1] for k in base_records}) == list(range(6))
    for (layer, idx), r in base_records.items():
        assert r.layer == layer and r.sample_idx == idx
        assert r.activation.dtype == np.float32 and r.activation.shape == r.shape
        assert r.shape[1] == 32 and r.shape[0] > 50
        assert r.task_id and r.prompt.startswith("<|im_start|>")
        assert np.isfinite(r.activation).all()
    # batches are padded: prompts differ in length
    assert len({r.shape[0] for r in base_records.values()}) > 1


@pytest.mark.parametrize("fmt,codec,dtype", COMBOS)
def test_every_format_codec_dtype(converted, base_records, fmt, codec, dtype):
    if codec == "zstd":
        require("zstandard")
    root = converted(fmt, codec, dtype)
    files = shard_files(root)
    ext = {"pickle": ".pkl", "safetensors": ".safetensors"}[fmt] + {"gzip": ".gz", "zstd": ".zst", "none": ""}[codec]
    assert files and all(p.name.endswith(ext) for p in files)
    ds = actshard.open_dataset(str(root))
    assert ds.status == "complete" and ds.layers == LAYERS
    got = by_key(ds)
    assert got.keys() == base_records.keys()
    for k, b in base_records.items():
        r = got[k]
        assert (r.task_id, r.sample_idx, r.layer, r.shape, r.prompt) == (b.task_id, b.sample_idx, b.layer,
                                                                        b.shape, b.prompt)
        assert r.dtype == dtype
        if dtype == "float32":
            assert r.activation.dtype == np.float32
            np.testing.assert_array_equal(r.activation, b.activation)
        elif dtype == "float16":
            assert r.activation.dtype == np.float16
            np.testing.assert_array_equal(r.activation, b.activation.astype(np.float16))
        else:  # bfloat16 is returned widened to float32, bit-exact
            assert r.activation.dtype == np.float32
            np.testing.assert_array_equal(r.activation, to_bf16_float32(b.activation))


def test_filters(base_dataset, base_records):
    ds = actshard.open_dataset(str(base_dataset))
    assert set(by_key(ds, layer=1)) == {k for k in base_records if k[0] == 1}
    assert set(by_key(ds, layer=[0, 2])) == {k for k in base_records if k[0] != 1}
    assert set(by_key(ds, sample_idx=4)) == {(l, 4) for l in LAYERS}
    task = base_records[(0, 5)].task_id
    assert set(by_key(ds, task_id=task)) == {k for k, r in base_records.items() if r.task_id == task}
    (only,) = ds.records(layer=2, sample_idx=3)
    np.testing.assert_array_equal(only.activation, base_records[(2, 3)].activation)
    assert list(ds.records(layer=7)) == []


def test_filters_skip_shards_metadata_rules_out(base_dataset, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(base_dataset, root)
    meta = json.loads((root / "metadata.json").read_text())
    last = meta["shards"][-1]
    (root / last["filename"]).unlink()  # a shard we must not need for sample 0
    ds = actshard.open_dataset(str(root))
    assert last["sample_idx_min"] > 0
    assert {r.sample_idx for r in ds.records(sample_idx=0)} == {0}
    with pytest.raises(ActshardError, match="file is missing"):
        list(ds.records())


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst, json.loads((dst / "metadata.json").read_text())


def test_a_flipped_byte_is_caught_before_any_record(base_dataset, tmp_path):
    root, meta = _copy(base_dataset, tmp_path / "ds")
    victim = root / meta["shards"][1]["filename"]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    ds = actshard.open_dataset(str(root))
    seen = []
    with pytest.raises(ShardIntegrityError, match="sha256") as e:
        for r in ds.records():
            seen.append(r.shard)
    assert str(victim) in str(e.value) and "\n" not in str(e.value)
    assert set(seen) == {meta["shards"][0]["filename"]}, "records of the corrupt shard were yielded"


def test_a_truncated_shard_is_caught(base_dataset, tmp_path):
    root, meta = _copy(base_dataset, tmp_path / "ds")
    victim = root / meta["shards"][0]["filename"]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(ShardIntegrityError, match=r"bytes, metadata.json says"):
        next(iter(actshard.open_dataset(str(root)).records()))


def test_crc32c_alone_is_checked(base_dataset, tmp_path):
    """An entry with crc32c but no sha256 (another writer) is still checked."""
    root, meta = _copy(base_dataset, tmp_path / "ds")
    for s in meta["shards"]:
        del s["sha256"]
    meta["shards"][0]["crc32c"] ^= 1
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ShardIntegrityError, match="crc32c"):
        next(iter(actshard.open_dataset(str(root)).records()))
    meta["shards"][0]["crc32c"] ^= 1
    (root / "metadata.json").write_text(json.dumps(meta))
    assert len(list(actshard.open_dataset(str(root)).records())) == 18


def test_in_progress_dataset_warns_and_reads_committed_shards(base_dataset, tmp_path):
    root, meta = _copy(base_dataset, tmp_path / "ds")
    meta["status"] = "in_progress"
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="in_progress"):
        ds = actshard.open_dataset(str(root))
    assert ds.status == "in_progress" and len(list(ds.records())) == 18


def test_unknown_metadata_fields_are_ignored(base_dataset, base_records, tmp_path):
    root, meta = _copy(base_dataset, tmp_path / "ds")
    meta["schema_version"] = "1.9"  # a newer minor version only adds fields
    meta["future_top_level"] = {"x": [1, 2]}
    for s in meta["shards"]:
        s["zstd_frame_checksum"] = True
        s["something_new"] = "yes"
    (root / "metadata.json").write_text(json.dumps(meta))
    ds = actshard.open_dataset(str(root))
    assert ds.metadata["schema_version"] == "1.9"
    assert by_key(ds).keys() == base_records.keys()


@pytest.mark.parametrize("field,value,match", [
    ("codec", "brotli", r'metadata.json says codec "brotli", which this actshard does not know \(it knows gzip, zstd, none\)'),
    ("format", "arrow", r'metadata.json says format "arrow", which this actshard does not know'),
    ("format", "safetensors", r"file name says pickle/gzip but metadata.json says safetensors/gzip"),
    ("codec", "zstd", r"file name says pickle/gzip but metadata.json says pickle/zstd"),
])
def test_shards_are_decoded_by_their_metadata_entry(base_dataset, tmp_path, field, value, match):
    # metadata.json is the index: its entry's format/codec pick the decoder (the file name only for seed
    # entries), as in the TypeScript reader; what this reader does not know, or a name that disagrees, is one line.
    root, meta = _copy(base_dataset, tmp_path / "ds")
    assert all(s["format"] == "pickle" and s["codec"] == "gzip" for s in meta["shards"])
    meta["shards"][0][field] = value
    (root / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ActshardError, match=match) as e:
        list(actshard.open_dataset(str(root)).records())
    assert "\n" not in str(e.value) and meta["shards"][0]["filename"] in str(e.value)


@pytest.mark.parametrize("bad,match", [
    (b"{not json", "not valid JSON"),
    (b'{"total_shards": 1}', "no shards list"),
    (b'{"shards": [{"filename": "../x"}]}', "outside the dataset root"),
    (b'{"schema_version": "2.0", "shards": []}', "schema_version 2.0, newer than this reader knows"),
    (b'{"schema_version": 99, "shards": []}', "malformed schema_version"),
])
def test_bad_metadata_is_one_line(tmp_path, bad, match):
    (tmp_path / "metadata.json").write_bytes(bad)
    with pytest.raises(ActshardError, match=match) as e:
        actshard.open_dataset(str(tmp_path))
    assert "\n" not in str(e.value)


def test_not_a_dataset(tmp_path):
    with pytest.raises(ActshardError, match="not a dataset"):
        actshard.open_dataset(str(tmp_path))
    with pytest.raises(ActshardError, match="not found"):
        actshard.open_dataset(str(tmp_path / "nope"))


def test_restricted_unpickler_refuses_other_globals(tmp_path):
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with gzip.open(tmp_path / "shard_0001.pkl.gz", "wb") as f:
        pickle.dump({0: [{"activation": Evil()}]}, f)
    with pytest.raises(ActshardError, match=r'refusing to unpickle global "(posix|os)\.system"'):
        list(actshard.open_dataset(str(tmp_path)).records())
    assert not (tmp_path / "pwned").exists()


def test_pickles_written_by_numpy_itself(tmp_path):
    """Shards pickled by Python/numpy (any protocol) read back, e.g. ones a user wrote with the seed."""
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for proto in (2, 4, 5):
        d = tmp_path / f"p{proto}"
        d.mkdir()
        with open(d / "shard_0001.pkl", "wb") as f:
            pickle.dump({3: [{"task_id": "t", "sample_idx": 9, "activation": a, "shape": a.shape,
                              "prompt": "p", "note": 1}]}, f, protocol=proto)
        (r,) = actshard.open_dataset(str(d)).records()
        np.testing.assert_array_equal(r.activation, a)
        assert (r.layer, r.sample_idx, r.task_id, r.shape, r.extra) == (3, 9, "t", (3, 4), {"note": 1})


seed_shard = SHARED / "data" / "seed" / "seed_written_shard_0001.pkl.gz"
needs_seed = pytest.mark.skipif(not seed_shard.exists(), reason=f"reference data absent ({seed_shard})")


@needs_seed
def test_seed_written_shard_bare_directory(tmp_path):
    shutil.copy(seed_shard, tmp_path / "shard_0001.pkl.gz")
    ds = actshard.open_dataset(str(tmp_path))
    assert ds.metadata is None and ds.status is None
    recs = list(ds.records())
    assert [(r.layer, r.sample_idx) for r in recs] == [(10, 0), (11, 0), (12, 0)]
    for r in recs:
        assert r.activation.dtype == np.float32 and r.activation.shape == r.shape == (100, 896)
        assert r.task_id == "" and "text_preview" in r.extra
    # the same arrays as the seed's own snippet gives
    with gzip.open(seed_shard, "rb") as f:
        raw = pickle.load(f)
    for r in recs:
        np.testing.assert_array_equal(r.activation, raw[r.layer][0]["activation"])


@needs_seed
def test_seed_written_metadata(tmp_path):
    """The seed's metadata.json (no checksums) opens; its file_size_mb is checked; a listed shard that is not
    on disk is one line naming it."""
    shutil.copy(seed_shard, tmp_path / "shard_0001.pkl.gz")
    shutil.copy(seed_shard.with_name("seed_written_metadata.json"), tmp_path / "metadata.json")
    ds = actshard.open_dataset(str(tmp_path))
    assert ds.metadata["total_shards"] == 5 and ds.layers == [10, 11, 12]
    it = ds.records()
    assert [next(it).layer for _ in range(3)] == [10, 11, 12]
    with pytest.raises(ActshardError, match="shard_0002.pkl.gz") as e:
        next(it)
    assert "file is missing" in str(e.value)
    (tmp_path / "shard_0001.pkl.gz").write_bytes(seed_shard.read_bytes()[:-1])
    with pytest.raises(ShardIntegrityError, match="MiB"):
        next(iter(actshard.open_dataset(str(tmp_path)).records()))


def test_merged_scale_out_root(work, tiny_model, tasks_file, base_records):
    """2 workers + `shard --merge OUT --output OUT`: the merged root reads as the single run's records."""
    out = work / "scaleout"
    for i in range(2):
        extract(tiny_model, tasks_file, out, "--predictions_per_task", 2, "--batch_size", 3,
                "--shard_size_gb", "0.00015", "--num_workers", 2, "--worker_index", i)
    run_script("shard.ts", "--merge", out, "--output", out)
    ds = actshard.open_dataset(str(out))
    assert all(loc.startswith("worker-0000") for loc, _ in ds.shards)
    got = by_key(ds)
    assert got.keys() == base_records.keys()
    for k, b in base_records.items():
        np.testing.assert_array_equal(got[k].activation, b.activation)
        assert got[k].task_id == b.task_id
    # a worker dir alone is a dataset too
    w0 = actshard.open_dataset(str(out / "worker-00000-of-00002"))
    assert {k[1] for k in by_key(w0)} < {k[1] for k in got}


NUMPY1_READ = r"""
import hashlib, json, sys
import numpy as np
import actshard
out = {}
for root in sys.argv[1:]:
    out[root] = sorted([r.layer, r.sample_idx, r.task_id, list(r.shape), r.dtype,
                        hashlib.sha256(np.ascontiguousarray(r.activation).tobytes()).hexdigest()]
                       for r in actshard.open_dataset(root).records())
print(json.dumps({"numpy": np.__version__, "modules": sorted(m for m in sys.modules if m.split(".")[0] in
      ("zstandard", "safetensors", "gcsfs", "fsspec", "torch", "google_crc32c")), "records": out}))
"""


def test_reader_needs_only_numpy_and_runs_under_numpy1(converted, base_dataset):
    """Debian's /usr/bin/python3 (numpy 1.x, no extras installed) reads gzip/none pickle and safetensors."""
    py = "/usr/bin/python3"
    if not os.path.exists(py):
        (pytest.fail if REQUIRE else pytest.skip)(f"{py} not found")
    roots = [converted(*c) for c in [("pickle", "gzip", "float32"), ("pickle", "none", "float16"),
                                     ("safetensors", "gzip", "bfloat16"), ("safetensors", "none", "float16")]]
    p = subprocess.run([py, "-c", NUMPY1_READ, *map(str, roots)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO / "python")})
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout)
    assert res["numpy"].startswith("1."), res["numpy"]
    assert res["modules"] == [], f"imported optional modules: {res['modules']}"
    for root in roots:
        want = sorted([r.layer, r.sample_idx, r.task_id, list(r.shape), r.dtype,
                       hashlib.sha256(np.ascontiguousarray(r.activation).tobytes()).hexdigest()]
                      for r in actshard.open_dataset(str(root)).records())
        assert res["records"][str(root)] == want
