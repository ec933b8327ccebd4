"""Shard codecs: ``gzip`` (multi-member, stdlib), ``zstd`` (python-zstandard, an extra, or Python 3.14's
``compression.zstd``), ``none``; and which format/codec a shard is (its metadata.json entry first, then its file
name's suffix)."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from typing import Optional, Tuple

from .errors import ActshardError, missing_extra


CODECS = ("gzip", "zstd", "none")
FORMATS = ("pickle", "safetensors")


def codec_of(name: str) -> str:
    """``gzip`` | ``zstd`` | ``none`` from a shard file name."""
    if name.endswith(".gz"):
        return "gzip"
    if name.endswith(".zst"):
        return "zstd"
    return "none"


def format_of(name: str) -> Optional[str]:
    """``pickle`` | ``safetensors`` from a shard file name, None when the name says neither."""
    if ".pkl" in name:
        return "pickle"
    if ".safetensors" in name:
        return "safetensors"
    return None


def shard_kind(name: str, entry: Optional[dict], where: str) -> Tuple[str, str]:
    """(format, codec) of shard file ``name``: from its metadata.json entry's ``format``/``codec`` when it has
    them (metadata.json is the index), else from the file name (seed-written entries, no metadata.json). The
    same rule, and the same one-line errors, as the TypeScript reader (lib/shard/formats/mod.ts)."""
    fmt = entry.get("format") if entry else None
    codec = entry.get("codec") if entry else None
    hint = "upgrade actshard, or fix the shard's entry in metadata.json"
    if fmt is not None and fmt not in FORMATS:
        raise ActshardError(f"metadata.json says format {json.dumps(fmt)}, which this actshard does not know "
                            f"(it knows {', '.join(FORMATS)})", where, hint)
    if codec is not None and codec not in CODECS:
        raise ActshardError(f"metadata.json says codec {json.dumps(codec)}, which this actshard does not know "
                            f"(it knows {', '.join(CODECS)})", where, hint)
    name_fmt, name_codec = format_of(name), codec_of(name)
    if name_fmt is not None and ((fmt is not None and fmt != name_fmt) or (codec is not None and codec != name_codec)):
        raise ActshardError(f"file name says {name_fmt}/{name_codec} but metadata.json says "
                            f"{fmt or name_fmt}/{codec or name_codec}", where,
                            "the file was renamed or metadata.json edited: restore the original name or entry")
    fmt = fmt or name_fmt
    if fmt is None:
        raise ActshardError("cannot tell the shard's format: no format in metadata.json and the name does not "
                            "end in .pkl or .safetensors", where,
                            "name the file as actshard writes it, or add its format and codec to metadata.json")
    return fmt, codec or name_codec


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
