"""Shard integrity: a shard's size, sha256 and crc32c against its metadata.json entry, checked before any of its
records is returned. sha256 uses hashlib; crc32c uses google-crc32c when installed, else a table in Python
(only when the entry has no sha256, since it is slow)."""

from __future__ import annotations

import hashlib
from typing import Any, Dict, List, Optional

from .errors import ShardIntegrityError

_TABLE: Optional[List[int]] = None


def _crc32c_py(data: bytes) -> int:
    global _TABLE
    if _TABLE is None:
        t = []
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            t.append(c)
        _TABLE = t
    crc, table = 0xFFFFFFFF, _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c(data: bytes, allow_slow: bool = True) -> Optional[int]:
    """CRC-32C (Castagnoli) of ``data``, as GCS stores it; None when only the slow path exists and not allowed."""
    try:
        import google_crc32c
    except ImportError:
        return _crc32c_py(data) if allow_slow else None
    return google_crc32c.value(data)


def check_shard(raw: bytes, entry: Optional[Dict[str, Any]], where: str) -> List[str]:
    """Raise :class:`ShardIntegrityError` when ``raw`` differs from ``entry``; return the checks made."""
    if not entry:
        return []
    done = []
    size = entry.get("bytes")
    if isinstance(size, int):
        if len(raw) != size:
            raise ShardIntegrityError(
                f"shard is {len(raw)} bytes, metadata.json says {size}", where,
                "the file is truncated or was replaced: re-download or re-extract it")
        done.append("bytes")
    elif isinstance(entry.get("file_size_mb"), (int, float)):
        # Seed metadata: no byte count, but file_size_mb is the exact size / 2**20 as a double.
        mb = float(entry["file_size_mb"])
        if abs(len(raw) - mb * 1048576) > 0.5:
            raise ShardIntegrityError(
                f"shard is {len(raw)} bytes, metadata.json says {mb:.6f} MiB ({round(mb * 1048576)} bytes)",
                where, "the file is truncated or was replaced: re-download or re-extract it")
        done.append("file_size_mb")
    sha = entry.get("sha256")
    if isinstance(sha, str):
        got = hashlib.sha256(raw).hexdigest()
        if got != sha.lower():
            raise ShardIntegrityError(
                f"shard sha256 {got[:16]}… differs from metadata.json's {sha[:16]}…", where,
                "the file is corrupt: re-download or re-extract it")
        done.append("sha256")
    want = entry.get("crc32c")
    if isinstance(want, int):
        got_crc = crc32c(raw, allow_slow="sha256" not in done)
        if got_crc is not None:
            if got_crc != want:
                raise ShardIntegrityError(
                    f"shard crc32c {got_crc} differs from metadata.json's {want}", where,
                    "the file is corrupt: re-download or re-extract it")
            done.append("crc32c")
    return done
