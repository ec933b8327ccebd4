"""GCS through independent clients, against our emulator (`scripts/gcs_emulator.ts`, started here on a free port
with the bucket created up front and unknown buckets 404, as on GCS), after `deno task upload` / `extract
--upload_to_gcs`: the old guide's fsspec snippet, gcsfs listing (ls, du, glob) and range reads, the
google-cloud-storage client downloading every shard and metadata.json (bytes, crc32c and md5 equal to the local
files; listing with small pages), and actshard.open_dataset("gs://…") reading what we wrote."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import actshard
from conftest import deno_path, REPO, extract, require, run_script

BUCKET = "actshard-py"


class Emulator:
    def __init__(self, state: Path):
        deno = deno_path()
        if deno is None:
            pytest.skip("deno not found")
        self.proc = subprocess.Popen(
            [deno, "run", "-A", str(REPO / "scripts" / "gcs_emulator.ts"), "--port", "0", "--dir", str(state),
             "--bucket", BUCKET, "--no_auto_create"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            raise RuntimeError(f"emulator did not start: {line}{self.proc.stderr.read()}")
        self.url = line.split("listening on ", 1)[1].split()[0].rstrip("/")

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = Emulator(tmp_path_factory.mktemp("gcs_state"))
    yield emu
    emu.close()


@pytest.fixture(scope="module")
def env(emulator):
    return {"STORAGE_EMULATOR_HOST": emulator.url}


@pytest.fixture(scope="module")
def uploaded(converted, env):
    """prefix → local dataset dir, uploaded with `deno task upload`."""
    out = {}
    for prefix, combo in {"pkl": ("pickle", "gzip", "float32"), "st": ("safetensors", "none", "bfloat16"),
                          "stz": ("safetensors", "zstd", "float16")}.items():
        local = converted(*combo)
        run_script("upload.ts", "--output_dir", local, "--gcs_bucket", BUCKET, "--gcs_prefix", f"runs/{prefix}",
                   env=env)
        out[prefix] = local
    return out


def local_objects(local: Path):
    meta = json.loads((local / "metadata.json").read_text())
    names = [s.get("path") or s["filename"] for s in meta["shards"]] + ["metadata.json"]
    return {n: (local / n).read_bytes() for n in names}


@pytest.fixture
def gcs_client(emulator):
    storage = require("google.cloud.storage")
    from google.auth.credentials import AnonymousCredentials
    return storage.Client(project="test", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": emulator.url})


def test_old_guide_fsspec_snippet(uploaded, env):
    """The seed guide's snippet verbatim (fsspec.filesystem('gs') → fs.open → gzip.open → pickle.load), with
    STORAGE_EMULATOR_HOST pointing gcsfs at the emulator; the records equal the local shard's."""
    require("gcsfs")
    code = f"""
import pickle
import gzip
import fsspec

fs = fsspec.filesystem('gs')
with fs.open('{BUCKET}/runs/pkl/shard_0001.pkl.gz', 'rb') as f:
    with gzip.open(f, 'rb') as gz:
        shard_data = pickle.load(gz)

import hashlib, json
print(json.dumps({{str(l): [[a['task_id'], a['sample_idx'], hashlib.sha256(a['activation'].tobytes()).hexdigest()]
                          for a in acts] for l, acts in shard_data.items()}}))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, **env}, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout)
    ds = actshard.open_dataset(str(uploaded["pkl"]))
    want = {}
    for r in ds.read_shard("shard_0001.pkl.gz"):
        want.setdefault(str(r.layer), []).append([r.task_id, r.sample_idx,
                                                  hashlib.sha256(r.activation.tobytes()).hexdigest()])
    assert got == want and got


@pytest.fixture
def gcsfs_fs(emulator):
    gcsfs = require("gcsfs")
    return gcsfs.GCSFileSystem(endpoint_url=emulator.url, token="anon", skip_instance_cache=True)


@pytest.mark.parametrize("prefix", ["pkl", "st", "stz"])
def test_gcsfs_ls_du_glob_and_range_reads(uploaded, gcsfs_fs, prefix):
    fs, local = gcsfs_fs, uploaded[prefix]
    objs = local_objects(local)
    root = f"{BUCKET}/runs/{prefix}"
    listed = {p.rsplit("/", 1)[-1]: info["size"] for p, info in
              ((i["name"], i) for i in fs.ls(root, detail=True))}
    assert listed == {n: len(b) for n, b in objs.items()}
    assert fs.du(root) == sum(len(b) for b in objs.values())
    shards = sorted(n for n in objs if n.startswith("shard_"))
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.glob(f"{root}/shard_*")) == shards
    assert fs.glob(f"{BUCKET}/runs/*/metadata.json") == [f"{BUCKET}/runs/{p}/metadata.json" for p in
                                                          sorted(uploaded)]
    require("google_crc32c")
    for n in shards:
        data = objs[n]
        info = fs.info(f"{root}/{n}")
        assert info["crc32c"] == crc32c_b64(data)
        assert info["md5Hash"] == base64.b64encode(hashlib.md5(data).digest()).decode()
        assert fs.cat_file(f"{root}/{n}") == data
        mid = len(data) // 3
        assert fs.cat_file(f"{root}/{n}", start=mid, end=mid + 1000) == data[mid:mid + 1000]
        assert fs.cat_file(f"{root}/{n}", start=len(data) - 8) == data[-8:]
        with fs.open(f"{root}/{n}", "rb", block_size=2 ** 16) as f:  # buffered ranged reads
            f.seek(5)
            assert f.read(100) == data[5:105]


def crc32c_b64(data: bytes) -> str:
    import google_crc32c
    return base64.b64encode(google_crc32c.value(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("prefix", ["pkl", "st", "stz"])
def test_google_cloud_storage_client_downloads_every_object(uploaded, gcs_client, prefix, caplog):
    require("google_crc32c")
    local = uploaded[prefix]
    objs = local_objects(local)
    meta = json.loads(objs["metadata.json"])
    blobs = list(gcs_client.list_blobs(BUCKET, prefix=f"runs/{prefix}/"))
    assert sorted(b.name for b in blobs) == sorted(f"runs/{prefix}/{n}" for n in objs)
    by_name = {s["filename"]: s for s in meta["shards"]}
    for b in blobs:
        n = b.name.rsplit("/", 1)[-1]
        data = objs[n]
        assert b.size == len(data)
        assert b.crc32c == crc32c_b64(data), n
        assert b.md5_hash == base64.b64encode(hashlib.md5(data).digest()).decode(), n
        assert b.download_as_bytes() == data
        with caplog.at_level(logging.INFO):  # the client validates against x-goog-hash; it logs when it can't
            assert b.download_as_bytes(checksum="crc32c") == data
            assert b.download_as_bytes(checksum="md5") == data
        assert not [r for r in caplog.records if "checksum" in r.getMessage().lower()]
        assert b.download_as_bytes(start=10, end=99) == data[10:100]  # `end` is inclusive here
        if n in by_name:  # metadata.json's checksums are what GCS reports
            e = by_name[n]
            assert e["crc32c"] == int.from_bytes(base64.b64decode(b.crc32c), "big")
            assert str(b.generation) == e["gcs_generation"]
    # the uploaded metadata.json lists the same shards, each at its gs:// path, verified
    for s in meta["shards"]:
        assert s["gcs_path"] == f"gs://{BUCKET}/runs/{prefix}/{s['filename']}" and s["gcs_verified"] is True


def test_google_cloud_storage_listing_pages(uploaded, gcs_client):
    names = sorted(b.name for b in gcs_client.list_blobs(BUCKET, prefix="runs/"))
    it = gcs_client.list_blobs(BUCKET, prefix="runs/", page_size=2)
    paged, pages = [], 0
    for page in it.pages:
        pages += 1
        items = [b.name for b in page]
        assert len(items) <= 2
        paged += items
    assert paged == names and pages == (len(names) + 1) // 2
    # delimiter listing: one prefix per run
    it = gcs_client.list_blobs(BUCKET, prefix="runs/", delimiter="/")
    list(it)
    assert sorted(it.prefixes) == [f"runs/{p}/" for p in sorted(uploaded)]


def test_unknown_bucket_is_404(gcs_client):
    from google.api_core.exceptions import NotFound
    with pytest.raises(NotFound):
        list(gcs_client.list_blobs("no-such-bucket-here"))


@pytest.mark.parametrize("prefix", ["pkl", "st", "stz"])
def test_actshard_reader_on_gs(uploaded, emulator, prefix):
    require("gcsfs")
    if prefix == "stz":
        require("zstandard")
    opts = {"endpoint_url": emulator.url, "token": "anon"}
    remote = actshard.open_dataset(f"gs://{BUCKET}/runs/{prefix}", storage_options=opts)
    local = actshard.open_dataset(str(uploaded[prefix]))
    assert remote.metadata["shards"] == json.loads((uploaded[prefix] / "metadata.json").read_text())["shards"]
    got = {(r.layer, r.sample_idx): r for r in remote.records()}
    want = {(r.layer, r.sample_idx): r for r in local.records()}
    assert got.keys() == want.keys() and got
    for k, r in want.items():
        np.testing.assert_array_equal(got[k].activation, r.activation)
        assert got[k].task_id == r.task_id and got[k].prompt == r.prompt
    (one,) = remote.records(layer=1, sample_idx=2)
    np.testing.assert_array_equal(one.activation, want[(1, 2)].activation)


def test_merged_root_on_gs(work, tiny_model, tasks_file, emulator, env, gcsfs_fs):
    """2 workers uploading to gs://, `shard --merge gs://… --output gs://…`, read by the Python reader and
    listed by gcsfs."""
    require("gcsfs")
    out = work / "gcs_scaleout"
    for i in range(2):
        extract(tiny_model, tasks_file, out, "--predictions_per_task", 2, "--batch_size", 3,
                "--shard_size_gb", "0.00015", "--num_workers", 2, "--worker_index", i, "--upload_to_gcs",
                "--gcs_bucket", BUCKET, "--gcs_prefix", "merged", env=env)
    run_script("shard.ts", "--merge", f"gs://{BUCKET}/merged", "--output", f"gs://{BUCKET}/merged", env=env)
    ds = actshard.open_dataset(f"gs://{BUCKET}/merged", storage_options={"endpoint_url": emulator.url,
                                                                          "token": "anon"})
    assert all(loc.startswith("worker-0000") for loc, _ in ds.shards)
    recs = list(ds.records())
    assert sorted({r.sample_idx for r in recs}) == list(range(6)) and len(recs) == 18
    workers = sorted(p.rsplit("/", 1)[-1] for p in gcsfs_fs.glob(f"{BUCKET}/merged/worker-*"))
    assert workers == ["worker-00000-of-00002", "worker-00001-of-00002"]
    for loc, e in ds.shards:
        assert gcsfs_fs.info(f"{BUCKET}/merged/{loc}")["size"] == e["bytes"]


def test_corrupt_object_on_gs_is_caught(uploaded, gcs_client, emulator):
    """A shard whose bytes on GCS differ from metadata.json: the reader stops before yielding its records."""
    require("gcsfs")
    objs = local_objects(uploaded["pkl"])
    bucket = gcs_client.bucket(BUCKET)
    victim = sorted(n for n in objs if n.startswith("shard_"))[1]
    for n, data in objs.items():
        if n == victim:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        bucket.blob(f"corrupt/{n}").upload_from_string(data)
    ds = actshard.open_dataset(f"gs://{BUCKET}/corrupt", storage_options={"endpoint_url": emulator.url,
                                                                           "token": "anon"})
    shards = []
    with pytest.raises(actshard.ShardIntegrityError, match="sha256") as e:
        for r in ds.records():
            shards.append(r.shard)
    assert f"gs://{BUCKET}/corrupt/{victim}" in str(e.value)
    assert victim not in shards and shards
