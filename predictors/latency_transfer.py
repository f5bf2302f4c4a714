"""Few-shot latency prediction for a new device: a handful of architectures measured on it,
and the latencies of every architecture on devices measured before.

:class:`DeviceTransfer` predicts the new device's log-latency as an affine combination of the
log-latencies of the ``sources`` known devices whose latencies correlate best with the new
device's on the measured architectures (a ridge fit on those few samples): devices of one kind
(GPUs at one batch size, phones, server CPUs) rank architectures alike, so a few samples find
the kind and set the scale. :class:`FromScratch` is the per-device baseline it is compared
with: a ridge regression of the log-latency on the architecture's one-hot encoding, fitted on
the same samples only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DeviceTransfer", "FromScratch", "mape", "spearman"]


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Least squares with an L2 penalty on every coefficient but the intercept (column 0)."""
    penalty = alpha * np.eye(x.shape[1])
    penalty[0, 0] = 0.0
    return np.linalg.solve(x.T @ x + penalty, x.T @ y)


class DeviceTransfer:
    """``known``: latencies (ms, > 0) of every architecture (rows) on the known devices
    (columns)."""

    def __init__(self, known: np.ndarray, sources: int = 3, alpha: float = 1e-3) -> None:
        self.log_known = np.log(np.asarray(known, dtype=float))
        self.sources = int(sources)
        self.alpha = float(alpha)
        self.chosen: list[int] = []
        self.coef = np.zeros(1)

    def fit(self, rows: Sequence[int], latency: Sequence[float]) -> DeviceTransfer:
        """Fit on the measured architectures ``rows`` and their latencies on the new device."""
        rows = np.asarray(rows, dtype=int)
        y = np.log(np.asarray(latency, dtype=float))
        x = self.log_known[rows]
        xc, yc = x - x.mean(axis=0), y - y.mean()
        denom = np.sqrt((xc ** 2).sum(axis=0) * (yc ** 2).sum()) + 1e-12
        corr = (xc * yc[:, None]).sum(axis=0) / denom
        self.chosen = [int(i) for i in np.argsort(-corr, kind="stable")[:self.sources]]
        design = np.column_stack([np.ones(len(rows)), x[:, self.chosen]])
        self.coef = _ridge(design, y, self.alpha)
        return self

    def predict(self, rows: Sequence[int] | None = None) -> np.ndarray:
        """Predicted latency (ms) of ``rows`` (default: every architecture)."""
        x = self.log_known if rows is None else self.log_known[np.asarray(rows, dtype=int)]
        design = np.column_stack([np.ones(len(x)), x[:, self.chosen]])
        return np.exp(design @ self.coef)


class FromScratch:
    """``encoding``: a numeric encoding of every architecture (rows), e.g. one-hot."""

    def __init__(self, encoding: np.ndarray, alpha: float = 1.0) -> None:
        self.encoding = np.asarray(encoding, dtype=float)
        self.alpha = float(alpha)
        self.coef = np.zeros(1)

    def fit(self, rows: Sequence[int], latency: Sequence[float]) -> FromScratch:
        rows = np.asarray(rows, dtype=int)
        design = np.column_stack([np.ones(len(rows)), self.encoding[rows]])
        self.coef = _ridge(design, np.log(np.asarray(latency, dtype=float)), self.alpha)
        return self

    def predict(self, rows: Sequence[int] | None = None) -> np.ndarray:
        x = self.encoding if rows is None else self.encoding[np.asarray(rows, dtype=int)]
        return np.exp(np.column_stack([np.ones(len(x)), x]) @ self.coef)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties averaged)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def mape(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    true = np.asarray(true, dtype=float)
    return float(np.mean(np.abs(np.asarray(pred, dtype=float) - true) / true) * 100.0)
