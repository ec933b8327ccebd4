"""Errors as values with context, one line each (as lib/errors.ts on the TypeScript side)."""

from __future__ import annotations

from typing import Optional


class ActshardError(Exception):
    """A failure reading a dataset: ``message (where): hint`` on one line.

    ``where`` names the file or object, ``hint`` says what to do about it.
    """

    def __init__(self, message: str, where: Optional[str] = None, hint: Optional[str] = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """The error as one line."""
        s = self.message
        if self.where and self.where not in s:
            s += f" ({self.where})"
        if self.hint:
            s += f": {self.hint}"
        return s


class ShardIntegrityError(ActshardError):
    """A shard's bytes differ from what metadata.json records (size, sha256 or crc32c)."""


def missing_extra(module: str, extra: str, where: Optional[str] = None) -> ActshardError:
    """The error for an optional module that a dataset needs but is not installed."""
    return ActshardError(
        f"reading this needs the Python module '{module}', which is not installed",
        where,
        f"pip install 'actshard[{extra}]' (or pip install {module})",
    )
