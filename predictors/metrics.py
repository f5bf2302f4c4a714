"""Ranking metrics for predictors and their evaluation against training-set size.

``kendall_tau`` and ``spearman`` are scipy's (tau-b and Spearman's rho, ties handled); they
return ``nan`` when either input is constant (the correlation is undefined there).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from nastk.prediction.base import Predictor, PredictorError
from nastk.predictors.buckets import bucket_index, quantile_edges


def _pair(y_true: Sequence[float] | np.ndarray,
          y_pred: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(y_true, dtype=np.float64).reshape(-1)
    b = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise PredictorError(f"got {a.size} true and {b.size} predicted scores; pass one "
                             "prediction per true score")
    return a, b


def kendall_tau(y_true: Sequence[float] | np.ndarray,
                y_pred: Sequence[float] | np.ndarray) -> float:
    """Kendall's tau-b between true and predicted scores (``nan`` if undefined)."""
    a, b = _pair(y_true, y_pred)
    if a.size < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns nan
        return float(stats.kendalltau(a, b).statistic)


def spearman(y_true: Sequence[float] | np.ndarray,
             y_pred: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation (``nan`` if undefined)."""
    a, b = _pair(y_true, y_pred)
    if a.size < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(a, b).statistic)


def precision_at_top_k(y_true: Sequence[float] | np.ndarray,
                       y_pred: Sequence[float] | np.ndarray, k: int) -> float:
    """Fraction of the true top-``k`` (largest ``y_true``) among the predicted top-``k``.

    Ties are broken by position (earlier first), for both rankings.
    """
    a, b = _pair(y_true, y_pred)
    if not 1 <= k <= a.size:
        raise PredictorError(f"precision_at_top_k: k={k} must be between 1 and the number of "
                             f"scores ({a.size})")
    top_true = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_pred = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_true & top_pred) / k


def bucketed_kendall_tau(y_true: Sequence[float] | np.ndarray,
                         y_pred: Sequence[float] | np.ndarray,
                         costs: Sequence[float] | np.ndarray, n_buckets: int = 5,
                         buckets: Sequence[int] | np.ndarray | None = None) -> float:
    """Mean Kendall tau inside cost buckets, weighted by bucket size.

    Buckets are cut at quantiles of ``costs`` (:func:`nastk.predictors.buckets.quantile_edges`), or
    given as one bucket index per architecture (e.g. a fitted path filter's ``bucket_of``).
    Buckets with fewer than 2 architectures or an undefined tau (constant scores) are left out;
    ``nan`` if none remains.
    """
    a, b = _pair(y_true, y_pred)
    c = np.asarray(costs, dtype=np.float64).reshape(-1)
    if c.shape != a.shape:
        raise PredictorError(f"bucketed_kendall_tau: got {c.size} costs for {a.size} scores; "
                             "pass one cost per architecture")
    if buckets is None:
        buckets = bucket_index(c, quantile_edges(c, n_buckets))
    buckets = np.asarray(buckets).reshape(-1)
    if buckets.shape != a.shape:
        raise PredictorError(f"bucketed_kendall_tau: got {buckets.size} bucket indices for "
                             f"{a.size} scores; pass one per architecture")
    total, weight = 0.0, 0
    for bkt in np.unique(buckets):
        idx = np.flatnonzero(buckets == bkt)
        if idx.size < 2:
            continue
        tau = kendall_tau(a[idx], b[idx])
        if np.isnan(tau):
            continue
        total += tau * idx.size
        weight += idx.size
    return total / weight if weight else float("nan")


def ranking_metrics(y_true: Sequence[float] | np.ndarray, y_pred: Sequence[float] | np.ndarray,
                    costs: Sequence[float] | np.ndarray | None = None,
                    top_fraction: float = 0.05, n_buckets: int = 5) -> dict[str, float]:
    """Kendall tau, Spearman, precision at the top ``top_fraction`` and (with ``costs``) the
    bucketed Kendall tau, as one dict."""
    a, b = _pair(y_true, y_pred)
    k = max(1, round(top_fraction * a.size))
    out = {"kendall_tau": kendall_tau(a, b), "spearman": spearman(a, b),
           "precision_at_top": precision_at_top_k(a, b, k)}
    if costs is not None:
        out["bucketed_tau"] = bucketed_kendall_tau(a, b, costs, n_buckets)
    return out


def evaluate_predictor(predictor_factory: Callable[[int], Predictor],
                       archs: Sequence[Any], scores: Sequence[float] | np.ndarray,
                       costs: Sequence[float] | np.ndarray,
                       train_sizes: Sequence[int],
                       test_archs: Sequence[Any], test_scores: Sequence[float] | np.ndarray,
                       test_costs: Sequence[float] | np.ndarray,
                       seeds: Sequence[int] = (0, 1, 2),
                       top_fraction: float = 0.05, n_buckets: int = 5) -> list[dict[str, Any]]:
    """Ranking quality of a predictor against training-set size.

    For every ``seed`` and ``train_size``, draws ``train_size`` architectures (without
    replacement, from ``numpy.random.default_rng(seed)``) out of the training pool ``archs``,
    fits ``predictor_factory(seed)`` on them (passing their costs to predictors with
    ``uses_costs``), and scores the held-out ``test_archs``. The pool and the test set should
    not overlap. Returns one row per (train_size, seed): ``train_size``, ``seed``,
    ``kendall_tau``, ``spearman``, ``precision_at_top``, ``bucketed_tau``, ``fit_s``
    (wall-clock seconds of ``fit``) and ``predict_s``.
    """
    archs = list(archs)
    y = np.asarray(scores, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    test_archs = list(test_archs)
    ty = np.asarray(test_scores, dtype=np.float64)
    tc = np.asarray(test_costs, dtype=np.float64)
    if not (len(archs) == y.size == c.size):
        raise PredictorError(f"evaluate_predictor: {len(archs)} archs, {y.size} scores and "
                             f"{c.size} costs in the training pool; they must match")
    if not (len(test_archs) == ty.size == tc.size):
        raise PredictorError(f"evaluate_predictor: {len(test_archs)} test archs, {ty.size} "
                             f"scores and {tc.size} costs; they must match")
    too_big = [n for n in train_sizes if n > len(archs)]
    if too_big:
        raise PredictorError(f"evaluate_predictor: train sizes {too_big} exceed the training "
                             f"pool of {len(archs)} architectures")
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        for n in train_sizes:
            idx = np.random.default_rng(seed).choice(len(archs), size=n, replace=False)
            pred = predictor_factory(seed)
            train = [archs[i] for i in idx]
            t0 = time.perf_counter()
            if pred.uses_costs:
                pred.fit(train, y[idx], costs=c[idx])  # type: ignore[call-arg]
            else:
                pred.fit(train, y[idx])
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            if pred.uses_costs:
                p = pred.predict(test_archs, costs=tc)  # type: ignore[call-arg]
            else:
                p = pred.predict(test_archs)
            predict_s = time.perf_counter() - t0
            row: dict[str, Any] = {"train_size": int(n), "seed": int(seed)}
            row.update(ranking_metrics(ty, p, tc, top_fraction, n_buckets))
            row.update(fit_s=fit_s, predict_s=predict_s)
            rows.append(row)
    return rows


def summarize(rows: Sequence[dict[str, Any]], by: str = "train_size") -> list[dict[str, Any]]:
    """Mean (over seeds) of every numeric column of ``rows``, one row per value of ``by``;
    ``nan`` entries are ignored, and ``n_seeds`` counts the rows averaged."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[by], []).append(r)
    out = []
    for key, group in groups.items():
        row: dict[str, Any] = {by: key, "n_seeds": len(group)}
        for col in group[0]:
            if col in (by, "seed") or not isinstance(group[0][col], (int, float)):
                continue
            vals = np.asarray([g[col] for g in group], dtype=np.float64)
            row[col] = float(np.nanmean(vals)) if np.any(~np.isnan(vals)) else float("nan")
        out.append(row)
    return out
