"""The folders a dashboard shows, found once under the directories it was given: search runs
(``store.sqlite``), studies (``study.json``) and supernet trainings (``history.json`` beside
``supernet.pt``). Each gets an id made of safe characters; a request names a folder only by
that id, looked up in the scan, so no part of a URL is ever joined to a path."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from nastk.run.layout import HISTORY_JSON, STORE_FILE, STUDY_JSON, SUPERNET_CHECKPOINT

__all__ = ["Folder", "FolderKind", "scan"]

FolderKind = Literal["run", "study", "supernet"]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
#: folders not descended into
_SKIP = {"checkpoints", "partial", "ray", "front", "__pycache__", ".git", "node_modules"}


@dataclass(frozen=True)
class Folder:
    """One folder shown: its kind, id (URL-safe, unique), path and the root it was found
    under (its name relative to the root is ``name``)."""

    kind: FolderKind
    id: str
    path: Path
    root: Path

    @property
    def name(self) -> str:
        rel = self.path.relative_to(self.root)
        return str(rel) if str(rel) != "." else self.path.name


def _kind(path: Path) -> FolderKind | None:
    if (path / STORE_FILE).is_file():
        return "run"
    if (path / STUDY_JSON).is_file():
        return "study"
    if (path / HISTORY_JSON).is_file() and (path / SUPERNET_CHECKPOINT).is_file():
        return "supernet"
    return None


def _id(root: Path, path: Path) -> str:
    rel = str(path.relative_to(root)) if path != root else path.name
    digest = hashlib.sha1(f"{root}\0{path}".encode()).hexdigest()[:6]
    return f"{_UNSAFE.sub('-', rel).strip('-.') or 'run'}-{digest}"


def scan(roots: list[Path], max_depth: int = 6) -> dict[str, Folder]:
    """Every run, study and supernet folder under ``roots`` (each a folder, or itself one),
    by id, in path order. Symbolic links are not followed."""
    found: dict[str, Folder] = {}
    for root in roots:
        root = root.resolve()
        stack = [(root, 0)]
        while stack:
            path, depth = stack.pop()
            kind = _kind(path)
            if kind is not None:
                fid = _id(root, path)
                found[fid] = Folder(kind, fid, path, root)
            if depth >= max_depth:
                continue
            try:
                children = sorted(p for p in path.iterdir()
                                  if p.is_dir() and not p.is_symlink() and p.name not in _SKIP
                                  and not p.name.startswith("."))
            except OSError:
                continue
            stack.extend((c, depth + 1) for c in reversed(children))
    return dict(sorted(found.items(), key=lambda kv: str(kv[1].path)))
