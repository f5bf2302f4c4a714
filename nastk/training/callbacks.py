"""Training callbacks: code that runs at the end of every epoch of
:meth:`nastk.evaluation.train.TrainEvaluator.fit`, sees the epoch, the model and that epoch's
evaluation metrics, and may stop training (ASHA's per-epoch reports to Ray Tune are one).

Metrics of an epoch before the last are computed on the evaluation split in eval mode without
gradients and with the torch RNG forked, using the batch-norm statistics as they are (no
recalibration), so a run with callbacks that never stop it gives exactly the result of a run
without them. The last epoch's metrics are the final ones (after recalibration).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

__all__ = ["EarlyStopping", "TrainCallback", "any_stop"]


class TrainCallback:
    """Base class of training callbacks; override :meth:`on_epoch_end`."""

    def on_epoch_end(self, epoch: int, model: nn.Module, metrics: dict[str, float]
                     ) -> bool | None:
        """Called after epoch ``epoch`` (1-based) with that epoch's evaluation ``metrics``.
        Return ``True`` to stop training (the model is then recalibrated and scored as after
        the last epoch)."""
        return None


class EarlyStopping(TrainCallback):
    """Stop when ``metric`` has not improved by more than ``min_delta`` for ``patience``
    epochs (``mode`` ``max`` or ``min``)."""

    def __init__(self, metric: str, patience: int = 2, mode: str = "max",
                 min_delta: float = 0.0) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience}")
        self.metric, self.patience, self.mode, self.min_delta = metric, patience, mode, min_delta
        self.best: float | None = None
        self.bad_epochs = 0
        self.stopped_epoch: int | None = None

    def on_epoch_end(self, epoch: int, model: nn.Module, metrics: dict[str, float]
                     ) -> bool | None:
        if self.metric not in metrics:
            raise KeyError(f"EarlyStopping: metric {self.metric!r} not among the epoch's "
                           f"metrics {sorted(metrics)}")
        value = float(metrics[self.metric])
        sign = 1.0 if self.mode == "max" else -1.0
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.bad_epochs = value, 0
            return None
        self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.stopped_epoch = epoch
            return True
        return None


def any_stop(callbacks: Sequence[TrainCallback], epoch: int, model: nn.Module,
             metrics: dict[str, float]) -> bool:
    """Run every callback (all of them, in order) and say whether any asked to stop."""
    stop = False
    for cb in callbacks:
        if cb.on_epoch_end(epoch, model, dict(metrics)):
            stop = True
    return stop
