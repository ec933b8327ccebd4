"""Pickle shards (``{layer: [record dict]}``, the seed's layout) through a restricted unpickler: only numpy's
array-reconstruction globals are resolved, any other global is refused before anything is built, so opening a
shard from an untrusted bucket cannot run code. Works under numpy 1.x and 2.x, for pickles written by either
(``numpy.core`` / ``numpy._core`` module paths)."""

from __future__ import annotations

import codecs
import io
import pickle
from typing import Any, Dict

import numpy as np

from .errors import ActshardError

# numpy's own reconstruct function, whatever module numpy keeps it in (numpy.core in 1.x, numpy._core in 2.x).
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]


def _frombuffer(buf, dtype, shape, order):
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order)


def _scalar(dtype, data):
    return np.frombuffer(data, dtype=dtype)[0]


_ALLOWED = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _RECONSTRUCT
    _ALLOWED[(_mod, "scalar")] = _scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("_codecs", "encode")] = codecs.encode


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, f, where: str):
        super().__init__(f)
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise ActshardError(f'refusing to unpickle global "{module}.{name}"', self._where,
                                "only numpy arrays are allowed in shards; this file is not an activation shard")
        return fn


def load_pickle_shard(payload: bytes, where: str) -> Dict[int, list]:
    """The ``{layer: [record dict]}`` of an uncompressed pickle payload."""
    try:
        obj = _RestrictedUnpickler(io.BytesIO(payload), where).load()
    except ActshardError:
        raise
    except Exception as e:
        raise ActshardError(f"pickle data is corrupt ({type(e).__name__}: {e})", where,
                            "the shard is damaged: re-download or re-extract it") from None
    if not isinstance(obj, dict):
        raise ActshardError(f"pickle shard holds a {type(obj).__name__}, expected {{layer: [records]}}", where)
    return obj
