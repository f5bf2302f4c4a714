"""The dashboard's web app (Starlette): the pages of :mod:`nastk.dashboard.pages` and the JSON
they read, over the folders :func:`nastk.dashboard.folders.scan` found.

Read-only by construction: every route is a GET (anything else is answered 405), stores are
opened read-only, and static files are served from a fixed list of BokehJS files found in the
installed ``bokeh`` package (no CDN: the pages work offline). A folder is named in a URL only by
its scan id; an unknown id, or any path beyond the routes, is 404: no part of a URL reaches the
file system."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from nastk.dashboard import pages
from nastk.dashboard.folders import Folder, FolderKind, scan
from nastk.dashboard.store_reader import RunReader
from nastk.run.layout import (
    BEST_SO_FAR_PNG,
    HISTORY_JSON,
    LEARNING_CURVES_PNG,
    PARETO_PNG,
    PREDICTIONS_PNG,
    STRATEGY_PNG,
    STUDY_JSON,
)

__all__ = ["STATIC_FILES", "create_app"]

#: the only static files served: BokehJS, from the installed bokeh package
STATIC_FILES = ("bokeh.min.js", "bokeh-api.min.js")
#: the report's plots a run page shows (these names only, from the run's own folder)
REPORT_PLOTS = (BEST_SO_FAR_PNG, PARETO_PNG, LEARNING_CURVES_PNG, PREDICTIONS_PNG, STRATEGY_PNG)


def _bokeh_js() -> Path:
    import bokeh

    return Path(bokeh.__file__).parent / "server" / "static" / "js"


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_clean(data), status_code=status,
                        headers={"Cache-Control": "no-store"})


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in record.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[name] = float(v)
    return out


def study_curves(study_dir: Path) -> dict[str, Any]:
    """Per task and strategy, the mean best-so-far curve over seeds and its band (the seeds'
    minimum and maximum), from the study's run folders (``<task>/<strategy>/seed_<k>``) as
    ``nastk study`` reads them: the task's report metric of the incumbent, larger is better,
    a curve that stopped short of the budget holding its last value."""
    import numpy as np

    summary = json.loads((study_dir / STUDY_JSON).read_text())
    out: dict[str, Any] = {}
    for task, t in summary.get("tasks", {}).items():
        budget = int(t.get("budget") or 0)
        strategies: dict[str, Any] = {}
        for strategy in t.get("strategies", {}):
            seeds = []
            for seed in summary.get("seeds", []):
                run_dir = study_dir / task / strategy / f"seed_{seed}"
                if not (run_dir / "store.sqlite").is_file():
                    continue
                curve = RunReader(run_dir).incumbent_curve(t.get("report_metric"))
                if curve:
                    seeds.append((curve + curve[-1:] * budget)[:budget or len(curve)])
            if not seeds:
                continue
            n = min(len(c) for c in seeds)
            arr = np.asarray([c[:n] for c in seeds], dtype=float)
            strategies[strategy] = {"mean": np.nanmean(arr, axis=0).tolist(),
                                    "low": np.nanmin(arr, axis=0).tolist(),
                                    "high": np.nanmax(arr, axis=0).tolist(),
                                    "seeds": len(seeds)}
        out[task] = {"strategies": strategies, "ylabel": t.get("ylabel") or "best so far"}
    return out


def create_app(roots: list[Path], *, rescan_s: float = 5.0) -> Starlette:
    """The app over the folders under ``roots`` (rescanned at most every ``rescan_s`` seconds,
    so runs started after the dashboard appear)."""
    import time

    state: dict[str, Any] = {"folders": scan(roots), "at": time.monotonic()}

    def folders() -> dict[str, Folder]:
        if time.monotonic() - state["at"] > rescan_s:
            state["folders"], state["at"] = scan(roots), time.monotonic()
        return state["folders"]

    def folder(request: Request, kind: FolderKind) -> Folder | None:
        f = folders().get(request.path_params["fid"])
        return f if f is not None and f.kind == kind else None

    def not_found(what: str) -> Response:
        return _json({"error": f"no such {what}"}, 404)

    async def index(request: Request) -> Response:
        return HTMLResponse(pages.runs_page())

    async def compare(request: Request) -> Response:
        return HTMLResponse(pages.compare_page())

    async def api_runs(request: Request) -> Response:
        runs, studies, supernets = [], [], []
        for f in folders().values():
            if f.kind == "run":
                try:
                    runs.append({"id": f.id, "path": f.name, **RunReader(f.path).summary()})
                except Exception as err:  # a store being created, or not a nastk store
                    runs.append({"id": f.id, "path": f.name, "status": f"unreadable: {err}"})
            else:
                (studies if f.kind == "study" else supernets).append({"id": f.id,
                                                                      "path": f.name})
        return _json({"runs": runs, "studies": studies, "supernets": supernets})

    def html(kind: FolderKind, what: str, render: Callable[[Folder, Request], str]
             ) -> Callable[[Request], Awaitable[Response]]:
        """A page of one folder of ``kind``: ``render(folder, request)``, or a 404."""
        async def endpoint(request: Request) -> Response:
            f = folder(request, kind)
            if f is None:
                return HTMLResponse(f"<h1>no such {what}</h1>", 404)
            return HTMLResponse(render(f, request))
        return endpoint

    run_page = html("run", "run", lambda f, r: pages.run_page(f.id, f.name))
    trial_page = html("run", "run", lambda f, r: pages.trial_page(
        f.id, f.name, r.path_params["tid"]))
    study_page = html("study", "study", lambda f, r: pages.study_page(f.id, f.name))
    supernet_page = html("supernet", "supernet training",
                         lambda f, r: pages.supernet_page(f.id, f.name))

    def api(kind: FolderKind, what: str, answer: Callable[[Folder, Request], Any]
            ) -> Callable[[Request], Awaitable[Response]]:
        """JSON about one folder of ``kind``: ``answer(folder, request)`` (data, or a
        response of its own), a 404 for an unknown folder, a 400 for a bad parameter."""
        async def endpoint(request: Request) -> Response:
            f = folder(request, kind)
            if f is None:
                return not_found(what)
            try:
                data = answer(f, request)
            except ValueError as err:
                return _json({"error": str(err)}, 400)
            return data if isinstance(data, Response) else _json(data)
        return endpoint

    def trials(f: Folder, r: Request) -> Any:
        q = r.query_params
        return RunReader(f.path).trials(
            offset=int(q.get("offset", 0)), limit=int(q.get("limit", 50)),
            sort=q.get("sort", "id"), desc=q.get("desc", "0") in ("1", "true"),
            status=q.get("status") or None)

    def trial(f: Folder, r: Request) -> Any:
        t = RunReader(f.path).trial(r.path_params["tid"])
        return not_found("trial") if t is None else t

    api_summary = api("run", "run", lambda f, r: {
        **RunReader(f.path).summary(),
        "plots": [n for n in REPORT_PLOTS if (f.path / n).is_file()]})

    async def report_plot(request: Request) -> Response:
        f = folder(request, "run")
        name = request.path_params["name"]
        if f is None or name not in REPORT_PLOTS or not (f.path / name).is_file():
            return Response("not found", 404)
        return Response((f.path / name).read_bytes(), media_type="image/png",
                        headers={"Cache-Control": "no-store"})
    api_trials = api("run", "run", trials)
    api_trial = api("run", "run", trial)
    api_curve = api("run", "run", lambda f, r: RunReader(f.path).curve())
    api_front = api("run", "run", lambda f, r: RunReader(f.path).front(
        r.query_params.get("x") or None, r.query_params.get("y") or None))
    api_study = api("study", "study",
                    lambda f, r: json.loads((f.path / STUDY_JSON).read_text()))
    api_study_curves = api("study", "study", lambda f, r: study_curves(f.path))

    async def api_supernet(request: Request) -> Response:
        f = folder(request, "supernet")
        if f is None:
            return not_found("supernet training")
        records = json.loads((f.path / HISTORY_JSON).read_text())
        records = records if isinstance(records, list) else records.get("epochs", [])
        series: dict[str, list[float | None]] = {}
        flat = [_flatten(r) for r in records if isinstance(r, dict)]
        for i, r in enumerate(flat):
            for k, v in r.items():
                series.setdefault(k, [None] * len(flat))[i] = v
        return _json({"epochs": list(range(1, len(flat) + 1)), "series": series})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return Response("not found", 404)
        return Response((_bokeh_js() / name).read_bytes(), media_type="text/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    routes = [
        Route("/", index), Route("/api/runs", api_runs), Route("/compare", compare),
        Route("/run/{fid}", run_page), Route("/run/{fid}/trial/{tid:int}", trial_page),
        Route("/run/{fid}/plot/{name}", report_plot),
        Route("/api/run/{fid}/summary", api_summary), Route("/api/run/{fid}/trials", api_trials),
        Route("/api/run/{fid}/trial/{tid:int}", api_trial),
        Route("/api/run/{fid}/curve", api_curve), Route("/api/run/{fid}/front", api_front),
        Route("/study/{fid}", study_page), Route("/api/study/{fid}", api_study),
        Route("/api/study/{fid}/curves", api_study_curves),
        Route("/supernet/{fid}", supernet_page), Route("/api/supernet/{fid}", api_supernet),
        Route("/static/js/{name}", static),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(GZipMiddleware, minimum_size=1000)
    return app
