"""actshard.torch_rows.ActivationRows: every [token, hidden] row of a layer exactly once per epoch, in a seeded
order drawn through the shuffle buffer; DataLoader workers and ranks split the shards without overlap."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import actshard
from conftest import require

torch = require("torch")
from actshard.torch_rows import ActivationRows  # noqa: E402


def row_keys(rows) -> list:
    return [hashlib.sha1(np.ascontiguousarray(r, dtype=np.float32).tobytes()).hexdigest() for r in rows]


@pytest.fixture(scope="module")
def layer1_rows(base_dataset):
    recs = list(actshard.open_dataset(str(base_dataset)).records(layer=1))
    return np.concatenate([r.activation for r in recs]), recs


def collect(ds) -> np.ndarray:
    out = [t.numpy() for t in ds]
    if not out:
        return np.empty((0, 32), dtype=np.float32)
    return np.stack(out) if out and out[0].ndim == 1 else np.concatenate(out)


def test_unshuffled_rows_are_the_records_in_order(base_dataset, layer1_rows):
    want, _ = layer1_rows
    got = collect(ActivationRows(str(base_dataset), layer=1))
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_shuffled_rows_are_a_seeded_permutation(base_dataset, layer1_rows):
    want, recs = layer1_rows
    a = collect(ActivationRows(str(base_dataset), layer=1, shuffle_buffer=1200, seed=1))
    b = collect(ActivationRows(str(base_dataset), layer=1, shuffle_buffer=1200, seed=1))
    c = collect(ActivationRows(str(base_dataset), layer=1, shuffle_buffer=1200, seed=2))
    assert sorted(row_keys(a)) == sorted(row_keys(want)), "every row exactly once"
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, want)
    # the buffer mixes prompts: the first 100 rows served come from more than one sample
    owner = {}
    for r in recs:
        for k in row_keys(r.activation):
            owner[k] = r.sample_idx
    assert len({owner[k] for k in row_keys(a[:100])}) > 1
    # a new epoch, a new order, the same rows
    e = ActivationRows(str(base_dataset), layer=1, shuffle_buffer=1200, seed=1)
    e.set_epoch(1)
    d = collect(e)
    assert sorted(row_keys(d)) == sorted(row_keys(want)) and not np.array_equal(a, d)


def test_batches(base_dataset, layer1_rows):
    want, _ = layer1_rows
    batches = list(ActivationRows(str(base_dataset), layer=1, batch_size=256, shuffle_buffer=1000, seed=0))
    assert all(b.shape == (256, want.shape[1]) for b in batches[:-1])
    assert 0 < batches[-1].shape[0] <= 256
    assert sum(len(b) for b in batches) == len(want)
    dropped = list(ActivationRows(str(base_dataset), layer=1, batch_size=256, drop_last=True))
    assert len(dropped) == len(want) // 256
    np.testing.assert_array_equal(torch.cat(dropped).numpy(), want[:len(dropped) * 256])


def test_dataloader_workers_and_ranks_split_the_shards(base_dataset, layer1_rows):
    want, _ = layer1_rows
    rows = ActivationRows(str(base_dataset), layer=1, shuffle_buffer=200, seed=3, batch_size=64)
    loader = torch.utils.data.DataLoader(rows, batch_size=None, num_workers=2)
    got = torch.cat(list(loader)).numpy()
    assert sorted(row_keys(got)) == sorted(row_keys(want))
    parts = [collect(ActivationRows(str(base_dataset), layer=1, rank=r, world_size=3)) for r in range(3)]
    assert sum(1 for p in parts if len(p)) >= 2, "the ranks share the work"
    assert sorted(row_keys(np.concatenate(parts))) == sorted(row_keys(want))


def test_bfloat16_and_task_filter(converted, base_dataset, layer1_rows):
    root = converted("safetensors", "none", "bfloat16")
    got = collect(ActivationRows(str(root), layer=1))
    want, recs = layer1_rows
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-2, atol=1e-2)
    task = recs[0].task_id
    only = collect(ActivationRows(str(base_dataset), layer=1, task_id=task))
    assert len(only) == sum(r.shape[0] for r in recs if r.task_id == task) < len(want)
