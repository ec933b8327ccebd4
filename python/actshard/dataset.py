"""Open an actshard (or seed-written) dataset and stream its records as numpy arrays.

A dataset root holds ``metadata.json`` (the index) and the shards it lists, at ``path`` (merged scale-out roots)
or ``filename`` relative to the root. Without metadata.json (a bare directory of seed shards), the
``shard_NNNN.*`` files found are read in name order.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np

from .checksum import check_shard
from .codecs import decompress, shard_kind
from .errors import ActshardError
from .pickle_shard import load_pickle_shard
from .safetensors_shard import iter_safetensors
from .stores import open_store

METADATA_NAME = "metadata.json"
SHARD_FILE_RE = re.compile(r"^shard_\d+\.(pkl|safetensors)(\.gz|\.zst)?$")
_KNOWN_KEYS = {"task_id", "sample_idx", "activation", "shape", "prompt", "layer"}


@dataclass
class Record:
    """One (layer, sample) activation.

    ``activation`` is ``[n_tokens, hidden]`` in the stored dtype for float32/float16 (as ``pickle.load`` gives),
    and float32 for bfloat16 shards (widened exactly: numpy has no bfloat16); ``dtype`` names the stored dtype.
    """

    task_id: str
    sample_idx: int
    layer: int
    activation: np.ndarray
    shape: Tuple[int, ...]
    prompt: str
    dtype: str
    shard: str
    extra: Dict[str, Any] = field(default_factory=dict)


LayerFilter = Union[None, int, Iterable[int]]


class Dataset:
    """A dataset root: its metadata (``None`` for a bare directory of shards) and its shards in order.

    Use :func:`open_dataset` to make one.
    """

    def __init__(self, store, metadata: Optional[Dict[str, Any]], shards: List[Tuple[str, Optional[dict]]],
                 verify: bool = True):
        self.store = store
        self.metadata = metadata
        #: ``(location relative to the root, metadata entry or None)`` per shard, in index order.
        self.shards = shards
        self.verify = verify

    @property
    def url(self) -> str:
        """The dataset root (a path or ``gs://bucket/prefix``)."""
        return self.store.url

    @property
    def status(self) -> Optional[str]:
        """``complete`` | ``in_progress`` (actshard), or None (seed datasets)."""
        return (self.metadata or {}).get("status")

    @property
    def layers(self) -> List[int]:
        """Layers listed by the shards' metadata entries (empty without metadata)."""
        out = set()
        for _, e in self.shards:
            out.update(int(x) for x in (e or {}).get("layers", []))
        return sorted(out)

    def __repr__(self) -> str:
        return f"Dataset({self.url!r}, {len(self.shards)} shards, status={self.status})"

    def __iter__(self) -> Iterator[Record]:
        return self.records()

    def records(self, layer: LayerFilter = None, task_id: Optional[str] = None,
                sample_idx: Optional[int] = None) -> Iterator[Record]:
        """Stream matching records, shard by shard in index order.

        ``layer`` is one layer or several. Shards whose metadata rules them out (layers, sample range) are not
        read. Each shard read is checked against its metadata entry (size, sha256, crc32c) before any of its
        records is yielded, unless the dataset was opened with ``verify=False``.
        """
        layers = None if layer is None else ({int(layer)} if isinstance(layer, (int, np.integer)) else
                                             {int(x) for x in layer})
        for loc, entry in self.shards:
            if entry and not _shard_may_match(entry, layers, sample_idx):
                continue
            for r in self.read_shard(loc, entry):
                if layers is not None and r.layer not in layers:
                    continue
                if task_id is not None and r.task_id != task_id:
                    continue
                if sample_idx is not None and r.sample_idx != sample_idx:
                    continue
                yield r

    def read_shard(self, loc: str, entry: Optional[dict] = None) -> Iterator[Record]:
        """Every record of one shard (location relative to the root), checked against ``entry`` first."""
        where = self.store.where(loc)
        raw = self.store.read(loc)
        if self.verify:
            check_shard(raw, entry, where)
        fmt, codec = shard_kind(loc.rsplit("/", 1)[-1], entry, where)
        payload = decompress(raw, codec, where)
        del raw
        if fmt == "pickle":
            yield from _pickle_records(payload, where, loc)
        else:
            for facts, a, dt in iter_safetensors(payload, where):
                extra = facts.get("extra") if isinstance(facts.get("extra"), dict) else {}
                yield Record(task_id=str(facts.get("task_id", "")), sample_idx=int(facts["sample_idx"]),
                             layer=int(facts["layer"]), activation=a, shape=tuple(a.shape),
                             prompt=str(facts.get("prompt", "")), dtype=dt, shard=loc, extra=extra)


def _shard_may_match(entry: dict, layers, sample_idx) -> bool:
    if layers is not None and isinstance(entry.get("layers"), list) and entry["layers"]:
        if not layers.intersection(int(x) for x in entry["layers"]):
            return False
    lo, hi = entry.get("sample_idx_min"), entry.get("sample_idx_max")
    if sample_idx is not None and isinstance(lo, int) and isinstance(hi, int):
        if not lo <= sample_idx <= hi:
            return False
    return True


def _pickle_records(payload: bytes, where: str, loc: str) -> Iterator[Record]:
    shard = load_pickle_shard(payload, where)
    del payload
    for layer, recs in shard.items():
        for rec in recs:
            if not isinstance(rec, dict) or not isinstance(rec.get("activation"), np.ndarray):
                raise ActshardError(f"layer {layer} holds a record without an activation array", where)
            a = rec["activation"]
            if a.dtype.byteorder == ">":
                a = a.astype(a.dtype.newbyteorder("<"))
            shape = rec.get("shape")
            yield Record(
                task_id=str(rec.get("task_id", "")),
                sample_idx=int(rec.get("sample_idx", -1)),
                layer=int(layer),
                activation=a,
                shape=tuple(int(x) for x in shape) if shape is not None else tuple(a.shape),
                prompt=str(rec.get("prompt", "")),
                dtype=str(a.dtype),
                shard=loc,
                extra={k: v for k, v in rec.items() if k not in _KNOWN_KEYS},
            )


def open_dataset(location: str, storage_options: Optional[Dict[str, Any]] = None,
                 verify: bool = True) -> Dataset:
    """Open a dataset: a local directory or ``gs://bucket/prefix`` (the ``gcs`` extra; ``storage_options`` go
    to ``fsspec.filesystem('gs', ...)``, e.g. ``{"endpoint_url": ..., "token": "anon"}``).

    Reads metadata.json (unknown extra fields are kept and ignored); ``verify=False`` skips the per-shard
    size/checksum checks.
    """
    store = open_store(location, storage_options)
    if store.exists(METADATA_NAME):
        meta = _parse_metadata(store.read(METADATA_NAME), store.where(METADATA_NAME))
        if meta.get("status") == "in_progress":
            warnings.warn(f"{store.where(METADATA_NAME)}: status in_progress: the run has not finished, "
                          "only committed shards are listed", stacklevel=2)
        shards = [(s.get("path") or s["filename"], s) for s in meta["shards"]]
        return Dataset(store, meta, shards, verify)
    names = [n for n in store.list() if SHARD_FILE_RE.match(n)]
    if not names:
        raise ActshardError("not a dataset: no metadata.json and no shard_NNNN files", store.url,
                            "give the directory (or gs:// prefix) a run wrote")
    return Dataset(store, None, [(n, None) for n in names], verify)


#: The metadata.json contract version this reader knows ("MAJOR.MINOR"); a newer major is refused, a newer
#: minor only adds fields (ignored). No field (the seed's files) reads as 1.0. Same rule as lib/shard/metadata.ts.
SCHEMA_VERSION = "1.0"


def _check_schema_version(v: Any, where: str) -> None:
    if v is None:
        return
    m = re.fullmatch(r"(\d+)\.(\d+)", v) if isinstance(v, str) else None
    if not m:
        raise ActshardError(f"metadata.json has a malformed schema_version ({v!r})", where,
                            'it must be "MAJOR.MINOR"; restore metadata.json from a backup or GCS')
    if int(m.group(1)) > int(SCHEMA_VERSION.split(".")[0]):
        raise ActshardError(f"metadata.json has schema_version {v}, newer than this reader knows ({SCHEMA_VERSION})",
                            where, "upgrade the actshard Python package")


def _parse_metadata(raw: bytes, where: str) -> Dict[str, Any]:
    try:
        meta = json.loads(raw)
    except ValueError:
        raise ActshardError("metadata.json is not valid JSON", where, "restore it from GCS or a backup") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("shards"), list):
        raise ActshardError("metadata.json has no shards list", where, "this is not an actshard/seed metadata file")
    _check_schema_version(meta.get("schema_version"), where)
    for s in meta["shards"]:
        if not isinstance(s, dict) or not isinstance(s.get("filename"), str):
            raise ActshardError("metadata.json has a shard entry without a filename", where)
        loc = s.get("path") or s["filename"]
        if loc.startswith("/") or ".." in loc.split("/"):
            raise ActshardError(f"metadata.json points outside the dataset root ({loc!r})", where)
    return meta
