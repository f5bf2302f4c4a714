"""Saving and loading plain weights: CPU state dicts that load with ``weights_only=True``, and
loading that names the first tensor that does not fit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nastk.errors import NastkError

__all__ = ["load_file", "load_matching", "read_weights", "save_state", "save_weights",
           "write_atomic"]


def write_atomic(path: str | Path, data: bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` (bytes, or a function writing the file it is given) to ``path`` through a
    temporary sibling renamed into place: a killed write never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if isinstance(data, bytes):
        tmp.write_bytes(data)
    else:
        data(tmp)
    tmp.replace(path)
    return path


def save_state(state: Any, path: str | Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically; ``state`` should hold only plain values and
    tensors so that it loads with ``weights_only=True``."""
    return write_atomic(path, lambda tmp: torch.save(state, tmp))


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Save ``model``'s state dict as CPU tensors, atomically."""
    return save_state({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def load_file(path: str | Path, what: str = "checkpoint", missing_hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with errors that name ``what`` and
    the path (``missing_hint`` is appended when the file does not exist)."""
    p = Path(path)
    if not p.is_file():
        raise NastkError(f"{what} {p} not found{missing_hint}")
    try:
        return torch.load(p, weights_only=True, map_location="cpu")
    except Exception as err:
        raise NastkError(f"cannot read {what} {p}: {err}") from err


def read_weights(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Load a state dict saved by :func:`save_weights` (``weights_only=True``, on the CPU)."""
    p = Path(path)
    state = load_file(p, what)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise NastkError(f"{what} {p} is not a state dict of tensors")
    return state


def load_matching(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                  target: str) -> None:
    """Load ``state_dict`` into ``module`` strictly; on a mismatch raise a :class:`NastkError`
    that names the first missing, reshaped or unexpected tensor (``"<source> does not fit
    <target>: ..."``)."""
    own = module.state_dict()
    hint = "Was it trained with other space or task options?"
    for name, tensor in own.items():
        if name not in state_dict:
            raise NastkError(f"{source} does not fit {target}: tensor {name!r} (shape "
                             f"{tuple(tensor.shape)}) is missing from the checkpoint. {hint}")
        theirs = state_dict[name]
        if tuple(theirs.shape) != tuple(tensor.shape):
            raise NastkError(f"{source} does not fit {target}: tensor {name!r} has shape "
                             f"{tuple(theirs.shape)} in the checkpoint but "
                             f"{tuple(tensor.shape)} in the model. {hint}")
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise NastkError(f"{source} does not fit {target}: unexpected tensor {extra[0]!r} in "
                         f"the checkpoint ({len(extra)} unexpected in all). {hint}")
    module.load_state_dict(state_dict)
