"""Profiling a device into a latency table: every unit a space's architectures can use, timed
alone on the device, and a few whole networks (the smallest, the largest and random ones) to
fit the table's correction (:class:`~nastk.latency.correction.LatencyCorrection`), all in the
same interleaved rounds (:meth:`~nastk.latency.backends.Backend.measure_all`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from nastk.core.errors import NastkError
from nastk.latency.backends import Backend, Measured
from nastk.latency.correction import LatencyCorrection
from nastk.latency.predictor import space_record
from nastk.latency.table import LatencyTable, NetworkTiming, UnitTiming
from nastk.latency.units import latency_units

__all__ = ["profile_alongside", "profile_table", "whole_networks"]

#: ``(done, total, what)`` after each timing
Progress = Callable[[int, int, str], None]


def whole_networks(space: Any, n: int, seed: int) -> list[Any]:
    """``n`` architectures for the correction: the space's smallest and largest (when it has
    them), then distinct ones drawn with ``seed``."""
    archs: list[Any] = []
    for pick in ("smallest", "largest"):
        fn = getattr(space, pick, None)
        if callable(fn) and len(archs) < n:
            archs.append(space.validate(fn()))
    rng = np.random.default_rng(seed)
    seen = {a.key for a in archs}
    tries = 0
    while len(archs) < n and tries < 100 * n:
        tries += 1
        arch = space.sample(rng)
        if arch.key not in seen:
            seen.add(arch.key)
            archs.append(arch)
    return archs


def profile_table(space: Any, input_shape: tuple[int, ...],
                  build_model: Callable[[Any], nn.Module], backend: Backend, *,
                  networks: int = 20, seed: int = 0, level: float = 0.9,
                  task: dict[str, Any] | None = None,
                  progress: Progress | None = None) -> LatencyTable:
    """The latency table of ``space`` at ``input_shape`` on ``backend``'s device.

    ``build_model(arch)`` makes the whole network a search measures (the task's model);
    ``networks`` of them (at least 3) are timed for the correction, drawn by
    :func:`whole_networks` with ``seed``; ``level`` is the interval's coverage."""
    return profile_alongside(space, input_shape, build_model, backend, networks=networks,
                             seed=seed, level=level, task=task, progress=progress)[0]


def profile_alongside(space: Any, input_shape: tuple[int, ...],
                      build_model: Callable[[Any], nn.Module], backend: Backend, *,
                      alongside: Sequence[tuple[nn.Module, tuple[int, ...]]] = (),
                      networks: int = 20, seed: int = 0, level: float = 0.9,
                      task: dict[str, Any] | None = None, progress: Progress | None = None
                      ) -> tuple[LatencyTable, list[Measured]]:
    """:func:`profile_table`, with the modules ``alongside`` timed in the same interleaved
    rounds (their timings returned too, not used by the table): to test a table against
    networks measured under the very conditions it was profiled in."""
    if networks < 3:
        raise NastkError(f"--networks must be at least 3 (the correction is a line fitted with "
                         f"leave-one-out errors), got {networks}")
    described = latency_units(space, input_shape)
    units = described.units()
    archs = whole_networks(space, networks, seed)
    # units and whole networks in the same interleaved rounds: the same slow and fast phases
    items = [(u.build(), u.input_shape) for u in units]
    items += [(build_model(a), tuple(input_shape)) for a in archs]
    items += [(m, tuple(shape)) for m, shape in alongside]

    def report(done: int, steps: int) -> None:
        if progress is not None:
            progress(done, steps, f"round {1 + (done - 1) * backend.rounds // steps}/"
                     f"{backend.rounds}")

    times = backend.measure_all(items, report)
    timings = {u.key: UnitTiming(ms=m.ms, spread=round(m.spread, 4), busy=m.busy)
               for u, m in zip(units, times, strict=False)}
    measured = [NetworkTiming(arch=a.as_dict(),
                              table_ms=float(sum(timings[k].ms for k in described.keys(a))),
                              measured_ms=m.ms, spread=round(m.spread, 4))
                for a, m in zip(archs, times[len(units):len(units) + len(archs)], strict=True)]
    correction = LatencyCorrection.fit([n.table_ms for n in measured],
                                       [n.measured_ms for n in measured], level)
    table = LatencyTable(space=space_record(space), input_shape=list(input_shape), task=task,
                         device=backend.device(), repeats=backend.repeats,
                         warmup=backend.warmup, rounds=backend.rounds,
                         created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), units=timings,
                         networks=measured, correction=correction)
    return table, list(times[len(units) + len(archs):])
