"""A search run's store read for the dashboard: read-only (SQLite ``mode=ro``; a writer is
never blocked, and nothing is ever written), one short connection per request, the heavy work
(sorting, paging, the objective's value) done by SQLite's JSON functions so that a run of tens
of thousands of trials answers in milliseconds."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from nastk.run.layout import STORE_FILE

__all__ = ["SORTABLE", "RunReader"]

#: trial table columns a request may sort by (anything else is refused)
SORTABLE = ("id", "status", "value", "duration_s", "resource")
#: the statuses a request may filter by
STATUSES = ("complete", "failed", "running", "interrupted", "paused")
#: at most this many points of a scatter besides the front (the first view stays small)
MAX_POINTS = 1500
#: at most this many points of a best-so-far curve
MAX_CURVE = 1000


def front_mask_2d(points: np.ndarray) -> np.ndarray:
    """The non-dominated rows of ``points`` (two columns, both larger-is-better), in
    O(n log n): by x descending, a group of equal x is on the front where its largest y beats
    every y of a larger x (its points with that y; equal points are all kept)."""
    n = len(points)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = np.lexsort((-points[:, 1], -points[:, 0]))
    best = -np.inf
    i = 0
    while i < n:
        j = i
        x = points[order[i], 0]
        while j < n and points[order[j], 0] == x:
            j += 1
        top = points[order[i], 1]  # the group's largest y (sorted descending)
        if top > best:
            k = i
            while k < j and points[order[k], 1] == top:
                mask[order[k]] = True
                k += 1
            best = top
        i = j
    return mask


def _json_path(name: str) -> str:
    """A JSON path for key ``name`` (quoted: metric names may hold dots)."""
    return '$."' + name.replace('"', '""') + '"'


class RunReader:
    """One run folder's store, read-only."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.store = self.run_dir / STORE_FILE

    def _connect(self) -> sqlite3.Connection:
        uri = f"file:{quote(str(self.store.resolve()))}?mode=ro"
        db = sqlite3.connect(uri, uri=True, timeout=5.0, check_same_thread=False)
        db.execute("PRAGMA query_only = 1")
        return db

    def _meta(self, db: sqlite3.Connection) -> dict[str, Any]:
        out = {}
        for key, value in db.execute("SELECT key, value FROM meta WHERE key IN "
                                     "('objective', 'run', 'config', 'interrupted')"):
            try:
                out[key] = json.loads(value)
            except ValueError:
                continue
        return out

    def objective(self, db: sqlite3.Connection) -> dict[str, Any]:
        obj = self._meta(db).get("objective") or {}
        return {"metric": obj.get("metric", "score"), "direction": obj.get("direction", "max"),
                "costs": list(obj.get("costs") or [])}

    def _has_rungs(self, db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='rungs'"
                          ).fetchone() is not None

    # -- summary ------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """What the runs table shows of this run."""
        with closing(self._connect()) as db:
            meta = self._meta(db)
            obj = self.objective(db)
            counts = dict(db.execute("SELECT status, COUNT(*) FROM trials GROUP BY status"))
            last = db.execute("SELECT MAX(COALESCE(finished, started)) FROM trials").fetchone()[0]
            best = self._best(db, obj)
        run = meta.get("run") or {}
        config = meta.get("config") or {}
        budget = (config.get("budget") or {}).get("trials")

        def name_of(part: Any) -> str | None:
            return part.get("name") if isinstance(part, dict) else part

        status = ("running" if counts.get("running") else
                  "interrupted" if meta.get("interrupted") else "finished")
        return {"task": name_of(run.get("task")), "space": name_of(run.get("space")),
                "strategy": name_of(run.get("strategy")), "name": config.get("name"),
                "status": status, "complete": counts.get("complete", 0),
                "failed": counts.get("failed", 0), "running": counts.get("running", 0),
                "trials": sum(counts.values()), "budget": budget,
                "best": None if best is None else best["value"],
                "best_trial": None if best is None else best["id"],
                "metric": obj["metric"], "direction": obj["direction"],
                "costs": obj["costs"], "last_activity": last}

    def _best(self, db: sqlite3.Connection, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The incumbent: among the complete trials trained furthest (a scheduled run's
        ``info.resource``; none: fully), the best by the objective, the first on ties."""
        order = "DESC" if obj["direction"] == "max" else "ASC"
        row = db.execute(
            f"SELECT id, v FROM (SELECT id, json_extract(metrics, ?) AS v, "
            f"COALESCE(json_extract(info, '$.resource'), 1e308) AS r FROM trials "
            f"WHERE status='complete') WHERE v IS NOT NULL "
            f"ORDER BY r DESC, v {order}, id ASC LIMIT 1", (_json_path(obj["metric"]),)
        ).fetchone()
        if row is None or row[1] is None or not math.isfinite(float(row[1])):
            return None
        return {"id": int(row[0]), "value": float(row[1])}

    # -- trials -------------------------------------------------------------------------------
    def trials(self, offset: int = 0, limit: int = 50, sort: str = "id", desc: bool = False,
               status: str | None = None) -> dict[str, Any]:
        """One page of the trial table, sorted and filtered on the server."""
        if sort not in SORTABLE:
            raise ValueError(f"sort must be one of {', '.join(SORTABLE)}, got {sort!r}")
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        limit = max(1, min(int(limit), 500))
        offset = max(0, int(offset))
        with closing(self._connect()) as db:
            obj = self.objective(db)
            where, args = ("WHERE status=?", [status]) if status else ("", [])
            total = db.execute(f"SELECT COUNT(*) FROM trials {where}", args).fetchone()[0]
            column = {"id": "id", "status": "status", "duration_s": "duration_s",
                      "value": "v", "resource": "r"}[sort]
            direction = "DESC" if desc else "ASC"
            rows = db.execute(
                f"SELECT id, status, arch, v, costs, error, duration_s, r FROM (SELECT id, "
                f"status, arch, json_extract(metrics, ?) AS v, costs, error, duration_s, "
                f"json_extract(info, '$.resource') AS r FROM trials {where}) "
                f"ORDER BY {column} IS NULL, {column} {direction}, id ASC LIMIT ? OFFSET ?",
                [_json_path(obj["metric"]), *args, limit, offset]).fetchall()
        out = []
        for tid, st, arch, value, costs, error, dur, res in rows:
            out.append({"id": tid, "status": st, "arch": json.loads(arch),
                        "value": value, "costs": json.loads(costs or "{}"),
                        "error": (error or "")[:300] or None, "duration_s": dur,
                        "resource": res})
        return {"total": total, "offset": offset, "limit": limit, "rows": out,
                "metric": obj["metric"]}

    def trial(self, trial_id: int) -> dict[str, Any] | None:
        """Everything of one trial: architecture, metrics, costs, info (loss terms, per-epoch
        curves where recorded), the error of a failed one, and its rungs."""
        with closing(self._connect()) as db:
            row = db.execute("SELECT id, key, arch, status, metrics, costs, error, info, "
                             "duration_s, started, finished FROM trials WHERE id=?",
                             (int(trial_id),)).fetchone()
            if row is None:
                return None
            rungs = []
            if self._has_rungs(db):
                rungs = [{"rung": r, "resource": res, "cost": cost, "status": st,
                          "metrics": json.loads(m or "{}")}
                         for r, res, cost, st, m in db.execute(
                             "SELECT rung, resource, cost, status, metrics FROM rungs "
                             "WHERE trial_id=? ORDER BY seq", (int(trial_id),))]
            obj = self.objective(db)
        tid, key, arch, st, metrics, costs, error, info, dur, started, finished = row
        return {"id": tid, "key": key, "arch": json.loads(arch), "status": st,
                "metrics": json.loads(metrics or "{}"), "costs": json.loads(costs or "{}"),
                "error": error, "info": json.loads(info or "{}"), "duration_s": dur,
                "started": started, "finished": finished, "rungs": rungs, "objective": obj}

    # -- plots --------------------------------------------------------------------------------
    def curve(self) -> dict[str, Any]:
        """Best so far against finished trials (at most :data:`MAX_CURVE` points: every
        improvement is kept)."""
        with closing(self._connect()) as db:
            obj = self.objective(db)
            rows = db.execute("SELECT json_extract(metrics, ?) FROM trials WHERE status IN "
                              "('complete', 'failed') ORDER BY COALESCE(finished, started), id",
                              (_json_path(obj["metric"]),)).fetchall()
        sign = 1.0 if obj["direction"] == "max" else -1.0
        xs, ys, best = [], [], None
        for i, (v,) in enumerate(rows, start=1):
            if v is not None and math.isfinite(float(v)) and (best is None
                                                               or sign * v > sign * best):
                best = float(v)
                xs.append(i)
                ys.append(best)
        if xs and xs[-1] != len(rows):
            xs.append(len(rows))
            ys.append(ys[-1])
        if len(xs) > MAX_CURVE:  # keep the last improvements and an even sample of the rest
            keep = sorted(set(np.linspace(0, len(xs) - 1, MAX_CURVE).astype(int)))
            xs, ys = [xs[i] for i in keep], [ys[i] for i in keep]
        return {"x": xs, "y": ys, "metric": obj["metric"], "n": len(rows)}

    def incumbent_curve(self, report_metric: str | None = None) -> list[float]:
        """As ``nastk study`` reads a run: after every finished trial (in trial order), the
        report metric (default: the objective's metric) of the incumbent by the objective,
        oriented larger-is-better (NaN before the first usable trial)."""
        with closing(self._connect()) as db:
            obj = self.objective(db)
            metric = report_metric or obj["metric"]
            rows = db.execute(
                "SELECT status, json_extract(metrics, ?), json_extract(metrics, ?) FROM trials "
                "WHERE status IN ('complete', 'failed') ORDER BY id",
                (_json_path(obj["metric"]), _json_path(metric))).fetchall()
        sign = 1.0 if obj["direction"] == "max" else -1.0
        best: float | None = None
        value = math.nan
        out = []
        for status, judged, reported in rows:
            ok = (status == "complete" and judged is not None
                  and math.isfinite(float(judged)))
            if ok and (best is None or sign * judged > sign * best):
                best = float(judged)
                value = sign * float(reported) if reported is not None else math.nan
            out.append(value)
        return out

    def front(self, x: str | None = None, y: str | None = None) -> dict[str, Any]:
        """The complete trials in two objectives (default: the metric and the first cost):
        the Pareto front whole, the others sampled to at most :data:`MAX_POINTS`."""
        with closing(self._connect()) as db:
            obj = self.objective(db)
            x = x or obj["metric"]
            y = y or (obj["costs"][0] if obj["costs"] else "flops")
            rows = db.execute(
                "SELECT id, COALESCE(json_extract(metrics, ?), json_extract(costs, ?)), "
                "COALESCE(json_extract(metrics, ?), json_extract(costs, ?)), "
                "json_extract(info, '$.early_stopped'), key FROM trials "
                "WHERE status='complete'",
                (_json_path(x), _json_path(x), _json_path(y), _json_path(y))).fetchall()
            keys = self._objective_names(db)
            rendered = self._rendered(db)
        rows = [r for r in rows if r[1] is not None and r[2] is not None]
        directions = {obj["metric"]: obj["direction"]}
        if not rows:
            return {"x": x, "y": y, "front": [], "others": [], "n": 0, "names": keys}
        pts = np.array([[float(r[1]), float(r[2])] for r in rows])
        oriented = pts * np.array([1.0 if directions.get(n, "min" if n != obj["metric"]
                                                         else "max") == "max" else -1.0
                                   for n in (x, y)])
        eligible = np.array([not r[3] for r in rows])  # cut-short trials stay off the front
        mask = np.zeros(len(rows), dtype=bool)
        if eligible.any():
            idx = np.flatnonzero(eligible)
            mask[idx[front_mask_2d(oriented[idx])]] = True
        def point(r: tuple[Any, ...]) -> list[Any]:  # the architecture shows on hover
            return [int(r[0]), float(r[1]), float(r[2]), rendered.get(r[4], r[4])[:160]]

        front = sorted((point(r) for r, m in zip(rows, mask, strict=True) if m),
                       key=lambda p: (p[1], p[2]))
        others = [point(r) for r, m in zip(rows, mask, strict=True) if not m]
        if len(others) > MAX_POINTS:
            step = len(others) / MAX_POINTS
            others = [others[int(i * step)] for i in range(MAX_POINTS)]
        return {"x": x, "y": y, "front": front, "others": others, "n": len(rows),
                "names": keys}

    def _rendered(self, db: sqlite3.Connection) -> dict[str, str]:
        """``arch key -> the space's rendering`` saved with the run (empty if none)."""
        row = db.execute("SELECT value FROM meta WHERE key='rendered'").fetchone()
        try:
            out = json.loads(row[0]) if row is not None else {}
        except ValueError:
            return {}
        return out if isinstance(out, dict) else {}

    def _objective_names(self, db: sqlite3.Connection) -> list[str]:
        """The metric and cost names of the run's last complete trial."""
        row = db.execute("SELECT metrics, costs FROM trials WHERE status='complete' "
                         "ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return []
        return sorted(json.loads(row[0] or "{}")) + sorted(json.loads(row[1] or "{}"))
