"""Errors of datasets read from a user's folder: every message names the path and shows the
layout the loader expects (shared by the tasks' real-data loaders)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from nastk.core.errors import NastkError

__all__ = ["FolderLayout", "Size", "check_size"]

#: an image size: one int for a square, or ``(height, width)``
Size = int | tuple[int, int]


def check_size(size: Size | Sequence[int] | None, name: str = "size"
               ) -> tuple[int, int] | None:
    """``size`` (``None``, an int for a square, or a ``(height, width)`` pair of ints) as a
    ``(height, width)`` pair, or a ``ValueError`` naming ``name`` and the bad value."""
    if size is None:
        return None

    def is_int(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(size):
        pair: tuple[int, ...] = (int(size), int(size))  # type: ignore[arg-type]
    elif isinstance(size, Sequence) and len(size) == 2 and all(is_int(s) for s in size):
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be None, an int or a (height, width) pair of ints, "
                         f"got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return pair[0], pair[1]


class FolderLayout:
    """Mixin for folder datasets: a subclass sets :attr:`layout` (the expected folder tree)
    and :attr:`error_type` (its task's dataset error)."""

    layout: ClassVar[str] = ""
    error_type: ClassVar[type[Exception]] = NastkError

    def _error(self, problem: str, path: Path) -> Exception:
        return self.error_type(f"{type(self).__name__}: {problem} {path}\n"
                               f"expected layout:\n{self.layout.strip(chr(10))}")

    def _require_dir(self, path: Path, problem: str = "missing folder") -> None:
        if not path.is_dir():
            raise self._error(problem + (" (it is a file)" if path.exists() else "") + ":",
                              path)
