"""Where the tables of tabular benchmarks are looked for (NAS-Bench-201, TransNAS-Bench-101).

A benchmark's files sit in one folder that the user names (``data_dir``) or that is found, in
order, at ``$ENV_VAR``, ``../shared/data`` seen from the working directory and from the
repository, and ``./data``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from nastk.core.errors import BenchmarkDataError

__all__ = ["candidate_dirs", "find_data_dir", "missing_reason"]


def candidate_dirs(env_var: str) -> list[Path]:
    """The folders searched when no ``data_dir`` is given, without repeats, in order."""
    repo = Path(__file__).resolve().parents[2]
    out = []
    if os.environ.get(env_var):
        out.append(Path(os.environ[env_var]))
    out += [Path.cwd().parent / "shared" / "data", repo.parent / "shared" / "data",
            Path.cwd() / "data"]
    return list(dict.fromkeys(p.resolve() for p in out))


def find_data_dir(data_dir: str | Path | None, env_var: str, required: Sequence[str],
                  what: str, layout: str) -> Path:
    """The first folder holding every ``required`` relative path; else a
    :class:`BenchmarkDataError` naming ``what`` was missing, where it looked, and the fix
    (``layout`` says which files to put there)."""
    candidates = [Path(data_dir)] if data_dir is not None else candidate_dirs(env_var)
    for d in candidates:
        if all((d / r).is_file() for r in required):
            return d.resolve()
    looked = ", ".join(str(d) for d in candidates)
    raise BenchmarkDataError(
        f"{what} not found (looked for {' and '.join(required)} in: {looked}). {layout} in one "
        f"folder and pass it as data_dir, or set {env_var}=/path/to/that/folder.")


def missing_reason(find: Callable[[], Path]) -> str | None:
    """``None`` when ``find()`` (a benchmark's own ``find_data_dir``) finds its folder, else the
    reason it gives (for test skips)."""
    try:
        find()
    except BenchmarkDataError as err:
        return str(err)
    return None
