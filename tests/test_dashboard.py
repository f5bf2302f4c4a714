"""``nastk dashboard``: what its JSON and pages show against the run's own store and report,
read-only and live, and safe: nothing outside the scanned folders is served, no route writes,
and strings from a store reach the pages only as text."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("bokeh")
from starlette.testclient import TestClient

import nastk
from nastk.cli.main import main
from nastk.core.pareto import pareto_front
from nastk.dashboard.app import create_app
from nastk.dashboard.folders import scan
from nastk.run.sqlite_store import RunStore

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

EVIL = "<script>alert('x')</script>"


def score(arch):
    if arch["w"] == 3 and arch["d"] == 7:
        raise RuntimeError(EVIL)  # a failed trial whose error text holds markup
    return ({"acc": arch["d"] * 0.1 + arch["w"] * 0.01 - (arch["d"] * arch["w"]) * 0.004},
            {"flops": float(arch["d"] * arch["w"] * 100)})


def make_run(run_dir: Path, trials: int = 40, **kw) -> nastk.SearchRun:
    space = nastk.SearchSpace([nastk.IntRange("d", 1, 8), nastk.IntRange("w", 1, 8),
                               nastk.Categorical("tag", ["plain", "<b>bold</b>"])])
    run = nastk.create_search(space, score, objective="acc", costs=["flops"],
                              strategy="random", storage=run_dir, budget=trials, seed=1, **kw)
    run.optimize()
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = make_run(root / "plain")
    run.close()
    evil_dir = root / f"named{EVIL}"
    make_run(evil_dir, trials=5).close()
    sched = nastk.create_search(
        nastk.SearchSpace([nastk.IntRange("x", 0, 30)]),
        lambda a, r: {"acc": a["x"] * (1 - 1 / (r + 1))}, objective="acc",
        scheduler={"kind": "hyperband", "max_resource": 9}, storage=root / "scheduled",
        budget={"trials": 20}, seed=0)
    sched.optimize()
    sched.close()
    return root


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app([runs]))


def run_id(client, path: str) -> str:
    return next(r["id"] for r in client.get("/api/runs").json()["runs"] if r["path"] == path)


def test_the_runs_table_matches_each_runs_store_and_report(client, runs):
    rows = {r["path"]: r for r in client.get("/api/runs").json()["runs"]}
    assert set(rows) == {"plain", f"named{EVIL}", "scheduled"}
    record = nastk.load_run(runs / "plain")
    done = [t for t in record.trials if t.done]
    r = rows["plain"]
    assert r["complete"] == sum(t.status.value == "complete" for t in done)
    assert r["failed"] == sum(t.status.value == "failed" for t in done) >= 1
    assert r["best"] == pytest.approx(record.best.result.metrics["acc"])
    assert r["best_trial"] == record.best.id and r["status"] == "finished"
    assert r["budget"] is None  # a search built in Python has no config
    # the scheduled run's best is among the candidates trained furthest
    sched = nastk.load_run(runs / "scheduled")
    top = max(t.result.info["resource"] for t in sched.trials if t.result and t.result.ok)
    want = max(t.result.metrics["acc"] for t in sched.trials
               if t.result and t.result.ok and t.result.info["resource"] == top)
    assert rows["scheduled"]["best"] == pytest.approx(want)


def test_trial_table_pages_sorts_and_filters_on_the_server(client, runs):
    rid = run_id(client, "plain")
    with RunStore.open_existing(runs / "plain") as st:
        trials = st.trials()
    valued = sorted((t for t in trials if t.result and t.result.ok),
                    key=lambda t: (-t.result.metrics["acc"], t.id))
    page = client.get(f"/api/run/{rid}/trials?sort=value&desc=1&offset=3&limit=7").json()
    assert page["total"] == len(trials)
    assert [row["id"] for row in page["rows"]] == [t.id for t in valued[3:10]]
    failed = client.get(f"/api/run/{rid}/trials?status=failed").json()
    assert [row["id"] for row in failed["rows"]] == [t.id for t in trials
                                                    if t.status.value == "failed"]
    assert failed["rows"][0]["error"].startswith("RuntimeError: " + EVIL)
    assert client.get(f"/api/run/{rid}/trials?sort=arch;DROP").status_code == 400
    assert client.get(f"/api/run/{rid}/trials?status=done').--").status_code == 400


def test_the_front_is_the_reports_front(client, runs):
    rid = run_id(client, "plain")
    record = nastk.load_run(runs / "plain")
    front = client.get(f"/api/run/{rid}/front").json()
    want = {t.id for t in pareto_front(record.trials, record.objective)}
    assert {p[0] for p in front["front"]} == want
    assert front["x"] == "acc" and front["y"] == "flops"
    archs = {t.id: t.arch.key for t in record.trials}
    assert all(p[3] == archs[p[0]] for p in front["front"] + front["others"])  # on hover
    assert len(front["front"]) + len(front["others"]) == front["n"]


def test_a_trial_shows_its_rungs_and_its_error(client, runs):
    rid = run_id(client, "scheduled")
    with RunStore.open_existing(runs / "scheduled") as st:
        rungs = st.rungs()
    tid = max({r.trial_id for r in rungs}, key=lambda t: sum(r.trial_id == t for r in rungs))
    got = client.get(f"/api/run/{rid}/trial/{tid}").json()
    assert [g["resource"] for g in got["rungs"]] == [r.resource for r in rungs
                                                     if r.trial_id == tid]
    plain = run_id(client, "plain")
    failed = client.get(f"/api/run/{plain}/trials?status=failed").json()["rows"][0]["id"]
    t = client.get(f"/api/run/{plain}/trial/{failed}").json()
    assert t["status"] == "failed" and EVIL in t["error"]
    assert client.get(f"/api/run/{plain}/trial/99999").status_code == 404


def test_store_strings_reach_the_pages_only_escaped(client, runs):
    rid = run_id(client, f"named{EVIL}")
    html = client.get(f"/run/{rid}").text
    assert EVIL not in html and "named&lt;script&gt;" in html
    plain = run_id(client, "plain")
    for url in ("/", f"/run/{plain}", f"/run/{plain}/trial/1"):
        page = client.get(url).text
        assert "<script>alert" not in page and "<b>bold" not in page
    # every store string is set with textContent in the browser, never innerHTML
    assert "innerHTML" not in html


@pytest.mark.parametrize("url", [
    "/static/js/../../store.sqlite", "/static/js/..%2F..%2Fstore.sqlite",
    "/static/js/%2e%2e%2fstore.sqlite", "/static/js/bokeh.json", "/run/..%2Fplain",
    "/api/run/..%2F..%2Fetc/summary", "/run/plain/store.sqlite", "/store.sqlite",
    "/plain/store.sqlite", "/api/study/../../etc/passwd", "/api/run/nope/trials",
    "/static/js/%2Fetc%2Fpasswd",
])
def test_nothing_outside_the_scanned_folders_is_served(client, url):
    r = client.get(url)
    assert r.status_code == 404
    assert b"SQLite format" not in r.content and b"root:" not in r.content


def test_no_route_writes_and_the_store_is_untouched(client, runs):
    rid = run_id(client, "plain")
    store = runs / "plain" / "store.sqlite"
    before = (store.read_bytes(), store.stat().st_mtime_ns)
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)(f"/api/run/{rid}/trials").status_code == 405
        assert getattr(client, method)("/api/runs").status_code == 405
    for url in ("/api/runs", f"/api/run/{rid}/summary", f"/api/run/{rid}/curve",
                f"/api/run/{rid}/front", f"/api/run/{rid}/trials"):
        assert client.get(url).status_code == 200
    assert (store.read_bytes(), store.stat().st_mtime_ns) == before
    assert not store.with_name("store.sqlite-journal").exists()


def test_a_run_being_written_is_read_live_without_blocking_it(tmp_path):
    run = make_run(tmp_path / "live", trials=6)
    client = TestClient(create_app([tmp_path]))
    rid = run_id(client, "live")
    assert client.get(f"/api/run/{rid}/summary").json()["trials"] == 6
    db = sqlite3.connect(tmp_path / "live" / "store.sqlite", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")  # a writer mid-transaction
    db.execute("UPDATE meta SET value=value WHERE key='objective'")
    got: dict = {}
    reader = threading.Thread(target=lambda: got.update(
        client.get(f"/api/run/{rid}/summary").json()))
    reader.start()
    reader.join(10)
    assert not reader.is_alive() and got["trials"] == 6  # the reader did not wait
    db.execute("COMMIT")  # nor did it block the writer
    db.close()
    run.optimize(trials=10)  # the search goes on: the next request sees it
    assert client.get(f"/api/run/{rid}/summary").json()["trials"] == 10
    run.close()


def test_the_first_view_is_small_and_loads_bokeh_from_the_package(client, runs):
    rid = run_id(client, "plain")
    html = client.get(f"/run/{rid}")
    assert "/static/js/bokeh.min.js" in html.text and "cdn" not in html.text.lower()
    js = client.get("/static/js/bokeh.min.js", headers={"Accept-Encoding": "gzip"})
    assert js.status_code == 200 and js.headers["content-encoding"] == "gzip"
    assert "Bokeh" in js.text[:5000]


def test_scan_finds_runs_studies_and_supernets_with_safe_ids(tmp_path, runs):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "study.json").write_text(json.dumps({"name": "s", "tasks": {},
                                                              "leaderboard": []}))
    (tmp_path / "sn").mkdir()
    (tmp_path / "sn" / "history.json").write_text(json.dumps(
        [{"epoch": 1, "loss": 2.0, "largest": {"acc": 0.5}},
         {"epoch": 2, "loss": 1.5, "largest": {"acc": 0.6}}]))
    (tmp_path / "sn" / "supernet.pt").write_bytes(b"")
    found = scan([tmp_path, runs])
    kinds = sorted(f.kind for f in found.values())
    assert kinds == ["run", "run", "run", "study", "supernet"]
    assert all(set(i) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "0123456789_.-") for i in found)
    client = TestClient(create_app([tmp_path]))
    sid = next(i for i, f in found.items() if f.kind == "supernet")
    hist = client.get(f"/api/supernet/{sid}").json()
    assert hist["series"]["largest.acc"] == [0.5, 0.6] and hist["epochs"] == [1, 2]
    study = next(i for i, f in found.items() if f.kind == "study")
    assert client.get(f"/api/study/{study}").json()["name"] == "s"
    assert client.get(f"/study/{study}").status_code == 200


def test_the_command_binds_to_loopback_and_says_how_to_install(monkeypatch, tmp_path, capsys):
    import nastk.dashboard.serve as serve_mod

    seen = {}
    monkeypatch.setattr(serve_mod, "serve", lambda roots, host, port: seen.update(
        host=host, port=port))
    assert main(["dashboard", str(tmp_path)]) == 0
    assert seen["host"] == "127.0.0.1"
    assert main(["dashboard", str(tmp_path), "--host", "0.0.0.0"]) == 0
    assert "unauthenticated" in capsys.readouterr().err
    assert main(["dashboard", str(tmp_path / "missing")]) == 2
    monkeypatch.setattr("nastk.cli.commands.dashboard.check_installed", lambda: ["bokeh"])
    assert main(["dashboard", str(tmp_path)]) == 2
    assert 'pip install -e ".[dashboard]"' in capsys.readouterr().err


def test_the_two_objective_front_equals_the_engines_on_random_points():
    import numpy as np

    from nastk.core.pareto import pareto_mask
    from nastk.dashboard.store_reader import front_mask_2d

    rng = np.random.default_rng(0)
    for n in (0, 1, 2, 7, 60, 300):
        pts = rng.integers(0, 9, size=(n, 2)).astype(float)  # many ties
        assert (front_mask_2d(pts) == pareto_mask(pts)).all()


def test_a_studys_curves_end_at_the_studys_own_means(tmp_path):
    from test_study import MISSING, study_dict, write

    if MISSING is not None:
        pytest.skip(MISSING)
    cfg = write(tmp_path, "s.yaml", study_dict(tmp_path / "study", trials=12, seeds=2))
    assert main(["study", str(cfg), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "study" / "study.json").read_text())
    client = TestClient(create_app([tmp_path]))
    sid = next(i for i, f in scan([tmp_path]).items() if f.kind == "study")
    curves = client.get(f"/api/study/{sid}/curves").json()
    assert set(curves) == set(summary["tasks"])
    for task, t in summary["tasks"].items():
        for strategy, row in t["strategies"].items():
            c = curves[task]["strategies"][strategy]
            assert c["seeds"] == 2 and len(c["mean"]) == t["budget"]
            assert c["mean"][-1] == pytest.approx(row["mean"])
            assert all(lo <= m <= hi for lo, m, hi in zip(c["low"], c["mean"], c["high"],
                                                          strict=True))
    page = client.get(f"/study/{sid}").text
    assert "/static/js/bokeh.min.js" in page
    # the study's runs are listed as runs too
    assert len([f for f in scan([tmp_path]).values() if f.kind == "run"]) == 8


def test_the_reports_plots_are_served_by_name_only(client, runs):
    rid = run_id(client, "plain")
    nastk.load_run(runs / "plain").write_report()
    summary = client.get(f"/api/run/{rid}/summary").json()
    assert "best_so_far.png" in summary["plots"] and "pareto.png" in summary["plots"]
    png = client.get(f"/run/{rid}/plot/best_so_far.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in ("report.md", "store.sqlite", "..%2Fstore.sqlite", "predictions.png"):
        assert client.get(f"/run/{rid}/plot/{bad}").status_code == 404


def test_the_compare_page_and_the_best_equals_the_reports_best_line(client, runs):
    import re

    rid = run_id(client, "plain")
    report = nastk.load_run(runs / "plain").write_report()
    line = re.search(r"\| best acc \(max\) \| ([0-9.]+) \(trial (\d+)", report.read_text())
    summary = client.get(f"/api/run/{rid}/summary").json()
    assert line is not None and summary["best_trial"] == int(line.group(2))
    assert f"{summary['best']:.4f}" == line.group(1)
    page = client.get(f"/compare?runs={rid}").text
    assert "/static/js/bokeh-api.min.js" in page and "<h1>Compare</h1>" in page


@pytest.mark.skipif(not (Path("runs") / "quickstart" / "store.sqlite").is_file(),
                    reason="no runs/quickstart here (README command 1 makes it; CI runs it)")
def test_the_quickstart_run_as_the_dashboard_shows_it():
    """After README command 1: the quickstart run with its 24 trials, best and front as its
    report.md has them."""
    import re

    root = Path("runs")
    client = TestClient(create_app([root]))
    row = next(r for r in client.get("/api/runs").json()["runs"] if r["path"] == "quickstart")
    assert row["complete"] + row["failed"] == 24 == row["budget"]
    report = (root / "quickstart" / "report.md").read_text()
    line = re.search(r"\| best accuracy \(max\) \| ([0-9.]+) \(trial (\d+)", report)
    assert line is not None and row["best_trial"] == int(line.group(2))
    assert f"{row['best']:.4f}" == line.group(1)
    record = nastk.load_run(root / "quickstart")
    front = client.get(f"/api/run/{row['id']}/front").json()
    assert {p[0] for p in front["front"]} == {t.id for t in pareto_front(record.trials,
                                                                        record.objective)}
