"""TransNAS-Bench-101: its two search spaces and a tabular look-up over its seven tasks.

TransNAS-Bench-101 (Duan et al., CVPR 2021) trained every network of two spaces on seven tasks
built from the Taskonomy images:

- **micro** (``tnb101_micro``, 4,096 architectures): a cell on four nodes like NAS-Bench-201's,
  six edges ``j -> i`` (``j < i``), each one of four operations (``none``, ``skip_connect``,
  ``nor_conv_1x1``, ``nor_conv_3x3``), inside a fixed macro skeleton ``64-41414``. The
  benchmark's string is ``64-41414-{e10}_{e20}{e21}_{e30}{e31}{e32}`` with the operation codes
  0 none, 1 skip, 2 conv 1x1, 3 conv 3x3.
- **macro** (``tnb101_macro``, 3,256 architectures): a stack of 4 to 6 residual modules, each
  ``normal`` (code 1), ``double`` (the channels, 2), ``down`` (stride 2, 3) or ``down_double``
  (4), with at least one and at most four modules that downsample and at least one and at most
  three that double the channels. The string is ``64-{codes}-basic``. Here the modules are six
  dimensions ``module_0`` .. ``module_5``; the last two may be ``none`` (a shorter stack), and a
  ``none`` module must not be followed by a real one, so every network has one spelling.

The task metrics, all larger-is-better as the benchmark stores them (:data:`TASKS`): scene and
object classification and jigsaw (top-1 %), semantic segmentation (pixel accuracy %), surface
normals and autoencoding (SSIM, 0..1), room layout (negative L2 loss). The values are the
validation figures that NAS-Bench-Suite-Zero (Krishnakumar et al., NeurIPS 2022) looked up for
every architecture, read from its dumps in ``nas-bench-suite-zero-naslib/`` (see that folder's
SOURCE.md): ``tnb101_micro_all_benchmarks_zen.zip`` and ``tnb101_macro_zen.zip``. Nothing is
trained here; the spaces build no network.

Costs (micro only, :func:`micro_costs`): ``params`` and ``flops`` of each task's network are
additive over the cell's edges: a base per task (stem and the task's decoder) plus one term per
edge that depends on its operation and on whether it leaves the cell's input node (those edges
carry the stride of a downsampling cell). The constants reproduce, exactly and for every task,
the FLOPs and parameter counts NAS-Bench-Suite-Zero reported for the 711 architectures of
``zc_transbench101_micro.json`` (tests/test_tnb101.py checks all 4,977); with those 19 numbers per
task every one of the 4,096 cells has its costs without the dump.
"""

from __future__ import annotations

import itertools
import json
import zipfile
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from nastk.core.errors import BenchmarkDataError, InvalidArchitectureError
from nastk.core.options import options_of
from nastk.data.tabular import Lookup, TabularBenchmark, TabularEvaluator, lookup_function
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical
from nastk.space.search_space import SearchSpace

__all__ = [
    "MACRO_MODULES",
    "MICRO_OPS",
    "TASKS",
    "TNB101Bench",
    "TNB101Evaluator",
    "TNB101MacroSpace",
    "TNB101MicroSpace",
    "check_task",
    "find_data_dir",
    "micro_costs",
    "tnb101_data_missing",
]

#: task -> (metric name the evaluator reports, what it is)
TASKS: dict[str, tuple[str, str]] = {
    "class_scene": ("top1", "scene classification, top-1 accuracy (%)"),
    "class_object": ("top1", "object classification, top-1 accuracy (%)"),
    "jigsaw": ("top1", "jigsaw puzzle, top-1 accuracy (%)"),
    "segmentsemantic": ("pixel_acc", "semantic segmentation, pixel accuracy (%)"),
    "normal": ("ssim", "surface normals, SSIM"),
    "autoencoder": ("ssim", "autoencoding, SSIM"),
    "room_layout": ("neg_l2_loss", "room layout, negative L2 loss"),
}
SpaceKind = Literal["micro", "macro"]


def check_task(task: str) -> str:
    """``task`` if it is one of :data:`TASKS`, else a ``ValueError`` listing them."""
    if task not in TASKS:
        raise ValueError(f"TransNAS-Bench-101 task {task!r} unknown; use one of {list(TASKS)}")
    return task


#: micro-cell operations by benchmark code (0..3)
MICRO_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3")
#: micro-cell edges (target node, source node), in the order of the benchmark's string
MICRO_EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
MICRO_EDGE_NAMES: tuple[str, ...] = tuple(f"edge_{i}_{j}" for i, j in MICRO_EDGES)
#: macro modules by benchmark code (0 = no module, only in the last two places)
MACRO_MODULES: tuple[str, ...] = ("none", "normal", "double", "down", "down_double")
MACRO_SLOTS = 6
MACRO_MIN_MODULES = 4

DATA_FOLDER = "nas-bench-suite-zero-naslib"
FILES: dict[str, str] = {"micro": "tnb101_micro_all_benchmarks_zen.zip",
                         "macro": "tnb101_macro_zen.zip"}
SIZES: dict[str, int] = {"micro": 4096, "macro": 3256}
ENV_VAR = "NASTK_TNB101_DIR"

# -- micro-cell costs -----------------------------------------------------------------------------
# (skip_connect, nor_conv_1x1, nor_conv_3x3) per edge, for edges leaving the input node (a
# downsampling cell's stride sits there, and its skip is a strided projection) and for the others.
# The jigsaw network sees 3x3 tiles of the image, hence fewer FLOPs per edge; parameters per edge
# are the same on every task. Fitted on, and exact for, NAS-Bench-Suite-Zero's reported counts.
_EDGE_PARAMS = {"input": (173_824, 685_056, 6_124_544), "inner": (0, 857_088, 7_672_832)}
_EDGE_FLOPS = {"input": (26_083_328, 145_391_616, 1_286_242_304),
               "inner": (0, 170_328_064, 1_512_505_344)}
_EDGE_FLOPS_JIGSAW = {"input": (1_630_208, 9_086_976, 80_390_144),
                      "inner": (0, 10_645_504, 94_531_584)}
#: task -> (params, flops) of the network whose cell has ``none`` on every edge
_BASE_COSTS: dict[str, tuple[int, int]] = {
    "class_scene": (51_807, 91_824_128),
    "class_object": (70_788, 91_843_072),
    "jigsaw": (4_628_488, 10_383_872),
    "segmentsemantic": (11_043_665, 1_027_342_336),
    "normal": (22_891_347, 1_714_225_152),
    "autoencoder": (22_891_347, 1_714_225_152),
    "room_layout": (24_105, 91_796_480),
}


# -- the spaces -----------------------------------------------------------------------------------


class _NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TNB101MicroOptions(BaseModel):
    """Options of :class:`TNB101MicroSpace`."""

    model_config = ConfigDict(extra="forbid")

    task: Annotated[str, AfterValidator(check_task)] = Field(
        "class_scene", description="the task whose network `arch_costs` counts (each task has "
        "its own decoder); set it to the task searched when a strategy prunes by cost "
        "(path_filter_search)")


class TNB101MicroSpace(SearchSpace):
    """TransNAS-Bench-101 micro cell: 6 edges, 4 operations each (4,096 architectures)."""

    name = "tnb101_micro"
    Options = TNB101MicroOptions

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"search space {self.name!r}")
        super().__init__([Categorical(n, MICRO_OPS) for n in MICRO_EDGE_NAMES],
                         name="tnb101_micro")

    def codes(self, arch: Mapping[str, Any]) -> tuple[int, ...]:
        """The six operation codes in the benchmark's order (NASLib's ``op_indices``)."""
        arch = self.validate(arch)
        return tuple(MICRO_OPS.index(arch[n]) for n in MICRO_EDGE_NAMES)

    def from_codes(self, codes: tuple[int, ...] | list[int]) -> Architecture:
        if len(codes) != 6 or any(not 0 <= int(c) < len(MICRO_OPS) for c in codes):
            raise InvalidArchitectureError(
                f"TransNAS-Bench-101 micro codes {codes!r}: expected 6 codes in 0..3")
        return self.validate(dict(zip(MICRO_EDGE_NAMES, (MICRO_OPS[int(c)] for c in codes),
                                      strict=True)))

    def to_string(self, arch: Mapping[str, Any]) -> str:
        """The benchmark's string, e.g. ``64-41414-3_33_333``."""
        c = self.codes(arch)
        return f"64-41414-{c[0]}_{c[1]}{c[2]}_{c[3]}{c[4]}{c[5]}"

    def from_string(self, text: str) -> Architecture:
        parts = text.strip().split("-")
        cell = parts[2].split("_") if len(parts) == 3 and parts[:2] == ["64", "41414"] else []
        if [len(p) for p in cell] != [1, 2, 3] or not all(p.isdigit() for p in cell):
            raise InvalidArchitectureError(
                f"TransNAS-Bench-101 micro string {text!r}: expected '64-41414-a_bc_def' with "
                "a..f operation codes in 0..3")
        return self.from_codes([int(ch) for ch in "".join(cell)])

    def render(self, arch: Architecture) -> str:
        return self.to_string(arch)

    def arch_costs(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``params`` and ``flops`` of the network of the ``task`` option, without the tables
        (strategies that prune by cost, such as ``path_filter_search``, call this)."""
        return micro_costs(arch, self.options.task)


class TNB101MacroSpace(SearchSpace):
    """TransNAS-Bench-101 macro skeleton: 4 to 6 residual modules (3,256 architectures)."""

    name = "tnb101_macro"
    Options = _NoOptions

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"search space {self.name!r}")
        dims = [Categorical(f"module_{i}", MACRO_MODULES[1:] if i < MACRO_MIN_MODULES
                            else MACRO_MODULES) for i in range(MACRO_SLOTS)]
        super().__init__(dims, name="tnb101_macro")

    def check_constraints(self, arch: Architecture) -> None:
        mods = [arch[f"module_{i}"] for i in range(MACRO_SLOTS)]
        if mods[4] == "none" and mods[5] != "none":
            raise InvalidArchitectureError(
                f"search space 'tnb101_macro': module_5 is {mods[5]!r} after an empty "
                "module_4; a shorter stack leaves its last modules 'none'")
        real = [m for m in mods if m != "none"]
        down = sum(m in ("down", "down_double") for m in real)
        double = sum(m in ("double", "down_double") for m in real)
        if not 1 <= down <= 4:
            raise InvalidArchitectureError(
                f"search space 'tnb101_macro': {down} downsampling modules in {real}; the "
                "benchmark has 1 to 4 ('down' or 'down_double')")
        if not 1 <= double <= 3:
            raise InvalidArchitectureError(
                f"search space 'tnb101_macro': {double} channel-doubling modules in {real}; "
                "the benchmark has 1 to 3 ('double' or 'down_double')")

    def size(self) -> int:
        return sum(1 for _ in self.enumerate())

    def enumerate(self) -> list[Architecture]:
        """Every valid architecture (3,256), shortest stacks first."""
        out = []
        for length in range(MACRO_MIN_MODULES, MACRO_SLOTS + 1):
            for combo in itertools.product(MACRO_MODULES[1:], repeat=length):
                values = {f"module_{i}": (combo[i] if i < length else "none")
                          for i in range(MACRO_SLOTS)}
                if self.is_valid(values):
                    out.append(Architecture(values))
        return out

    def codes(self, arch: Mapping[str, Any]) -> tuple[int, ...]:
        """The module codes of the stack, without the empty places (4 to 6 codes in 1..4)."""
        arch = self.validate(arch)
        return tuple(c for c in (MACRO_MODULES.index(arch[f"module_{i}"])
                                 for i in range(MACRO_SLOTS)) if c)

    def from_codes(self, codes: tuple[int, ...] | list[int]) -> Architecture:
        if not MACRO_MIN_MODULES <= len(codes) <= MACRO_SLOTS or any(
                not 1 <= int(c) < len(MACRO_MODULES) for c in codes):
            raise InvalidArchitectureError(
                f"TransNAS-Bench-101 macro codes {codes!r}: expected 4 to 6 codes in 1..4")
        values = {f"module_{i}": MACRO_MODULES[int(codes[i])] if i < len(codes) else "none"
                  for i in range(MACRO_SLOTS)}
        return self.validate(values)

    def to_string(self, arch: Mapping[str, Any]) -> str:
        """The benchmark's string, e.g. ``64-41414-basic``."""
        return "64-" + "".join(str(c) for c in self.codes(arch)) + "-basic"

    def from_string(self, text: str) -> Architecture:
        parts = text.strip().split("-")
        if len(parts) != 3 or parts[0] != "64" or parts[2] != "basic" or not parts[1].isdigit():
            raise InvalidArchitectureError(
                f"TransNAS-Bench-101 macro string {text!r}: expected '64-<4 to 6 codes>-basic'")
        return self.from_codes([int(ch) for ch in parts[1]])

    def render(self, arch: Architecture) -> str:
        return self.to_string(arch)


def micro_costs(arch: Mapping[str, Any], task: str = "class_scene") -> dict[str, float]:
    """``params`` and ``flops`` (one multiply-add = one flop) of the TransNAS-Bench-101 micro
    network of ``arch`` on ``task``, as NAS-Bench-Suite-Zero counted them (see the module's
    docstring)."""
    codes = _micro_space().codes(arch)
    params, flops = _BASE_COSTS[check_task(task)]
    per_edge_flops = _EDGE_FLOPS_JIGSAW if task == "jigsaw" else _EDGE_FLOPS
    for (_, source), code in zip(MICRO_EDGES, codes, strict=True):
        if code == 0:  # none
            continue
        where = "input" if source == 0 else "inner"
        params += _EDGE_PARAMS[where][code - 1]
        flops += per_edge_flops[where][code - 1]
    return {"params": float(params), "flops": float(flops)}


@cache
def _micro_space() -> TNB101MicroSpace:
    return TNB101MicroSpace()


def make_space(kind: SpaceKind) -> TNB101MicroSpace | TNB101MacroSpace:
    if kind == "micro":
        return TNB101MicroSpace()
    if kind == "macro":
        return TNB101MacroSpace()
    raise ValueError(f"TransNAS-Bench-101 space {kind!r} unknown; use 'micro' or 'macro'")


# -- the tabular benchmark ------------------------------------------------------------------------


class TNB101Bench(TabularBenchmark):
    """Look-up of TransNAS-Bench-101 validation metrics for every architecture of one space on
    all seven tasks (:data:`TASKS`). The folder holds ``nas-bench-suite-zero-naslib/`` with the
    dumps; it is found as :meth:`~nastk.data.tabular.TabularBenchmark.find_data_dir` says,
    ``$NASTK_TNB101_DIR`` first."""

    env_var = ENV_VAR
    required = tuple(f"{DATA_FOLDER}/{f}" for f in FILES.values())
    title = "TransNAS-Bench-101 tables"
    layout = f"Put the folder {DATA_FOLDER}/ with both files"

    def __init__(self, data_dir: Path, kind: SpaceKind = "micro") -> None:
        super().__init__(data_dir, make_space(kind))
        self.kind = kind
        path = data_dir / DATA_FOLDER / FILES[kind]
        self._values: dict[str, dict[str, float]] = {t: {} for t in TASKS}
        try:
            with zipfile.ZipFile(path) as z:
                for member in z.namelist():
                    if not member.endswith(".json"):
                        continue
                    task = member.rsplit("/", 1)[-1].split("--")
                    if len(task) != 4 or task[2] not in TASKS:
                        raise BenchmarkDataError(f"{path}: member {member!r} is not named "
                                                 "<proxy>/benchmark--<space>--<task>--<n>.json")
                    for row in json.loads(z.read(member)):
                        arch = self.space.from_codes(_codes(row["arch"], path, member))
                        self.add_arch(arch)
                        self._values[task[2]][arch.key] = float(row["val_accuracy"])
        except (zipfile.BadZipFile, KeyError, ValueError, InvalidArchitectureError) as err:
            raise BenchmarkDataError(f"{path}: not a TransNAS-Bench-101 dump ({err})") from err
        for task, table in self._values.items():
            if len(table) != SIZES[kind]:
                raise BenchmarkDataError(f"{path}: task {task!r} has {len(table)} "
                                         f"architectures, expected {SIZES[kind]}; the file is "
                                         "truncated or not the full dump")

    @classmethod
    def load(cls, data_dir: str | Path | None = None, kind: SpaceKind = "micro") -> TNB101Bench:
        """The benchmark from ``data_dir`` (see :func:`find_data_dir`), cached per process."""
        return cls.from_folder(data_dir, kind)

    def value(self, arch: Architecture | Mapping[str, Any], task: str) -> float:
        """The stored validation metric of ``arch`` on ``task`` (larger is better)."""
        return self._values[check_task(task)][self.space.validate(arch).key]

    def column(self, task: str) -> dict[str, float]:
        """Architecture key -> value, for every architecture."""
        return dict(self._values[check_task(task)])

    def optimum(self, task: str) -> float:
        """The best value of the whole space on ``task``."""
        return self.best_value(self._values[check_task(task)].values())

    def best(self, task: str) -> Architecture:
        """The architecture with the best value on ``task`` (ties: the smallest key)."""
        table = self._values[check_task(task)]
        return self.arch(min(table, key=lambda k: (-table[k], k)))


#: the folder holding ``nas-bench-suite-zero-naslib/`` (see :meth:`TNB101Bench.find_data_dir`)
find_data_dir = TNB101Bench.find_data_dir
#: ``None`` when the benchmark tables are found, else the reason (for test skips)
tnb101_data_missing = TNB101Bench.data_missing


def _codes(raw: Any, path: Path, member: str) -> tuple[int, ...]:
    """NASLib writes op indices as the text of a Python tuple, e.g. ``'(1, 3, 0, 3, 2, 1)'``."""
    text = str(raw).strip()
    if not (text.startswith("(") and text.endswith(")")):
        raise BenchmarkDataError(f"{path}: {member}: architecture {raw!r} is not a tuple")
    return tuple(int(t) for t in text[1:-1].split(",") if t.strip())


class TNB101Evaluator(TabularEvaluator):
    """Tabular evaluator: a candidate's TransNAS-Bench-101 validation metric on one task (named
    by :data:`TASKS`: ``top1``, ``pixel_acc``, ``ssim`` or ``neg_l2_loss``; larger is better).
    Counts the queries it answered."""

    bench: TNB101Bench

    def __init__(self, task: str = "class_scene", kind: SpaceKind = "micro",
                 data_dir: str | Path | None = None) -> None:
        self.task = check_task(task)
        self.metric = TASKS[task][0]
        super().__init__(TNB101Bench.load(data_dir, kind))

    def metrics(self, arch: Architecture) -> dict[str, float]:
        return {self.metric: self.bench.value(arch, self.task)}

    def costs(self, arch: Architecture) -> dict[str, float]:
        """``params`` and ``flops`` on the task (micro; the macro dumps carry no costs)."""
        return micro_costs(arch, self.task) if self.bench.kind == "micro" else {}

    def info(self, arch: Architecture) -> dict[str, Any]:
        return {"tnb101": self.bench.space.to_string(arch)}


def _function(kind: SpaceKind, task: str) -> Callable[[Architecture], Lookup]:
    metric, what = TASKS[task]
    return lookup_function(lambda: TNB101Evaluator(task, kind), __name__, f"{kind}_{task}",
                           f"TransNAS-Bench-101 {kind} look-up of {what} as `{metric}`, for "
                           f"`evaluator: {{kind: function}}` (data from ${ENV_VAR} or "
                           "../shared/data)")


#: ``evaluator: {kind: function, function: nastk.search_spaces.tnb101:micro_class_scene}`` in a
#: config (the space ``tnb101_micro``); ``macro_*`` for ``tnb101_macro``
micro_class_scene = _function("micro", "class_scene")
micro_class_object = _function("micro", "class_object")
micro_jigsaw = _function("micro", "jigsaw")
micro_segmentsemantic = _function("micro", "segmentsemantic")
micro_normal = _function("micro", "normal")
micro_autoencoder = _function("micro", "autoencoder")
micro_room_layout = _function("micro", "room_layout")
macro_class_scene = _function("macro", "class_scene")
macro_class_object = _function("macro", "class_object")
macro_jigsaw = _function("macro", "jigsaw")
macro_segmentsemantic = _function("macro", "segmentsemantic")
macro_normal = _function("macro", "normal")
macro_autoencoder = _function("macro", "autoencoder")
macro_room_layout = _function("macro", "room_layout")
