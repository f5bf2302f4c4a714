"""What an architecture costs: parameters, FLOPs and CPU latency of its model.

FLOPs come from fvcore, which counts **one fused multiply-add as one flop** (so a ``k x k``
convolution producing ``C_out x H x W`` outputs from ``C_in`` channels costs
``C_out * H * W * C_in * k * k / groups``, the usual "MACs" figure; multiply by two for the
"two flops per multiply-add" convention). Operations fvcore has no formula for (activations,
element-wise additions) count as zero.
"""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["count_flops", "count_params", "measure_latency_ms", "model_costs"]


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


def measure_latency_ms(model: nn.Module, input_shape: Sequence[int], repeats: int = 20,
                       warmup: int = 3) -> float:
    """Median wall time in milliseconds of a batch-1 forward pass on CPU.

    The model runs in eval and inference mode; ``warmup`` untimed passes come first. The model
    is measured where it is when it already lives on the CPU; otherwise a CPU copy is timed.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if _device_of(model).type != "cpu":
        import copy

        model = copy.deepcopy(model).cpu()
    x = torch.zeros(1, *input_shape)
    times: list[float] = []
    with _eval_mode(model), torch.inference_mode():
        for _ in range(max(warmup, 0)):
            model(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def model_costs(model: nn.Module, input_shape: Sequence[int], latency: bool = True,
                repeats: int = 20) -> dict[str, float]:
    """``{"params", "flops", "latency_ms"}`` of ``model`` for inputs of ``input_shape``
    (``latency_ms`` is left out when ``latency`` is false)."""
    costs = {"params": float(count_params(model)),
             "flops": float(count_flops(model, input_shape))}
    if latency:
        costs["latency_ms"] = measure_latency_ms(model, input_shape, repeats=repeats)
    return costs
