"""Losses as named terms: a task's loss (or a distillation loss) may be one tensor or a mapping
of named terms, whose sum is what is optimised; every term's mean over the last epoch is
recorded with the trial as ``train_loss_<term>`` (the sum as ``train_loss``)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping

import torch

__all__ = ["LossValue", "RecentLosses", "combine_loss"]

#: what ``Task.loss`` returns: the loss, or its named terms (summed for the gradient)
LossValue = torch.Tensor | Mapping[str, torch.Tensor]


def combine_loss(value: LossValue) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(total, terms)``: the scalar to backpropagate and the named terms (empty for a plain
    tensor). Raises a ``TypeError`` that says what a loss must be for anything else."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 0:
            raise TypeError(f"a loss must be a scalar tensor, got shape {tuple(value.shape)}; "
                            "reduce it (e.g. .mean())")
        return value, {}
    if isinstance(value, Mapping):
        if not value:
            raise TypeError("a loss returned as named terms needs at least one term")
        terms: dict[str, torch.Tensor] = {}
        for name, term in value.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise TypeError(f"loss term names must be identifiers (they become "
                                f"train_loss_<name>), got {name!r}")
            if not isinstance(term, torch.Tensor) or term.dim() != 0:
                raise TypeError(f"loss term {name!r} must be a scalar tensor, got "
                                f"{type(term).__name__}"
                                + (f" of shape {tuple(term.shape)}"
                                   if isinstance(term, torch.Tensor) else ""))
            terms[name] = term
        total = sum(terms.values(), torch.zeros((), device=next(iter(terms.values())).device))
        return total, terms
    raise TypeError(f"a loss must be a scalar tensor or a mapping of named scalar tensors, got "
                    f"{type(value).__name__}")


class RecentLosses:
    """The last ``window`` values of the total loss and of every term (the last epoch's worth of
    steps); :meth:`means` gives ``{"train_loss": ..., "train_loss_<term>": ...}``."""

    def __init__(self, window: int) -> None:
        self.window = max(int(window), 1)
        self.total: deque[float] = deque(maxlen=self.window)
        self.terms: dict[str, deque[float]] = {}

    def add(self, total: float, terms: Mapping[str, torch.Tensor | float]) -> None:
        self.total.append(total)
        for name, value in terms.items():
            self.terms.setdefault(name, deque(maxlen=self.window)).append(
                float(value.detach()) if isinstance(value, torch.Tensor) else float(value))

    def mean(self) -> float:
        return sum(self.total) / len(self.total) if self.total else math.nan

    def term_means(self) -> dict[str, float]:
        """``{"train_loss_<term>": mean}`` of every named term seen."""
        return {f"train_loss_{k}": sum(v) / len(v) for k, v in self.terms.items() if v}
