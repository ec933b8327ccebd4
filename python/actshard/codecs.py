"""Shard codecs by file suffix: ``.gz`` (multi-member gzip, stdlib), ``.zst`` (zstd: python-zstandard, an
extra, or Python 3.14's ``compression.zstd``), none."""

from __future__ import annotations

import gzip
import io
import zlib

from .errors import ActshardError, missing_extra


def codec_of(name: str) -> str:
    """``gzip`` | ``zstd`` | ``none`` from a shard file name."""
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith(".zst"):
        return "zstd"
    return "none"


def decompress(raw: bytes, codec: str, where: str) -> bytes:
    """The payload of a shard file's bytes."""
    if codec == "none":
        return raw
    if codec == "gzip":
        try:
            return gzip.decompress(raw)  # reads every member of a multi-member file
        except (OSError, EOFError, zlib.error) as e:
            raise ActshardError(f"gzip data is corrupt ({e})", where, "the shard is damaged: re-download or re-extract it") from None
    if codec == "zstd":
        return _zstd_decompress(raw, where)
    raise ActshardError(f"unknown codec {codec!r}", where)


def _zstd_decompress(raw: bytes, where: str) -> bytes:
    try:
        import zstandard
    except ImportError:
        zstandard = None
    try:
        if zstandard is not None:
            # Our shards are one frame (plus, from some writers, an empty trailing frame): read across frames so
            # neither case reads short.
            with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True) as r:
                return r.read()
        try:
            from compression import zstd  # Python 3.14+
        except ImportError:
            raise missing_extra("zstandard", "zstd", where) from None
        return zstd.decompress(raw)
    except ActshardError:
        raise
    except Exception as e:  # zstandard.ZstdError, compression.zstd.ZstdError
        raise ActshardError(f"zstd data is corrupt ({e})", where, "the shard is damaged: re-download or re-extract it") from None
