"""Errors of datasets read from a user's folder: every message names the path and shows the
layout the loader expects (shared by the tasks' real-data loaders)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from nastk.errors import NastkError

__all__ = ["FolderLayout"]


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
