"""Tabular benchmarks: a table of results published for every architecture of a space, read
from a folder, and the evaluator that answers a search's queries from it (nothing is trained).

NAS-Bench-201 (``nastk.search_spaces.nb201``) and TransNAS-Bench-101
(``nastk.search_spaces.tnb101``) are built on it; so can a user's own benchmark:

- subclass :class:`TabularBenchmark`, set the class attributes that say which files it needs
  (``required``, relative to its folder), what to call it in errors (``title``), what the user
  should put where (``layout``) and the environment variable naming the folder (``env_var``);
  read the tables in ``__init__(data_dir, ...)``, registering every architecture in table order
  with :meth:`TabularBenchmark.add_arch`; give it a ``load`` that calls
  :meth:`TabularBenchmark.from_folder` (one instance per folder and options, per process);
- subclass :class:`TabularEvaluator` (``metrics``, and ``costs`` / ``info`` where the table has
  them): it counts its queries and returns :class:`~nastk.core.result.Result` objects;
- :func:`lookup_function` makes the module-level functions that
  ``evaluator: {kind: function, function: package.module:name}`` names in a config.

:meth:`TabularBenchmark.data_missing` is the reason tests and benchmarks give when they skip
because the tables are absent; the folder is looked for as :mod:`nastk.data.dirs` describes.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from nastk.core.result import Result
from nastk.data import dirs
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace

__all__ = ["Lookup", "TabularBenchmark", "TabularEvaluator", "lookup_function"]

B = TypeVar("B", bound="TabularBenchmark")
#: what a look-up function returns: ``(metrics, costs)``
Lookup = tuple[dict[str, float], dict[str, float]]

#: (class, folder, options) -> the benchmark read from that folder, shared by the process
_LOADED: dict[tuple[Any, ...], TabularBenchmark] = {}


class TabularBenchmark:
    """The architectures of a benchmark's table, in table order, and where its files are.

    A subclass sets the class attributes below and reads its tables in ``__init__``; see the
    module docstring.
    """

    #: environment variable that names the benchmark's folder
    env_var: ClassVar[str] = ""
    #: files the folder must hold, relative to it
    required: ClassVar[tuple[str, ...]] = ()
    #: what the error calls the files (``"NAS-Bench-201 tables"``)
    title: ClassVar[str] = ""
    #: what to put in the folder, as the start of a sentence (``"Put the folder x/ ..."``)
    layout: ClassVar[str] = ""

    def __init__(self, data_dir: Path, space: SearchSpace) -> None:
        self.data_dir = data_dir
        self.space = space
        self._archs: dict[str, Architecture] = {}
        self._rows: dict[str, int] = {}

    # -- the folder ---------------------------------------------------------------------------
    @classmethod
    def find_data_dir(cls, data_dir: str | Path | None = None) -> Path:
        """The folder holding :attr:`required`: ``data_dir`` when given, else the first of
        ``$env_var``, ``../shared/data`` (from the working directory and from the repository)
        and ``./data`` that holds them; a :class:`~nastk.core.errors.BenchmarkDataError`
        saying where to put the files otherwise."""
        return dirs.find_data_dir(data_dir, cls.env_var, list(cls.required), cls.title,
                                  cls.layout)

    @classmethod
    def data_missing(cls) -> str | None:
        """``None`` when the benchmark's files are found, else the reason (for test skips)."""
        return dirs.missing_reason(cls.find_data_dir)

    @classmethod
    def from_folder(cls: type[B], data_dir: str | Path | None = None, *options: Any) -> B:
        """The benchmark read from ``data_dir`` (see :meth:`find_data_dir`) with the
        constructor's further ``options``, read once per process and folder."""
        root = cls.find_data_dir(data_dir)
        key = (cls, str(root), *options)
        if key not in _LOADED:
            _LOADED[key] = cls(root, *options)
        return _LOADED[key]  # type: ignore[return-value]

    # -- the architectures --------------------------------------------------------------------
    def add_arch(self, arch: Architecture) -> int:
        """Register ``arch`` (the next row of the table, unless it is already known) and return
        its row."""
        row = self._rows.setdefault(arch.key, len(self._rows))
        self._archs.setdefault(arch.key, arch)
        return row

    def row(self, arch: Architecture | Mapping[str, Any]) -> int:
        """The table row of ``arch`` (validated against the space first)."""
        return self._rows[self.space.validate(arch).key]

    def __len__(self) -> int:
        return len(self._archs)

    def archs(self) -> list[Architecture]:
        """Every architecture, in table order."""
        return list(self._archs.values())

    def arch(self, key: str) -> Architecture:
        """The architecture whose :attr:`~nastk.space.architecture.Architecture.key` is
        ``key``."""
        return self._archs[key]

    @staticmethod
    def best_value(values: Iterable[float]) -> float:
        """The largest of ``values`` that is not NaN (a table's optimum)."""
        return max(v for v in values if not math.isnan(v))


class TabularEvaluator(ABC):
    """An evaluator that looks candidates up in a :class:`TabularBenchmark` (the engine's
    evaluator protocol: :meth:`evaluate`); :attr:`queries` counts what it answered."""

    def __init__(self, bench: TabularBenchmark) -> None:
        self.bench = bench
        self.queries = 0

    @abstractmethod
    def metrics(self, arch: Architecture) -> dict[str, float]:
        """The table's metrics of ``arch``."""

    def costs(self, arch: Architecture) -> dict[str, float]:
        """The costs of ``arch`` the benchmark knows (none by default)."""
        return {}

    def info(self, arch: Architecture) -> dict[str, Any]:
        """What the trial records besides metrics and costs (e.g. the table's index)."""
        return {}

    def lookup(self, arch: Architecture) -> Lookup:
        """``(metrics, costs)`` of ``arch``, uncounted (what :func:`lookup_function` returns)."""
        return self.metrics(arch), self.costs(arch)

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result:
        """A complete :class:`~nastk.core.result.Result` of ``arch``, counted in
        :attr:`queries`."""
        self.queries += 1
        return Result.complete(self.metrics(arch), self.costs(arch), info=self.info(arch))


def lookup_function(make_evaluator: Callable[[], TabularEvaluator], module: str, name: str,
                    doc: str) -> Callable[[Architecture], Lookup]:
    """``module:name``, a function ``arch -> (metrics, costs)`` for ``evaluator: {kind:
    function}``, answering from ``make_evaluator()`` (called at the first query, or by the
    function's ``prepare()``, which the composition root calls before a run writes anything,
    so that missing tables stop the run instead of failing its trials; importing ``module``
    reads no table); ``doc`` is its docstring."""
    made: list[TabularEvaluator] = []

    def prepare() -> None:
        if not made:
            made.append(make_evaluator())

    def evaluate(arch: Architecture) -> Lookup:
        prepare()
        return made[0].lookup(arch)

    evaluate.__module__, evaluate.__name__, evaluate.__qualname__ = module, name, name
    evaluate.__doc__ = doc
    evaluate.prepare = prepare  # type: ignore[attr-defined]
    return evaluate
