"""Numeric precision and device checks: which device a config may name, which precision runs
on it, autocast for the forward pass and gradient scaling for fp16.

A config field naming a device (``device: cuda``) or a precision (``precision: bf16``) is
checked once, when the run is built, so that a run which cannot succeed stops at once with a
message naming the field; training and evaluation then use :func:`autocast` (and, for
training, :class:`GradScaling`). With ``fp32`` every helper here is a no-op, so fp32 results are
exactly those of plain torch code.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Literal, get_args

import torch
from torch import nn

from nastk.core.errors import ConfigError

__all__ = [
    "AutocastModel",
    "GradScaling",
    "Precision",
    "autocast",
    "autocast_model",
    "check_precision",
    "resolve_device",
    "to_float32",
]

#: ``fp32``: plain float32; ``fp16``: float16 autocast with gradient scaling (CUDA only);
#: ``bf16``: bfloat16 autocast (CPU, and CUDA devices that support it).
Precision = Literal["fp32", "fp16", "bf16"]

_DTYPES: dict[str, torch.dtype] = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _cuda_state() -> str:
    return (f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
            + (f", {torch.cuda.device_count()} device(s)" if torch.cuda.is_available() else ""))


def resolve_device(device: str, field: str) -> torch.device:
    """The torch device ``device`` names (``cpu``, ``cuda`` or ``cuda:N``; ``mps`` where torch
    sees it). Raises :class:`~nastk.core.errors.ConfigError` naming ``field`` when the string is
    not a device, or names a CUDA device this torch build cannot use."""
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{field}: {device!r} is not a torch device; use 'cpu', 'cuda' or "
                          "'cuda:N'") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{field}: {device!r} requested but this torch build sees no CUDA "
                              f"device ({_cuda_state()}); set device: cpu or install a CUDA "
                              "build of torch")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ConfigError(f"{field}: {device!r} requested but torch sees only "
                              f"{torch.cuda.device_count()} CUDA device(s) ({_cuda_state()}); "
                              f"use an index below {torch.cuda.device_count()}")
        return resolved
    if resolved.type == "mps" and torch.backends.mps.is_available():
        return resolved
    raise ConfigError(f"{field}: device {device!r} is not supported here (torch "
                      f"{torch.__version__}); use 'cpu', 'cuda' or 'cuda:N'")


def check_precision(precision: Precision, device: torch.device | str, field: str) -> None:
    """Refuse a precision ``device`` cannot run: ``fp16`` needs a CUDA device; ``bf16`` runs on
    the CPU and on CUDA devices with bfloat16 support; ``fp32`` runs anywhere. Raises
    :class:`~nastk.core.errors.ConfigError` naming ``field``."""
    device = torch.device(device)
    if precision not in get_args(Precision):
        raise ConfigError(f"{field}: unknown precision {precision!r}; use one of "
                          f"{list(get_args(Precision))}")
    if precision == "fp32":
        return
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"{field}: fp16 needs a CUDA device (device is {str(device)!r}); "
                          "use precision: bf16 or fp32 on the CPU")
    if precision == "bf16":
        if device.type == "cpu":
            return
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"{field}: bf16 is not supported by CUDA device "
                              f"{torch.cuda.get_device_name(device)!r}; use precision: fp16 "
                              "or fp32")
        if device.type != "cuda":
            raise ConfigError(f"{field}: bf16 is supported on cpu and cuda only (device is "
                              f"{str(device)!r}); use precision: fp32")


def device_for(device: str, precision: Precision, where: str) -> torch.device:
    """The torch device of a config's ``device`` and ``precision`` fields (under ``where``,
    e.g. ``evaluator.train``), both checked: :func:`resolve_device`, :func:`check_precision`."""
    resolved = resolve_device(device, f"{where}.device")
    check_precision(precision, resolved, f"{where}.precision")
    return resolved


def autocast(device: torch.device, precision: Precision) -> AbstractContextManager[Any]:
    """``torch.autocast`` to ``precision``'s dtype on ``device``'s type; a no-op for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def to_float32(data: Any) -> Any:
    """``data`` with every floating tensor of lower precision (fp16, bf16) cast to float32:
    tensors, and tuples, lists and dicts of them, nested to any depth (named tuples and dict
    subclasses keep their type; other values are returned as they are)."""
    if isinstance(data, torch.Tensor):
        return data.float() if data.is_floating_point() and data.dtype != torch.float64 \
            else data
    if isinstance(data, Mapping):
        cast = {k: to_float32(v) for k, v in data.items()}
        try:
            return type(data)(cast)  # type: ignore[call-arg]
        except TypeError:
            return cast
    if isinstance(data, tuple) and hasattr(data, "_fields"):  # a NamedTuple
        return type(data)(*(to_float32(v) for v in data))
    if isinstance(data, (list, tuple)):
        return type(data)(to_float32(v) for v in data)
    return data


class AutocastModel(nn.Module):
    """``model`` run under :func:`autocast`, its outputs cast to float32 (so that metrics,
    post-processing and losses computed from them are in float32). Its parameters, buffers and
    train/eval mode are the wrapped model's."""

    def __init__(self, model: nn.Module, device: torch.device, precision: Precision) -> None:
        super().__init__()
        self.model = model
        self.device = device
        self.precision: Precision = precision

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with autocast(self.device, self.precision):
            out = self.model(*args, **kwargs)
        return to_float32(out)


def autocast_model(model: nn.Module, device: torch.device, precision: Precision) -> nn.Module:
    """``model`` itself for fp32, else an :class:`AutocastModel` around it."""
    return model if precision == "fp32" else AutocastModel(model, device, precision)


class GradScaling:
    """Loss scaling for fp16 training on CUDA (a ``torch.amp.GradScaler``); for any other
    precision or device a pass-through, so an fp32 step is exactly ``loss.backward();
    optimizer.step()``.

    Per step: :meth:`backward`, then :meth:`unscale` if the gradients are clipped, then
    :meth:`step` (skipped when the scaled gradients hold inf or NaN) and :meth:`update`.
    :meth:`state_dict` (empty for a pass-through) goes into a checkpoint, and
    :meth:`load_state_dict` restores it."""

    def __init__(self, device: torch.device, precision: Precision) -> None:
        self.enabled = precision == "fp16" and device.type == "cuda"
        self._scaler = torch.amp.GradScaler("cuda") if self.enabled else None

    def __repr__(self) -> str:
        return f"GradScaling(enabled={self.enabled})"

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (scaled when enabled)."""
        if self._scaler is None:
            loss.backward()
        else:
            self._scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Divide ``optimizer``'s gradients by the scale in place (before clipping them)."""
        if self._scaler is not None:
            self._scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``, skipped when enabled and the gradients are not finite."""
        if self._scaler is None:
            optimizer.step()
        else:
            self._scaler.step(optimizer)

    def update(self) -> None:
        """Adjust the scale for the next step (lower after a skipped step)."""
        if self._scaler is not None:
            self._scaler.update()

    @property
    def scale(self) -> float:
        """The current loss scale (1.0 for a pass-through)."""
        return 1.0 if self._scaler is None else float(self._scaler.get_scale())

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state; ``{}`` for a pass-through."""
        return {} if self._scaler is None else self._scaler.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output. An empty state (a checkpoint written without
        fp16) leaves a fresh scaler as it is; a pass-through ignores any state."""
        if self._scaler is not None and state:
            self._scaler.load_state_dict(dict(state))
