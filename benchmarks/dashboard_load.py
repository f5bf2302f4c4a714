"""How fast ``nastk dashboard`` opens a large run: a store of 20,000 trials (generated: 2
objectives, 5 % failed, a cell architecture each) served by the real server (uvicorn on
loopback); the first view of the run page is its HTML, BokehJS and the JSON its script asks for
first (summary, first page of trials, best-so-far curve, front). Prints the wall time of each
request and of the whole first view (requests one after another, as a cold browser would
sequence them at worst), and the bytes sent (gzip, as browsers ask).

    python benchmarks/dashboard_load.py [--trials 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from nastk.run.sqlite_store import RunStore

OPS = ["none", "skip", "conv1x1", "conv3x3", "pool"]


def make_store(run_dir: Path, n: int, seed: int = 0) -> Path:
    """A run folder whose store holds ``n`` finished trials (written in one transaction, as
    a search would have written them one by one)."""
    RunStore.in_dir(run_dir).close()  # the schema
    rng = random.Random(seed)
    db = sqlite3.connect(run_dir / "store.sqlite")
    meta = {"objective": {"metric": "accuracy", "direction": "max", "costs": ["flops"]},
            "run": {"space": {"name": "nb201"}, "task": {"name": "classification"},
                    "strategy": {"name": "evolution"}},
            "config": {"name": "big", "budget": {"trials": n}}}
    db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                   [(k, json.dumps(v)) for k, v in meta.items()])
    rows, t = [], 1.8e9
    for i in range(1, n + 1):
        arch = {f"e{k}": rng.choice(OPS) for k in range(6)}
        arch["id"] = i
        key = json.dumps(arch, sort_keys=True, separators=(",", ":"))
        if rng.random() < 0.05:
            rows.append((key, key, "failed", "{}", "{}", "RuntimeError: diverged", "{}", 1.0,
                         t, t + 1, 1))
        else:
            acc = rng.betavariate(8, 2)
            rows.append((key, key, "complete", json.dumps({"accuracy": acc, "loss": 1 - acc}),
                         json.dumps({"flops": rng.uniform(1e6, 5e8), "params": 1e5}), None,
                         "{}", 1.0, t, t + 1, 1))
        t += 1
    db.executemany("INSERT INTO trials(key, arch, status, metrics, costs, error, info, "
                   "duration_s, started, finished, told) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.commit()
    db.close()
    return run_dir


def first_view(base: str, run_id: str) -> list[tuple[str, float, int]]:
    """``(path, seconds, bytes on the wire)`` of each request of the run page's first view."""
    import httpx

    paths = [f"/run/{run_id}", "/static/js/bokeh.min.js", "/static/js/bokeh-api.min.js",
             f"/api/run/{run_id}/summary",
             f"/api/run/{run_id}/trials?offset=0&limit=50&sort=id&desc=0",
             f"/api/run/{run_id}/curve", f"/api/run/{run_id}/front"]
    out = []
    with httpx.Client(base_url=base, headers={"Accept-Encoding": "gzip"}) as client:
        for p in paths:
            t0 = time.perf_counter()
            r = client.get(p)
            dt = time.perf_counter() - t0
            r.raise_for_status()
            out.append((p, dt, r.num_bytes_downloaded))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import uvicorn

    from nastk.dashboard.app import create_app
    from nastk.dashboard.folders import scan

    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs")
    print(f"command: python benchmarks/dashboard_load.py --trials {args.trials}")
    with tempfile.TemporaryDirectory(prefix="nastk-dash-") as tmp:
        t0 = time.perf_counter()
        make_store(Path(tmp) / "big", args.trials)
        print(f"store of {args.trials} trials written in {time.perf_counter() - t0:.1f} s")
        run_id = next(iter(scan([Path(tmp)])))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app([Path(tmp)]), host="127.0.0.1",
                                               port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base = f"http://127.0.0.1:{port}"
        totals = []
        for rep in range(args.repeats):
            views = first_view(base, run_id)
            total_t = sum(v[1] for v in views)
            total_b = sum(v[2] for v in views)
            totals.append((total_t, total_b))
            if rep == 0:
                print("\n| request | seconds | bytes sent |\n| --- | ---: | ---: |")
                for p, dt, b in views:
                    print(f"| `{p.split('?')[0]}` | {dt:.3f} | {b:,} |")
        server.should_exit = True
        thread.join(5)
    times = [t for t, _ in totals]
    print(f"\nfirst view, {args.repeats} repeats: {min(times):.3f} to {max(times):.3f} s "
          f"(target < 1 s), {totals[0][1]:,} bytes (target < 500 kB = 500,000 bytes); "
          f"load at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
