"""What an architecture costs: parameters, FLOPs and CPU latency of its model.

FLOPs come from fvcore, which counts **one fused multiply-add as one flop** (so a ``k x k``
convolution producing ``C_out x H x W`` outputs from ``C_in`` channels costs
``C_out * H * W * C_in * k * k / groups``, the usual "MACs" figure; multiply by two for the
"two flops per multiply-add" convention). Operations fvcore has no formula for (activations,
element-wise additions) count as zero.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nastk.core.cpus import available_cpus

if TYPE_CHECKING:
    from nastk.space.architecture import Architecture
    from nastk.space.search_space import SearchSpace

__all__ = ["MAX_LATENCY_SPREAD", "Latency", "TableCosts", "count_flops", "count_params",
           "measure_latency", "measure_latency_ms", "model_costs", "spread_of", "time_calls",
           "time_passes"]


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _fvcore() -> Any:
    """``fvcore.nn``, imported quietly (its import uses the deprecated ``torch.jit.script``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import fvcore.nn

    return fvcore.nn


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared parameters counted once), via ``fvcore.nn.parameter_count``."""
    return int(_fvcore().parameter_count(model).get("", 0))


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """FLOPs of one forward pass of a batch-1 input of shape ``(1, *input_shape)``.

    Counted by ``fvcore.nn.FlopCountAnalysis`` with the model in eval mode and without
    gradients; fvcore counts one fused multiply-add as one flop. Warnings about unsupported
    operators (counted as zero) and uncalled modules are silenced.
    """
    flop_count_analysis = _fvcore().FlopCountAnalysis
    x = torch.zeros(1, *input_shape, device=_device_of(model))
    fvcore_log = logging.getLogger("fvcore")
    level = fvcore_log.level
    fvcore_log.setLevel(logging.ERROR)
    try:
        with _eval_mode(model), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            analysis = (flop_count_analysis(model, x)
                        .unsupported_ops_warnings(False)
                        .uncalled_modules_warnings(False)
                        .tracer_warnings("none"))
            return int(analysis.total())
    finally:
        fvcore_log.setLevel(level)


#: a latency measurement whose interquartile range exceeds this share of its median was
#: taken while other work shared the cores (see :func:`measure_latency`)
MAX_LATENCY_SPREAD = 0.25


@dataclass(frozen=True)
class Latency:
    """A latency measurement and the conditions it was taken under.

    ``ms``: the median wall time of a batch-1 forward pass in milliseconds; ``spread``: the
    interquartile range of the timed passes over their median; ``threads``: torch's CPU
    threads; ``repeats``: timed passes per attempt; ``attempts``: how many times it was
    measured (a measurement is repeated while its spread says the machine was busy);
    ``load``: the 1-minute load average per CPU when it was taken (None where the system has
    none); ``busy``: the spread of every attempt exceeded ``max_spread``, so ``ms`` says as
    much about the other work on the machine as about the model.
    """

    ms: float
    spread: float
    threads: int
    repeats: int
    attempts: int
    load: float | None
    busy: bool
    max_spread: float = MAX_LATENCY_SPREAD

    def conditions(self) -> dict[str, Any]:
        """The measurement's conditions, for a result's ``info``."""
        return {"spread": round(self.spread, 4), "threads": self.threads,
                "repeats": self.repeats, "attempts": self.attempts,
                "load_per_cpu": None if self.load is None else round(self.load, 2),
                "max_spread": self.max_spread, "busy": self.busy}


def _load_per_cpu() -> float | None:
    try:
        return os.getloadavg()[0] / available_cpus()
    except (AttributeError, OSError):
        return None


def time_passes(call: Callable[[], Any], repeats: int) -> list[float]:
    """Wall times (ms) of ``repeats`` calls of ``call``, one by one."""
    times: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def spread_of(times: list[float]) -> float:
    """The interquartile range of ``times`` over their median (0 for fewer than 4)."""
    if len(times) < 4:
        return 0.0
    q1, _, q3 = statistics.quantiles(times, n=4)
    return (q3 - q1) / max(statistics.median(times), 1e-12)


def time_calls(call: Callable[[], Any], repeats: int = 20, warmup: int = 3, *,
               max_spread: float = MAX_LATENCY_SPREAD, attempts: int = 3
               ) -> tuple[float, float, int]:
    """``(median ms, spread, attempts made)`` of ``call()``: ``warmup`` untimed calls, then
    ``repeats`` timed ones, taken again (``attempts`` times at most) while their interquartile
    range exceeds ``max_spread`` of their median; the attempt with the smallest spread is
    kept. ``call`` must return only once its work is done (a CUDA call synchronises)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    for _ in range(max(warmup, 0)):
        call()
    best: tuple[float, list[float]] | None = None
    tries = 0
    while tries < attempts:
        tries += 1
        times = time_passes(call, repeats)
        spread = spread_of(times)
        if best is None or spread < best[0]:
            best = (spread, times)
        if spread <= max_spread:
            break
    assert best is not None
    return float(statistics.median(best[1])), best[0], tries


def measure_latency(model: nn.Module, input_shape: Sequence[int], repeats: int = 20,
                    warmup: int = 3, *, max_spread: float = MAX_LATENCY_SPREAD,
                    attempts: int = 3) -> Latency:
    """The median wall time of a batch-1 CPU forward pass, with its conditions.

    The model runs in eval and inference mode with torch's current thread count; ``warmup``
    untimed passes come first. The model is measured where it is when it already lives on the
    CPU; otherwise a CPU copy is timed. While the timed passes' interquartile range exceeds
    ``max_spread`` of their median (other work took the cores), the measurement is taken
    again, ``attempts`` times at most; the attempt with the smallest spread is kept and
    flagged ``busy`` when even that one exceeds it (:func:`time_calls`).
    """
    if _device_of(model).type != "cpu":
        import copy

        model = copy.deepcopy(model).cpu()
    x = torch.zeros(1, *input_shape)
    with _eval_mode(model), torch.inference_mode():
        ms, spread, tries = time_calls(lambda: model(x), repeats, warmup,
                                       max_spread=max_spread, attempts=attempts)
    return Latency(ms, spread, torch.get_num_threads(), repeats, tries, _load_per_cpu(),
                   spread > max_spread, max_spread)


def measure_latency_ms(model: nn.Module, input_shape: Sequence[int], repeats: int = 20,
                       warmup: int = 3) -> float:
    """Median wall time in milliseconds of a batch-1 forward pass on CPU
    (:func:`measure_latency`'s ``ms``)."""
    return measure_latency(model, input_shape, repeats, warmup).ms


def model_costs(model: nn.Module, input_shape: Sequence[int], latency: bool = True,
                repeats: int = 20, info: dict[str, Any] | None = None,
                counts: Mapping[str, float] | None = None) -> dict[str, float]:
    """``{"params", "flops", "latency_ms"}`` of ``model`` for inputs of ``input_shape``
    (``latency_ms`` is left out when ``latency`` is false). With ``info`` (a result's info),
    the latency measurement's conditions go into ``info["latency"]``. ``counts``: the params
    and FLOPs already known (a cost table's, :class:`TableCosts`), taken instead of counting
    them again; the latency is still measured on ``model``."""
    if counts is not None:
        costs = {"params": float(counts["params"]), "flops": float(counts["flops"])}
    else:
        costs = {"params": float(count_params(model)),
                 "flops": float(count_flops(model, input_shape))}
    if latency:
        measured = measure_latency(model, input_shape, repeats=repeats)
        costs["latency_ms"] = measured.ms
        if info is not None:
            info["latency"] = measured.conditions()
    return costs


class TableCosts:
    """Params and FLOPs of a task's models of the architectures of ``space`` at inputs of
    ``input_shape``, from the space's cost table (:meth:`SearchSpace.body_costs`) without
    building the networks; ``None`` for a space without a table (count on built networks
    then, as before).

    A model is a body plus the rest (a task's head, its input normalisation). fvcore's count
    is a sum over the operators that run and the rest only sees the body's outputs, so the
    rest costs the same for every architecture of one :meth:`SearchSpace.body_geometry` (one
    resolution, one input shape): it is counted once per geometry, as ``count(build(arch)) -
    table(arch)`` on the first architecture asked for with it (``build(arch)``: the model the
    caller would otherwise count, e.g. ``task.build_model(space, arch)`` or a supernet's
    ``extract(arch)``), and added to the table's body cost from then on. The values are
    therefore exactly fvcore's counts on the built models (as floats).
    """

    def __init__(self, space: SearchSpace | None, input_shape: Sequence[int],
                 build: Callable[[Architecture], nn.Module]) -> None:
        self.space = space
        self.input_shape = tuple(int(s) for s in input_shape)
        self.build = build
        #: geometry -> the params and FLOPs of the rest of the model
        self.rest: dict[tuple[Any, ...], dict[str, float]] = {}

    def __call__(self, arch: Architecture) -> dict[str, float] | None:
        """``{"params", "flops"}`` of the model of ``arch``, or ``None`` without a table."""
        if self.space is None:
            return None
        body = self.space.body_costs(arch, self.input_shape)
        if body is None:
            return None
        key = self.space.body_geometry(arch, self.input_shape)
        rest = self.rest.get(key)
        if rest is None:
            model = self.build(arch)
            counted = {"params": float(count_params(model)),
                       "flops": float(count_flops(model, self.input_shape))}
            rest = self.rest[key] = {k: counted[k] - body[k] for k in counted}
        return {k: body[k] + rest[k] for k in ("params", "flops")}
