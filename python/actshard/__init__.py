"""actshard: read activation datasets written by actshard (or by the seed script) from Python.

>>> import actshard
>>> ds = actshard.open_dataset("activations_arc")           # or "gs://bucket/prefix"
>>> for r in ds.records(layer=12, task_id="007bbfb7"):
...     r.activation.shape, r.sample_idx, r.prompt[:40]

numpy is the only hard dependency; zstd shards need ``zstandard``, gs:// needs ``gcsfs`` (extras ``zstd``,
``gcs``); :class:`actshard.torch.ActivationRows` (``torch``) serves flat ``[token, hidden]`` rows to a trainer.
"""

from .dataset import Dataset, Record, open_dataset
from .errors import ActshardError, ShardIntegrityError

__all__ = ["open_dataset", "Dataset", "Record", "ActshardError", "ShardIntegrityError"]
__version__ = "0.1.0"
