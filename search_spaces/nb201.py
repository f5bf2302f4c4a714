"""NAS-Bench-201: the cell search space, its network, and the tabular benchmark.

The cell is a DAG on four nodes (0 = the cell input, 3 = its output); each of the six edges
``j -> i`` (``j < i``) carries one of five operations. The space has ``5 ** 6 = 15625``
architectures, written in the official string form
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`` (the ops entering node 1, then node 2, then node 3, each
tagged with its source node). :meth:`NB201Space.build` builds the benchmark's network: a 3x3 stem,
three stages of five cells (16, 32 and 64 channels) joined by residual reduction blocks, and a
final batch norm + ReLU; the classification task adds pooling and the linear classifier. Its
parameter count equals the benchmark's own figure for every architecture.

:class:`NB201Bench` reads the accuracy tables the NAS-Bench-201 / NATS-Bench authors published
(``nasbench201-tables/nb201_merged.csv``) and measured latencies
(``nasbench201-hardware/nb201_latency_ms.csv``); nothing is trained. Searches query the 12-epoch
validation accuracy (the protocol of the NAS-Bench-201 paper for non-weight-sharing searchers) and
report the 200-epoch test accuracy of what they found.

Configs name a look-up function (``evaluator: {kind: function, function: MODULE:NAME}``):
``nastk.search_spaces.nb201:cifar10`` / ``cifar100`` / ``imagenet16`` report ``latency_ms`` on
Pixel 3; ``<dataset>_<device>`` (``cifar10_raspi4``, ``cifar100_titan_rtx_1``,
``imagenet16_fpga``, ...) the same look-up with the latency of any device column of
``nb201_latency_ms.csv`` (HELP's 27 settings, :data:`HELP_DEVICES`, and the Eagle desktop CPU),
so ``objective: {costs: [latency_ms]}`` searches accuracy against that device's latency. These
are made on first access (the module's ``__getattr__``), one object per name; a name with an
unknown dataset or device is an ``AttributeError`` listing both, and a device look-up whose
latency table is absent stops the run before its first trial. An architecture the device's
table lacks (the Eagle column's 341 disconnected cells) has no ``latency_ms``: the trial is
recorded as failed (the objective's cost is missing), the search goes on.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import networkx as nx
import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from torch import nn

from nastk.core.errors import BenchmarkDataError, InvalidArchitectureError
from nastk.core.options import options_of
from nastk.core.result import Result
from nastk.data.tabular import Lookup, TabularBenchmark, TabularEvaluator, lookup_function
from nastk.scheduling.fidelity import Fidelity
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical
from nastk.space.search_space import SearchSpace

__all__ = [
    "DATASETS",
    "EDGES",
    "HELP_DEVICES",
    "OPS",
    "NB201Bench",
    "NB201Evaluator",
    "NB201FidelityEvaluator",
    "NB201Network",
    "NB201Space",
    "architecture_costs",
    "fidelity_evaluator",
    "find_data_dir",
    "latency_devices",
    "nb201_data_missing",
]

#: the five candidate operations, in the benchmark's order
OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
#: the six edges (target node, source node), in the order of the architecture string
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
#: dimension name of each edge
EDGE_NAMES: tuple[str, ...] = tuple(f"edge_{i}_{j}" for i, j in EDGES)

#: dataset -> (number of classes, input resolution)
DATASETS: dict[str, tuple[int, int]] = {"cifar10": (10, 32), "cifar100": (100, 32),
                                        "ImageNet16-120": (120, 16)}
_DATASET_ALIASES = {"cifar10": "cifar10", "cifar-10": "cifar10", "c10": "cifar10",
                    "cifar100": "cifar100", "cifar-100": "cifar100", "c100": "cifar100",
                    "imagenet16-120": "ImageNet16-120", "imagenet16": "ImageNet16-120",
                    "in16": "ImageNet16-120"}

#: accuracy kind -> dataset -> column of nb201_merged.csv (see its SOURCE.md)
_COLUMNS: dict[str, dict[str, str]] = {
    "val12": {"cifar10": "c10valid_xvalid_12ep", "cifar100": "c100_xvalid_12ep",
              "ImageNet16-120": "in16_xvalid_12ep"},
    "test12": {"cifar10": "c10_oritest_12ep", "cifar100": "c100_xtest_12ep",
               "ImageNet16-120": "in16_xtest_12ep"},
    "val200": {"cifar10": "c10valid_xvalid_200ep_mean", "cifar100": "c100_xvalid_200ep_naslib",
               "ImageNet16-120": "in16_xvalid_200ep_naslib"},
    "test200": {"cifar10": "c10_oritest_200ep_mean", "cifar100": "c100_xtest_200ep_mean",
                "ImageNet16-120": "in16_xtest_200ep_mean"},
}
AccuracyKind = Literal["val12", "test12", "val200", "test200"]

TABLES = "nasbench201-tables"
HARDWARE = "nasbench201-hardware"
ACC_FILE = "nb201_merged.csv"
LATENCY_FILE = "nb201_latency_ms.csv"
ENV_VAR = "NASTK_NB201_DIR"


def canonical_dataset(name: str) -> str:
    """``cifar10`` / ``cifar100`` / ``ImageNet16-120`` from a name or an alias."""
    key = _DATASET_ALIASES.get(str(name).lower())
    if key is None:
        raise ValueError(f"NAS-Bench-201 dataset {name!r} unknown; use one of "
                         f"{sorted(DATASETS)}")
    return key


# -- the search space -----------------------------------------------------------------------------


class NB201Space(SearchSpace):
    """NAS-Bench-201 cell: 6 edges of a 4-node DAG, 5 operations each (15,625 architectures)."""

    name = "nb201"

    class Options(BaseModel):
        """Options of the NB201 space (the network's widths; the benchmark used the defaults)."""

        model_config = ConfigDict(extra="forbid")

        channels: int = Field(16, ge=1, description="channels of the first stage (then x2, x4)")
        cells_per_stage: int = Field(5, ge=1, description="cells in each of the three stages")
        dataset: Annotated[str, AfterValidator(canonical_dataset)] = Field(
            "cifar10", description="the data set whose network `arch_costs` counts (input size "
            "and classes differ); set it to the one searched when a strategy prunes by cost "
            "(path_filter_search)")

    def __init__(self, **options: Any) -> None:
        self.options = options_of(self.Options, options, what=f"search space {self.name!r}")
        super().__init__([Categorical(n, OPS) for n in EDGE_NAMES], name="nb201")

    # -- conversions --------------------------------------------------------------------------
    @staticmethod
    def to_string(arch: Mapping[str, Any]) -> str:
        """The official architecture string, e.g. ``|nor_conv_3x3~0|+|...|``."""
        nodes = []
        for target in (1, 2, 3):
            ops = [f"{arch[f'edge_{target}_{src}']}~{src}" for src in range(target)]
            nodes.append("|" + "|".join(ops) + "|")
        return "+".join(nodes)

    def from_string(self, text: str) -> Architecture:
        """Parse an official architecture string, naming the part that is wrong."""
        nodes = text.strip().split("+")
        if len(nodes) != 3:
            raise InvalidArchitectureError(
                f"NB201 string {text!r}: expected 3 node groups joined by '+', got {len(nodes)}")
        values: dict[str, str] = {}
        for target, group in enumerate(nodes, start=1):
            items = [s for s in group.strip("|").split("|") if s]
            if len(items) != target:
                raise InvalidArchitectureError(
                    f"NB201 string {text!r}: node {target} needs {target} inputs, got {items}")
            for item in items:
                op, _, src = item.partition("~")
                if not src.isdigit() or int(src) >= target:
                    raise InvalidArchitectureError(
                        f"NB201 string {text!r}: bad edge {item!r} into node {target}")
                values[f"edge_{target}_{int(src)}"] = op
        return self.validate(values)

    def render(self, arch: Architecture) -> str:
        return self.to_string(arch)

    def graph(self, arch: Mapping[str, Any]) -> nx.DiGraph:
        """The cell as a networkx DAG: nodes 0..3, one edge per non-``none`` operation (attribute
        ``op``)."""
        g = nx.DiGraph()
        g.add_nodes_from(range(4))
        for (i, j), name in zip(EDGES, EDGE_NAMES, strict=True):
            if arch[name] != "none":
                g.add_edge(j, i, op=arch[name])
        return g

    def is_connected(self, arch: Mapping[str, Any]) -> bool:
        """Whether the output node is reachable from the input (341 architectures are not: their
        output is identically zero and they train to chance accuracy)."""
        return nx.has_path(self.graph(arch), 0, 3)

    def arch_costs(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``params`` and ``flops`` of the network for the ``dataset`` option (CIFAR-10 by
        default), without building it (strategies that prune by cost, such as
        ``path_filter_search``, call this for unseen candidates)."""
        return architecture_costs(arch, self.options.dataset, self.options.channels,
                                  self.options.cells_per_stage)

    # -- the network --------------------------------------------------------------------------
    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> NB201Network:
        arch = self.validate(arch)
        return NB201Network(arch, in_channels, self.options.channels,
                            self.options.cells_per_stage)


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__(nn.ReLU(inplace=False),
                         nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, bias=False),
                         nn.BatchNorm2d(c_out))


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return _ReLUConvBN(channels, channels, 1, 1)
    if name == "nor_conv_3x3":
        return _ReLUConvBN(channels, channels, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise InvalidArchitectureError(f"NB201: unknown operation {name!r}; use one of {OPS}")


class _Cell(nn.Module):
    def __init__(self, arch: Mapping[str, Any], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({name: _op(arch[name], channels) for name in EDGE_NAMES})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in (1, 2, 3):
            nodes.append(sum(self.edges[f"edge_{target}_{src}"](nodes[src])
                             for src in range(target)))
        return nodes[3]


class _Reduction(nn.Module):
    """Residual block halving the resolution and changing the width between stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = _ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = _ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, stride=2),
                                      nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class NB201Network(nn.Module):
    """The NAS-Bench-201 network body for one cell (``out_channels`` = 4 x ``channels``)."""

    def __init__(self, arch: Mapping[str, Any], in_channels: int, channels: int = 16,
                 cells_per_stage: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        width = channels
        for stage in range(3):
            if stage > 0:
                layers.append(_Reduction(width, width * 2))
                width *= 2
            layers += [_Cell(arch, width) for _ in range(cells_per_stage)]
        self.layers = nn.Sequential(*layers)
        self.last = nn.Sequential(nn.BatchNorm2d(width), nn.ReLU(inplace=False))
        self.out_channels: int = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.layers(self.stem(x)))


#: NASLib's NAS-Bench-201 operation indices (its ``op_indices``, e.g. in NAS-Bench-Suite-Zero)
NASLIB_OPS: tuple[str, ...] = ("skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1",
                               "avg_pool_3x3")


def from_naslib(space: NB201Space, indices: str | Sequence[int]) -> Architecture:
    """The architecture of NASLib's ``op_indices`` (a tuple, or its text ``'(0, 2, 3, 2, 3,
    1)'``): edges (1,2), (1,3), (1,4), (2,3), (2,4), (3,4) of its 1-based nodes."""
    if isinstance(indices, str):
        indices = [int(c) for c in indices.strip().strip("()").split(",") if c.strip()]
    t = [NASLIB_OPS[int(i)] for i in indices]
    if len(t) != 6:
        raise InvalidArchitectureError(f"NASLib op indices {indices!r}: expected 6")
    return space.from_string(f"|{t[0]}~0|+|{t[1]}~0|{t[3]}~1|+|{t[2]}~0|{t[4]}~1|{t[5]}~2|")


# -- costs ----------------------------------------------------------------------------------------


@cache
def _cost_model(dataset: str, channels: int, cells: int) -> tuple[dict[str, float],
                                                                     dict[str, dict[str, float]]]:
    """Exact additive cost model: costs of the all-``none`` network, and what each operation on
    one edge adds (every edge of every cell adds the same per operation). Measured once per
    dataset with fvcore on real networks."""
    from nastk.evaluation.cost import count_flops, count_params

    classes, res = DATASETS[dataset]

    def measure(arch: dict[str, str]) -> dict[str, float]:
        model = nn.Sequential(NB201Network(arch, 3, channels, cells), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(channels * 4, classes))
        return {"params": float(count_params(model)),
                "flops": float(count_flops(model, (3, res, res)))}

    none = dict.fromkeys(EDGE_NAMES, "none")
    base = measure(none)
    per_op = {}
    for op in OPS:
        m = measure({**none, EDGE_NAMES[0]: op})
        per_op[op] = {k: m[k] - base[k] for k in base}
    return base, per_op


def architecture_costs(arch: Mapping[str, Any], dataset: str = "cifar10", channels: int = 16,
                       cells_per_stage: int = 5) -> dict[str, float]:
    """``params`` and ``flops`` (fvcore convention: one multiply-add = one flop) of the whole
    classification network for ``dataset``, without building it."""
    base, per_op = _cost_model(canonical_dataset(dataset), channels, cells_per_stage)
    out = dict(base)
    for name in EDGE_NAMES:
        for k, v in per_op[arch[name]].items():
            out[k] += v
    return out


# -- the tabular benchmark ------------------------------------------------------------------------


def _parse_trusted(text: str, path: Path, pos: int) -> Architecture:
    """Fast parse of a table's architecture string (the format is fixed; ops are checked)."""
    ops = [item.partition("~")[0] for item in text.replace("+", "").split("|") if item]
    if len(ops) != 6 or not set(ops) <= set(OPS):
        raise BenchmarkDataError(f"{path}: row {pos}: {text!r} is not a NAS-Bench-201 "
                                 "architecture string")
    return Architecture(dict(zip(EDGE_NAMES, ops, strict=True)))


class NB201Bench(TabularBenchmark):
    """Look-up of NAS-Bench-201 accuracies and costs for all 15,625 architectures.

    Accuracies are percentages, averaged over the benchmark's training seeds (see
    ``nasbench201-tables/SOURCE.md``). Latencies (ms) come from the measured tables in
    ``nasbench201-hardware``, one column per device; params and FLOPs are computed from the
    network (:func:`architecture_costs`). The folder holds ``nasbench201-tables/`` (and
    optionally ``nasbench201-hardware/``); it is found as
    :meth:`~nastk.data.tabular.TabularBenchmark.find_data_dir` says, ``$NASTK_NB201_DIR``
    first.
    """

    env_var = ENV_VAR
    required = (f"{TABLES}/{ACC_FILE}",)
    title = "NAS-Bench-201 tables"
    layout = (f"Put the folder {TABLES}/ (with {ACC_FILE}) and optionally {HARDWARE}/ (with "
              f"{LATENCY_FILE})")

    def __init__(self, data_dir: Path, latency_device: str = "pixel3") -> None:
        super().__init__(data_dir, NB201Space())
        self.latency_device = latency_device
        path = data_dir / TABLES / ACC_FILE
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) != 15625:
            raise BenchmarkDataError(f"{path}: expected 15625 architectures, found {len(rows)}; "
                                     "the file is truncated or not the NAS-Bench-201 table")
        needed = {c for cols in _COLUMNS.values() for c in cols.values()} | {"index", "arch_str"}
        missing = needed - set(rows[0])
        if missing:
            raise BenchmarkDataError(f"{path}: missing columns {sorted(missing)}")
        self._acc: dict[str, list[float]] = {c: [] for c in needed - {"index", "arch_str"}}
        for pos, row in enumerate(rows):
            if int(row["index"]) != pos:
                raise BenchmarkDataError(f"{path}: row {pos} has index {row['index']}; rows "
                                         "must be in official index order")
            self.add_arch(_parse_trusted(row["arch_str"], path, pos))
            for c in self._acc:
                self._acc[c].append(float(row[c]) if row[c] else math.nan)
        self._latency: list[float] | None = None
        lat_path = data_dir / HARDWARE / LATENCY_FILE
        if lat_path.is_file():
            with lat_path.open(newline="") as f:
                reader = csv.DictReader(f)
                if latency_device not in (reader.fieldnames or []):
                    devices = [c for c in reader.fieldnames or [] if c not in ("index",
                                                                               "arch_str")]
                    raise BenchmarkDataError(f"latency device {latency_device!r} not in "
                                             f"{lat_path}; devices: {devices}")
                self._latency = [float(r[latency_device]) if r[latency_device] else math.nan
                                 for r in reader]

    @classmethod
    def load(cls, data_dir: str | Path | None = None,
             latency_device: str = "pixel3") -> NB201Bench:
        """The benchmark from ``data_dir`` (see :func:`find_data_dir`), cached per process."""
        return cls.from_folder(data_dir, latency_device)

    def index(self, arch: Architecture | Mapping[str, Any]) -> int:
        """The official NB201 index of ``arch``."""
        return self.row(arch)

    def accuracy(self, arch: Architecture | Mapping[str, Any], dataset: str = "cifar10",
                 kind: AccuracyKind = "val12") -> float:
        """Accuracy (%) of ``arch``: ``val12`` (12-epoch validation, the search signal),
        ``test12``, ``val200`` or ``test200`` (200-epoch test, the reported figure)."""
        if kind not in _COLUMNS:
            raise ValueError(f"accuracy kind {kind!r} unknown; use one of {sorted(_COLUMNS)}")
        return self._acc[_COLUMNS[kind][canonical_dataset(dataset)]][self.index(arch)]

    def column(self, dataset: str, kind: AccuracyKind) -> list[float]:
        """One accuracy for every architecture, in index order."""
        return list(self._acc[_COLUMNS[kind][canonical_dataset(dataset)]])

    def optimum(self, dataset: str = "cifar10", kind: AccuracyKind = "test200") -> float:
        """The best accuracy of the whole space."""
        return self.best_value(self.column(dataset, kind))

    def costs(self, arch: Architecture | Mapping[str, Any],
              dataset: str = "cifar10") -> dict[str, float]:
        """``params``, ``flops`` and, when the hardware table is present, ``latency_ms`` on
        ``latency_device`` (missing for the Eagle device's 341 disconnected architectures)."""
        arch = self.space.validate(arch)
        out = architecture_costs(arch, dataset)
        if self._latency is not None:
            lat = self._latency[self.row(arch)]
            if not math.isnan(lat):
                out["latency_ms"] = lat
        return out


#: the folder holding ``nasbench201-tables/`` (see :meth:`NB201Bench.find_data_dir`)
find_data_dir = NB201Bench.find_data_dir
#: ``None`` when the benchmark tables are found, else the reason (for test skips)
nb201_data_missing = NB201Bench.data_missing


class NB201Evaluator(TabularEvaluator):
    """Tabular evaluator: a candidate's 12-epoch validation accuracy (``val_acc_12ep``, what
    searches optimise) and 200-epoch test accuracy (``test_acc_200ep``, what is reported), plus
    costs, looked up in NAS-Bench-201. Counts the queries it answered."""

    SEARCH_METRIC = "val_acc_12ep"
    REPORT_METRIC = "test_acc_200ep"
    bench: NB201Bench

    def __init__(self, dataset: str = "cifar10", data_dir: str | Path | None = None,
                 latency_device: str = "pixel3") -> None:
        self.dataset = canonical_dataset(dataset)
        super().__init__(NB201Bench.load(data_dir, latency_device))

    def metrics(self, arch: Architecture) -> dict[str, float]:
        return {self.SEARCH_METRIC: self.bench.accuracy(arch, self.dataset, "val12"),
                self.REPORT_METRIC: self.bench.accuracy(arch, self.dataset, "test200")}

    def costs(self, arch: Architecture) -> dict[str, float]:
        return self.bench.costs(arch, self.dataset)

    def info(self, arch: Architecture) -> dict[str, Any]:
        return {"nb201_index": self.bench.index(arch)}


class NB201FidelityEvaluator(NB201Evaluator):
    """Multi-fidelity tabular evaluator charged in epochs: NAS-Bench-201 answers at 12 and at
    200 training epochs (its two schedules), so a scheduler (successive halving, ASHA,
    Hyperband with rungs 12 and 200) can train a candidate for 12 epochs and promote it to 200,
    paying the 188 more (:attr:`fidelity`: levels 12 and 200, not resumable).

    :meth:`evaluate_at` gives ``val_acc``, the validation accuracy reached at that fidelity
    (``val12`` at 12 epochs, ``val200`` at 200: what a search ranks), and always the 200-epoch
    test accuracy ``test_acc_200ep`` (for the report only; a search must never rank by it),
    with the costs and ``info = {"nb201_index", "resource"}``. :meth:`evaluate` is
    ``evaluate_at(arch, 200)``. A resource other than 12 or 200 gives a failed result naming
    the two levels. :attr:`queries` counts the look-ups answered, :attr:`epochs` the epochs
    they stand for (a promotion evaluated afresh at 200 counts 200 here; the search loop
    charges it the difference, 188)."""

    SEARCH_METRIC = "val_acc"
    REPORT_METRIC = "test_acc_200ep"
    #: resource (epochs) -> accuracy kind of the validation accuracy at it
    KINDS: ClassVar[dict[float, AccuracyKind]] = {12.0: "val12", 200.0: "val200"}

    def __init__(self, dataset: str = "cifar10", data_dir: str | Path | None = None,
                 latency_device: str = "pixel3") -> None:
        super().__init__(dataset, data_dir, latency_device)
        self.fidelity = Fidelity(name="epochs", max=200, min=12, levels=(12, 200),
                                 resumable=False)
        self.epochs = 0.0

    def metrics_at(self, arch: Architecture, resource: float) -> dict[str, float]:
        """``val_acc`` at ``resource`` epochs (12 or 200) and ``test_acc_200ep``."""
        kind = self.KINDS[self.fidelity.check(resource)]
        return {self.SEARCH_METRIC: self.bench.accuracy(arch, self.dataset, kind),
                self.REPORT_METRIC: self.bench.accuracy(arch, self.dataset, "test200")}

    def metrics(self, arch: Architecture) -> dict[str, float]:
        return self.metrics_at(arch, self.fidelity.max)

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result:
        return self.evaluate_at(arch, self.fidelity.max, checkpoint=checkpoint)

    def evaluate_at(self, arch: Architecture, resource: float, *,
                    checkpoint: Path | None = None, state: Path | None = None,
                    state_out: Path | None = None) -> Result:
        """The table's answer at ``resource`` epochs (``checkpoint``, ``state`` and
        ``state_out`` are ignored: nothing is trained, nothing resumes)."""
        try:
            r = self.fidelity.check(resource)
        except (TypeError, ValueError) as err:
            return Result.failed(f"NAS-Bench-201: {err}")
        metrics = self.metrics_at(arch, r)
        info = {**self.info(arch), "resource": r}
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if bad:
            failed = Result.failed(f"NAS-Bench-201 index {info['nb201_index']}: non-finite "
                                   f"metrics {bad}", self.costs(arch))
            return Result(failed.status, failed.metrics, failed.costs, failed.error, 0.0, info)
        self.queries += 1
        self.epochs += r
        return Result.complete(metrics, self.costs(arch), info=info)

    def identity(self) -> dict[str, Any]:
        """What this evaluator is, for a run's identity."""
        return {"kind": "nb201_fidelity", "dataset": self.dataset,
                "fidelity": {"name": self.fidelity.name, "max": self.fidelity.max,
                             "min": self.fidelity.min, "levels": self.fidelity.levels}}


def fidelity_evaluator(dataset: str = "cifar10", data_dir: str | Path | None = None
                       ) -> NB201FidelityEvaluator:
    """A :class:`NB201FidelityEvaluator` for ``dataset`` (the benchmark is read once per
    process)."""
    return NB201FidelityEvaluator(dataset, data_dir)


def _function(name: str, dataset: str) -> Callable[[Architecture], Lookup]:
    return lookup_function(lambda: NB201Evaluator(dataset), __name__, name,
                           f"NAS-Bench-201 {dataset} look-up for `evaluator: {{kind: function}}` "
                           f"(data from ${ENV_VAR} or ../shared/data)")


#: ``evaluator: {kind: function, function: nastk.search_spaces.nb201:cifar10}`` in a config
cifar10 = _function("cifar10", "cifar10")
cifar100 = _function("cifar100", "cifar100")
imagenet16 = _function("imagenet16", "ImageNet16-120")


# -- one look-up function per data set and device -------------------------------------------------

#: the name prefixes of the look-up functions -> their data set
LOOKUP_DATASETS: dict[str, str] = {"cifar10": "cifar10", "cifar100": "cifar100",
                                   "imagenet16": "ImageNet16-120"}
#: HELP's 27 device settings, the columns of ``nb201_latency_ms.csv`` besides Eagle's (the
#: device list when that file is absent; suffix ``_<n>`` = batch size)
HELP_DEVICES: tuple[str, ...] = (
    "1080ti_1", "1080ti_256", "1080ti_32", "2080ti_1", "2080ti_256", "2080ti_32",
    "essential_ph_1", "eyeriss", "fpga", "gold_6226", "gold_6240", "pixel2", "pixel3", "raspi4",
    "samsung_a50", "samsung_s7", "silver_4114", "silver_4210r", "titan_rtx_1", "titan_rtx_256",
    "titan_rtx_32", "titanx_1", "titanx_256", "titanx_32", "titanxp_1", "titanxp_256",
    "titanxp_32")
_DEVICE_FUNCTIONS: dict[str, Callable[[Architecture], Lookup]] = {}


@cache
def latency_devices() -> tuple[str, ...]:
    """The device columns of ``nasbench201-hardware/nb201_latency_ms.csv`` (its header only is
    read), or :data:`HELP_DEVICES` when the file is not found."""
    try:
        path = find_data_dir() / HARDWARE / LATENCY_FILE
    except BenchmarkDataError:
        return HELP_DEVICES
    if not path.is_file():
        return HELP_DEVICES
    with path.open(newline="") as f:
        header = next(csv.reader(f), [])
    return tuple(c for c in header if c not in ("index", "arch_str")) or HELP_DEVICES


def _device_evaluator(dataset: str, device: str) -> NB201Evaluator:
    evaluator = NB201Evaluator(dataset, latency_device=device)
    if evaluator.bench._latency is None:
        raise BenchmarkDataError(
            f"NAS-Bench-201 latency of {device!r}: {HARDWARE}/{LATENCY_FILE} is not in "
            f"{evaluator.bench.data_dir}; put it there (see {HARDWARE}/SOURCE.md)")
    return evaluator


def __getattr__(name: str) -> Callable[[Architecture], Lookup]:
    """``<dataset>_<device>``: the look-up function of that data set with the latency of that
    device (e.g. ``cifar10_raspi4``), made once; see the module docstring."""
    if name in _DEVICE_FUNCTIONS:
        return _DEVICE_FUNCTIONS[name]
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    prefix, _, device = name.partition("_")
    devices = latency_devices()
    if prefix not in LOOKUP_DATASETS or device not in devices:
        problem = (f"unknown data set {prefix!r}" if prefix not in LOOKUP_DATASETS
                   else f"unknown device {device!r}")
        raise AttributeError(
            f"module {__name__!r} has no attribute {name!r} ({problem}): a device's look-up is "
            f"named <dataset>_<device>, dataset one of {', '.join(LOOKUP_DATASETS)}, device "
            f"one of {', '.join(devices)}")
    dataset = LOOKUP_DATASETS[prefix]
    fn = lookup_function(lambda: _device_evaluator(dataset, device), __name__, name,
                         f"NAS-Bench-201 {dataset} look-up with the latency (``latency_ms``) "
                         f"of {device} for `evaluator: {{kind: function}}` (data from "
                         f"${ENV_VAR} or ../shared/data)")
    return _DEVICE_FUNCTIONS.setdefault(name, fn)
