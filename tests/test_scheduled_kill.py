"""``kill -9`` a real scheduled search (the train evaluator, partial trainings between rungs)
at several moments; ``nastk search CONFIG --resume`` ends with the uninterrupted run's rungs,
promotions and results, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

TINY_CNN = {"stages": 2, "depths": [1, 2], "widths": [8, 16], "kernels": [3], "expansions": [1]}


def config(run_dir: Path, kind: dict) -> dict:
    return {
        "name": "killed", "run_dir": str(run_dir), "seed": 2,
        "space": {"name": "small_cnn", "options": TINY_CNN},
        "task": {"name": "classification",
                 "options": {"dataset": "glyphs", "n_samples": 400}},
        "strategy": {"name": "evolution", "options": {"population": 4, "sample_size": 2}},
        "objective": {"metric": "accuracy"},
        "evaluator": {"kind": "train", "train": {"epochs": 4, "batch_size": 64,
                                                 "latency": False}},
        "scheduler": kind,
        "budget": {"trials": 9, "resource": 40},
        "keep_checkpoints": 0,
    }


def rows(run_dir: Path) -> tuple[list, list]:
    """The rung rows and the trials, without wall-clock fields."""
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        rungs = db.execute("SELECT trial_id, rung, resource, cost, status, metrics FROM rungs "
                           "ORDER BY seq").fetchall()
        trials = db.execute("SELECT id, key, status, metrics, info FROM trials "
                            "ORDER BY id").fetchall()
    trials = [(i, k, s, m, {a: b for a, b in json.loads(info or "{}").items()
                           if a in ("resource", "rung", "scheduler", "early_stopped")})
              for i, k, s, m, info in trials]
    return rungs, trials


def n_rungs(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1) as db:
            return db.execute("SELECT COUNT(*) FROM rungs").fetchone()[0]
    except sqlite3.Error:
        return 0


def search(cfg: Path, *extra: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nastk.cli", "search", str(cfg), *extra],
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("kind", [{"kind": "hyperband"}, {"kind": "asha"}, {"kind": "sh"}],
                         ids=["hyperband", "asha", "sh"])
def test_kill_9_then_resume_gives_the_uninterrupted_rungs_and_results(kind, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    ref_cfg = tmp_path / "ref.yaml"
    ref_cfg.write_text(yaml.safe_dump(config(tmp_path / "ref", kind)))
    done = search(ref_cfg, "--no-progress", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    ref = rows(tmp_path / "ref")
    assert len(ref[0]) > 9  # promotions happened
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump(config(tmp_path / "run", kind)))
    store = tmp_path / "run" / "store.sqlite"
    for at in (3, 8):  # kill -9 twice, at different rungs, resuming in between
        proc = subprocess.Popen([sys.executable, "-m", "nastk.cli", "search", str(cfg),
                                 "--no-progress", *(["--resume"] if at > 3 else [])],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while n_rungs(store) < at and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # somewhere inside the next rung's training
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    again = search(cfg, "--resume", "--no-progress", env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    got = rows(tmp_path / "run")
    assert got[0] == ref[0]
    assert got[1] == ref[1]
    assert not list((tmp_path / "run" / "partial").glob("*.pt"))
