"""Where a dataset lives: a local directory, or ``gs://bucket/prefix`` through fsspec/gcsfs (an extra).

A store reads whole objects by name relative to the dataset root; names may contain ``/`` (merged scale-out
roots point at ``worker-IIIII-of-NNNNN/shard_NNNN.ext``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from .errors import ActshardError, missing_extra


class LocalStore:
    """A dataset directory on local disk."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.url = self.root

    def where(self, name: str) -> str:
        """The full path of ``name``, for messages."""
        return os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.root, name))

    def read(self, name: str) -> bytes:
        path = os.path.join(self.root, name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ActshardError("file is missing", path, "restore it, or re-run the stage that writes it") from None
        except IsADirectoryError:
            raise ActshardError("expected a file, found a directory", path) from None

    def list(self) -> List[str]:
        try:
            return sorted(os.listdir(self.root))
        except FileNotFoundError:
            raise ActshardError("dataset directory not found", self.root, "check the path") from None
        except NotADirectoryError:
            raise ActshardError("dataset path is not a directory", self.root, "give the dataset's directory") from None


class FsspecStore:
    """``gs://bucket/prefix`` (or any fsspec URL) read through fsspec; gcsfs honours ``STORAGE_EMULATOR_HOST``."""

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]] = None):
        if (storage_options or {}).get("endpoint_url") or os.environ.get("STORAGE_EMULATOR_HOST"):
            # gcsfs >= 2026 probes each bucket's layout over the gRPC Storage Control API (retrying for a minute
            # per call when it fails); emulators serve the JSON API only. Its switch must be set before import.
            os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        try:
            import fsspec
        except ImportError:
            raise missing_extra("gcsfs", "gcs", url) from None
        protocol = url.split("://", 1)[0]
        try:
            self.fs = fsspec.filesystem(protocol, **(storage_options or {}))
        except ImportError:
            raise missing_extra("gcsfs", "gcs", url) from None
        self.root = url.split("://", 1)[1].rstrip("/")
        self.url = f"{protocol}://{self.root}"

    def where(self, name: str) -> str:
        return f"{self.url}/{name}"

    def exists(self, name: str) -> bool:
        try:
            return bool(self.fs.isfile(f"{self.root}/{name}"))
        except Exception as e:  # auth/network: say so once, not as a trace
            raise _remote_error(e, self.where(name)) from None

    def read(self, name: str) -> bytes:
        try:
            with self.fs.open(f"{self.root}/{name}", "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ActshardError("object is missing", self.where(name), "re-run the upload stage") from None
        except Exception as e:
            raise _remote_error(e, self.where(name)) from None

    def list(self) -> List[str]:
        try:
            return sorted(p.rsplit("/", 1)[-1] for p in self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return []
        except Exception as e:
            raise _remote_error(e, self.url) from None


def _remote_error(e: Exception, where: str) -> ActshardError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ActshardError(f"cannot read from the bucket: {first[:200]}", where,
                         "check credentials (gcloud auth application-default login) and the path")


def open_store(location: str, storage_options: Optional[Dict[str, Any]] = None):
    """A store for a local path or a ``scheme://`` URL (``gs://`` needs the ``gcs`` extra)."""
    if "://" in location and not location.startswith("file://"):
        return FsspecStore(location, storage_options)
    if location.startswith("file://"):
        location = location[len("file://"):]
    return LocalStore(location)
