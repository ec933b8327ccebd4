"""A PyTorch ``IterableDataset`` over flat ``[token, hidden]`` rows of one layer — what a sparse-autoencoder
trainer consumes — with a seeded shuffle buffer (needs ``torch``, the ``torch`` extra).

>>> from actshard.torch_rows import ActivationRows
>>> rows = ActivationRows("gs://bucket/arc_v1", layer=12, shuffle_buffer=65536, seed=0, batch_size=4096)
>>> for batch in torch.utils.data.DataLoader(rows, batch_size=None, num_workers=4):
...     loss = sae(batch)                                  # batch: float32 [4096, hidden]

Shards are split between DataLoader workers (and between ``world_size`` ranks) by index, so every row is
served exactly once per epoch. The shuffle buffer holds ``shuffle_buffer`` rows; each row served is drawn
uniformly from it, and the shard order is permuted too. The order is a pure function of ``seed``, the epoch
(:meth:`ActivationRows.set_epoch`), the rank and the worker.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from .dataset import Dataset, open_dataset


class ActivationRows(IterableDataset):
    """Rows (one per token) of ``layer``'s activations, as float32 tensors ``[hidden]`` — or ``[batch_size,
    hidden]`` batches when ``batch_size`` is given (the last one may be short unless ``drop_last``)."""

    def __init__(self, dataset: Union[str, Dataset], layer: int, *, task_id: Optional[str] = None,
                 shuffle_buffer: int = 0, seed: int = 0, batch_size: Optional[int] = None,
                 drop_last: bool = False, rank: int = 0, world_size: int = 1,
                 storage_options: Optional[Dict[str, Any]] = None, verify: bool = True):
        super().__init__()
        if shuffle_buffer < 0 or (batch_size is not None and batch_size < 1):
            raise ValueError("shuffle_buffer must be >= 0 and batch_size >= 1")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, {world_size})")
        self.location = dataset.url if isinstance(dataset, Dataset) else dataset
        self._dataset = dataset if isinstance(dataset, Dataset) else None
        self.storage_options, self.verify = storage_options, verify
        self.layer, self.task_id = int(layer), task_id
        self.shuffle_buffer, self.seed, self.epoch = int(shuffle_buffer), int(seed), 0
        self.batch_size, self.drop_last = batch_size, drop_last
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        """A different (still seeded) order for each epoch."""
        self.epoch = int(epoch)

    def _open(self) -> Dataset:
        if self._dataset is None:  # opened lazily: in each DataLoader worker, not pickled into it
            self._dataset = open_dataset(self.location, self.storage_options, self.verify)
        return self._dataset

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_dataset"] = None
        return state

    def _my_shards(self, ds: Dataset, rng: Optional[np.random.Generator]) -> List[int]:
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info else (1, 0)
        order = list(range(len(ds.shards)))
        if rng is not None:  # the same permutation in every worker: derived from seed and epoch only
            order = list(np.random.default_rng([self.seed, self.epoch]).permutation(order))
        return order[self.rank * n_workers + worker::self.world_size * n_workers]

    def _rows(self) -> Iterator[np.ndarray]:
        ds = self._open()
        info = get_worker_info()
        worker = info.id if info else 0
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, worker]) if self.shuffle_buffer else None
        layers = {self.layer}
        buf: Optional[np.ndarray] = None
        filled = 0
        for i in self._my_shards(ds, rng):
            loc, entry = ds.shards[i]
            if entry and isinstance(entry.get("layers"), list) and entry["layers"] and \
                    self.layer not in entry["layers"]:
                continue
            for r in ds.read_shard(loc, entry):
                if r.layer not in layers or (self.task_id is not None and r.task_id != self.task_id):
                    continue
                x = np.array(r.activation, dtype=np.float32).reshape(r.shape[0], -1)  # a writable copy
                if rng is None:
                    yield x
                    continue
                if buf is None:
                    buf = np.empty((self.shuffle_buffer, x.shape[1]), dtype=np.float32)
                take = min(self.shuffle_buffer - filled, len(x))
                buf[filled:filled + take] = x[:take]
                filled += take
                x = x[take:]
                while len(x):  # buffer full: each incoming row replaces a uniformly drawn row, which is served
                    m = min(len(x), self.shuffle_buffer)
                    idx = rng.choice(self.shuffle_buffer, size=m, replace=False)
                    out = buf[idx].copy()
                    buf[idx] = x[:m]
                    x = x[m:]
                    yield out
        if buf is not None and filled:
            yield buf[rng.permutation(filled)]

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.batch_size is None:
            for block in self._rows():
                for row in torch.from_numpy(np.ascontiguousarray(block)):
                    yield row
            return
        pending: List[np.ndarray] = []
        have = 0
        for block in self._rows():
            pending.append(block)
            have += len(block)
            while have >= self.batch_size:
                allrows = np.concatenate(pending) if len(pending) > 1 else pending[0]
                yield torch.from_numpy(np.ascontiguousarray(allrows[:self.batch_size]))
                rest = allrows[self.batch_size:]
                pending, have = ([rest] if len(rest) else []), len(rest)
        if have and not self.drop_last:
            yield torch.from_numpy(np.ascontiguousarray(np.concatenate(pending)))
