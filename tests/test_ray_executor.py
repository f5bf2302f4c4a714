"""The ray executor: same search as local, worker deaths retried or recorded, a killed driver
resumed, ASHA early stopping, config and CLI errors. One local Ray (2 CPUs) for the module."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import toy_plugin
import yaml
from conftest import wait_for_complete

from nastk import Architecture, IntRange, Objective, SearchSpace, Status
from nastk.cli.main import main
from nastk.config.compose import build_components
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError, StoreError
from nastk.evaluation.base import FunctionEvaluator
from nastk.pipelines.search import run_search_config as run_experiment
from nastk.run.loop import Budget, Search
from nastk.run.sqlite_store import RunStore
from nastk.strategies.base import Strategy
from nastk.strategies.random_search import RandomSearch

TESTS = Path(__file__).parent



def open_run_store(config, run_dir, resume):
    """The store a run of ``config`` opens in ``run_dir`` (the run lifecycle's own opening)."""
    from nastk.pipelines.search import search_setup
    from nastk.run.lifecycle import open_storage

    setup = search_setup(config, build_components(config, check=False))
    return open_storage(setup, run_dir, resume=resume)[0]

def search_config(tmp_path, name="toy", trials=12, fn="ray_plugin:objective", executor="ray",
                  strategy="random", seed=3, **extra):
    cfg = {"name": name, "run_dir": str(tmp_path / name), "seed": seed,
           "plugins": ["toy_plugin", "ray_plugin"], "space": "toy_grid", "strategy": strategy,
           "objective": {"metric": "score"},
           "evaluator": {"kind": "function", "function": fn},
           "budget": {"trials": trials}, "executor": executor, **extra}
    return cfg


def finished(run_dir):
    with RunStore.open_existing(run_dir) as st:
        return st.finished()


# -- config (no Ray needed) -------------------------------------------------------------------
def test_executor_shorthand_defaults_and_identity(tmp_path):
    local = parse_config(search_config(tmp_path, executor="local"))
    ray_cfg = parse_config(search_config(tmp_path, executor="ray"))
    assert local.executor.kind == "local" and ray_cfg.executor.kind == "ray"
    assert ray_cfg.executor.resolved_mode("function") == "actors"
    assert ray_cfg.executor.resolved_mode("train") == "tune"
    without = search_config(tmp_path)
    del without["executor"]
    assert parse_config(without).executor.kind == "local"
    # the executor is not part of the run's identity: a local run may be resumed on Ray
    assert local.identity() == ray_cfg.identity() and "executor" not in local.identity()
    store = open_run_store(local, tmp_path / "run", resume=False)
    store.close()
    open_run_store(ray_cfg, tmp_path / "run", resume=True).close()
    changed = parse_config(search_config(tmp_path, executor="ray", seed=4))
    with pytest.raises(StoreError, match=r"differs .* in \['seed'\]"):
        open_run_store(changed, tmp_path / "run", resume=True)


def test_store_identity_written_before_executors_existed_still_resumes(tmp_path):
    cfg = parse_config(search_config(tmp_path, executor="ray"))
    old_identity = {**cfg.identity(), "executor": "local"}  # as older nastk wrote it
    with RunStore.in_dir(tmp_path / "old") as st:
        st.set_meta("identity", old_identity)
    store = open_run_store(cfg, tmp_path / "old", resume=True)
    try:
        assert store.get_meta("identity") == old_identity  # the stored identity is kept
        assert store.get_meta("config")["executor"]["kind"] == "ray"  # the resuming config
    finally:
        store.close()
    # only the executor entry is ignored: an old identity that differs elsewhere still refuses
    with RunStore.in_dir(tmp_path / "other") as st:
        st.set_meta("identity", {**old_identity, "seed": cfg.seed + 1})
    with pytest.raises(StoreError, match=r"differs .* in \['seed'\]"):
        open_run_store(cfg, tmp_path / "other", resume=True)


@pytest.mark.parametrize("executor, message", [
    ({"kind": "ray", "address": "headnode"}, "executor.address: address "
     "'headnode' should be 'auto', HOST:PORT"),
    ({"kind": "cluster"}, "executor.kind: Input should be 'local' or 'ray'"),
    ({"kind": "ray", "cpus_per_candidate": 0}, "executor.cpus_per_candidate: Input should be "
     "greater than 0"),
    ({"kind": "ray", "max_retries": -1}, "executor.max_retries: Input should be greater"),
    ({"kind": "ray", "mode": "threads"}, "executor.mode: Input should be 'auto', 'tune' or "
     "'actors'"),
    ({"kind": "ray", "scheduler": "asha"}, "executor.scheduler 'asha' stops Ray Tune trials; "
     "it needs executor.mode 'tune'"),
    ({"kind": "ray", "mode": "tune", "scheduler": "asha"}, "needs epoch-based training"),
    ({"kind": "ray", "workers": 3}, "executor.workers: unknown field"),
])
def test_executor_config_errors_name_the_field(tmp_path, executor, message):
    with pytest.raises(ConfigError) as err:
        parse_config(search_config(tmp_path, executor=executor), "exp.yaml")
    assert message in str(err.value)


def test_asha_needs_a_grace_period_below_the_epochs():
    cfg = {"space": "small_cnn", "task": "classification",
           "evaluator": {"kind": "train", "train": {"epochs": 2}},
           "executor": {"kind": "ray", "scheduler": "asha", "asha": {"grace_period": 2}}}
    with pytest.raises(ConfigError, match=r"grace_period \(2\) must be below "
                                          r"evaluator.train.epochs \(2\)"):
        parse_config(cfg)
    cfg["executor"]["asha"]["grace_period"] = 1
    assert parse_config(cfg).executor.resolved_mode("train") == "tune"


# -- the concurrent search loop, driven by an in-process executor -------------------------------
class OutOfOrderExecutor:
    """Keeps up to ``width`` candidates in flight and finishes the newest first (the order a
    cluster might); raises KeyboardInterrupt after ``die_after`` records, like a killed
    driver."""

    def __init__(self, width=3, die_after=None):
        self.width, self.die_after, self.recorded = width, die_after, 0

    def run(self, search):
        pending = []
        while True:
            while len(pending) < self.width and (c := search.propose()) is not None:
                pending.append(c)
            if not pending:
                return
            c = pending.pop()
            search.record(c, search.evaluate_here(c))
            self.recorded += 1
            if self.die_after is not None and self.recorded >= self.die_after:
                raise KeyboardInterrupt


class Twice(Strategy):
    """Proposes x = 0, 0, 1, 1, 2, 2, ... and counts what it is told."""

    def __init__(self, space, objective, seed=0):
        super().__init__(space, objective, seed)
        self.next, self.told = 0, Counter()

    def ask(self, n=1):
        out = [Architecture(x=(self.next + i) // 2) for i in range(n)]
        self.next += n
        return out

    def tell(self, arch, result):
        self.told[arch["x"]] += 1


def make_concurrent_search(path, budget, executor, strategy=None, fn=None):
    space = toy_plugin.ToyGrid() if strategy is None else SearchSpace([IntRange("x", 0, 99)])
    objective = Objective(metric="score")
    strategy = strategy or RandomSearch(space, objective, seed=3)
    fn = fn or toy_plugin.objective
    return Search(space, strategy, FunctionEvaluator(fn), objective, RunStore.in_dir(path),
                  Budget(trials=budget), executor=executor)


def test_concurrent_loop_meets_the_budget_with_the_same_archs_as_sequential(tmp_path):
    seq = make_concurrent_search(tmp_path / "seq", 15, None)
    seq.run()
    conc = make_concurrent_search(tmp_path / "conc", 15, OutOfOrderExecutor(width=4))
    trials = conc.run()
    keys = [t.arch.key for t in trials]
    assert len(keys) == 15 == len(set(keys)) and not conc.in_flight
    assert set(keys) == {t.arch.key for t in seq.store.finished()}
    assert conc.store.get_meta("in_flight") == [] and not conc.store.untold()


def test_repeat_of_a_candidate_in_flight_is_told_when_it_finishes(tmp_path):
    strategy = Twice(None, Objective(metric="score"))
    search = make_concurrent_search(tmp_path, 5, OutOfOrderExecutor(width=2), strategy=strategy,
                                    fn=lambda a: {"score": a["x"]})
    strategy.space = search.space
    trials = search.run()
    assert [t.arch["x"] for t in trials] == [0, 1, 2, 3, 4]  # each evaluated once
    assert search.duplicates >= 4
    assert all(strategy.told[x] == 2 for x in range(4))  # the repeat got the same result


def test_killed_concurrent_run_redoes_its_trials_in_flight_first(tmp_path):
    first = make_concurrent_search(tmp_path, 12, OutOfOrderExecutor(width=3, die_after=4))
    with pytest.raises(KeyboardInterrupt):
        first.run()
    left = {t.arch.key for t in first.store.trials() if t.status is Status.RUNNING}
    assert len(left) == 2 and first.store.get_meta("in_flight")
    first.store.close()
    again = make_concurrent_search(tmp_path, 12, OutOfOrderExecutor(width=3))
    trials = again.run()
    done = [t for t in trials if t.done]
    assert len(done) == 12 == len({t.arch.key for t in done})
    assert {t.arch.key for t in done[4:6]} == left  # redone first, then new proposals
    reference = make_concurrent_search(tmp_path / "ref", 12, None)
    reference.run()
    assert {t.arch.key for t in done} == {t.arch.key for t in reference.store.finished()}


# -- with a local Ray ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray for the module: 2 CPUs, workers that can import the test plugins. Ray
    workers see the environment of the moment Ray starts, so the ray_plugin variables are set
    first, for the whole module (the ``marks`` fixture empties their folder per test)."""
    ray = pytest.importorskip("ray")
    import logging

    root = tmp_path_factory.mktemp("ray_marks")
    saved = {k: os.environ.get(k) for k in ("NASTK_RAY_MARKS", "NASTK_RAY_LOG")}
    os.environ["NASTK_RAY_MARKS"] = str(root / "marks")
    os.environ["NASTK_RAY_LOG"] = str(root / "evaluations.log")
    pythonpath = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH")] if p)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def marks(ray_cluster):
    """The ray_plugin marks folder, emptied, and its evaluation log, removed."""
    folder = Path(os.environ["NASTK_RAY_MARKS"])
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    Path(os.environ["NASTK_RAY_LOG"]).unlink(missing_ok=True)
    return folder


def evaluations() -> list[str]:
    """Architecture keys in the order ray_plugin evaluated them (every process)."""
    log = Path(os.environ["NASTK_RAY_LOG"])
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.split(" ", 1)[1] for line in lines]


@pytest.mark.slow
def test_actor_pool_evaluates_the_same_architectures_as_local(ray_cluster, tmp_path, capsys,
                                                              marks):
    local = parse_config(search_config(tmp_path, "local", trials=20, executor="local"))
    run_experiment(local, progress=False)
    path = tmp_path / "ray.yaml"
    path.write_text(yaml.safe_dump(search_config(tmp_path, "ray", trials=20, executor="local")))
    assert main(["search", str(path), "--executor", "ray", "--no-progress"]) == 0
    out = capsys.readouterr()
    assert "leaderboard: ray" in out.out and "20 trials (0 failed)" in out.out
    assert "actor pool: 2 actors" in out.err
    ours, theirs = finished(tmp_path / "ray"), finished(tmp_path / "local")
    assert len(ours) == 20 == len({t.arch.key for t in ours})
    assert ({t.arch.key: t.result.metrics for t in ours}
            == {t.arch.key: t.result.metrics for t in theirs})
    for name in ("local", "ray"):  # same report either way
        assert (tmp_path / name / "report.md").is_file()
    with RunStore.open_existing(tmp_path / "ray") as st:
        assert st.get_meta("config")["executor"]["kind"] == "ray"
        assert st.load_strategy_state() is not None and not st.untold()


@pytest.mark.slow
def test_tune_trials_evaluate_the_same_architectures_as_local(ray_cluster, tmp_path, marks):
    local = parse_config(search_config(tmp_path, "local", trials=6, executor="local"))
    run_experiment(local, progress=False)
    tuned = parse_config(search_config(tmp_path, "tune", trials=6,
                                       executor={"kind": "ray", "mode": "tune"}))
    run_experiment(tuned, progress=False)
    ours, theirs = finished(tmp_path / "tune"), finished(tmp_path / "local")
    assert len(ours) == 6 and all(t.status is Status.COMPLETE for t in ours)
    assert ({t.arch.key: t.result.metrics for t in ours}
            == {t.arch.key: t.result.metrics for t in theirs})
    assert any((tmp_path / "tune" / "ray").iterdir())  # Tune's own files stay in the run dir


@pytest.mark.slow
def test_killed_worker_is_replaced_and_its_candidate_retried(ray_cluster, tmp_path, marks):
    """SIGKILL the worker process in the middle of a candidate: the pool replaces the worker,
    evaluates the candidate again, and every other trial is recorded."""
    victim = marks / "victim"
    killed: list[str] = []

    def kill_when_ready():
        deadline = time.time() + 300  # a busy machine starts Ray actors slowly
        while time.time() < deadline and not victim.exists():
            time.sleep(0.05)
        if victim.exists():
            pid, key = victim.read_text().split(" ", 1)
            os.kill(int(pid), signal.SIGKILL)
            killed.append(key)

    killer = threading.Thread(target=kill_when_ready, daemon=True)
    killer.start()
    cfg = parse_config(search_config(tmp_path, "pool", trials=16,
                                     fn="ray_plugin:waits_to_be_killed"))
    outcome = run_experiment(cfg, progress=False)
    killer.join(timeout=5)
    assert killed, "no candidate with a == 0 was proposed"
    trials = finished(tmp_path / "pool")
    assert len(trials) == 16 and all(t.status is Status.COMPLETE for t in trials)
    retried = [t for t in trials if t.result.info.get("worker_retries")]
    assert [t.arch.key for t in retried] == killed
    assert outcome.stop_reason == "budget of trials reached"
    counts = Counter(evaluations())
    assert counts[killed[0]] == 1  # the killed attempt never got to log
    assert len(counts) == 16 and all(n == 1 for n in counts.values())


@pytest.mark.slow
def test_candidate_that_always_kills_its_worker_is_recorded_failed(ray_cluster, tmp_path,
                                                                    marks):
    cfg = parse_config(search_config(tmp_path, "deadly", trials=12, seed=5,
                                     fn="ray_plugin:kills_its_worker",
                                     executor={"kind": "ray", "max_retries": 0,
                                               "batch_size": 2}))
    run_experiment(cfg, progress=False)
    trials = finished(tmp_path / "deadly")
    assert len(trials) == 12
    failed = [t for t in trials if t.status is Status.FAILED]
    assert failed and all(t.arch["a"] == 0 for t in failed)
    assert all(t.status is Status.COMPLETE for t in trials if t.arch["a"] != 0)
    for t in failed:
        # its batch of two died first (not counted: the culprit was unknown), then it alone
        assert ("worker process died once while evaluating this candidate "
                "(executor.max_retries=0): ActorDiedError: The actor died") in t.result.error


@pytest.mark.slow
def test_tune_trials_whose_worker_died_are_retried_then_recorded_failed(ray_cluster, tmp_path,
                                                                        marks):
    """Seed 12 proposes a = 2, 0, 3, 1: the a == 0 candidate kills its worker once and completes
    when retried; the a == 1 one kills it every time and is recorded failed after a retry."""
    cfg = parse_config(search_config(
        tmp_path, "tune_kill", trials=4, seed=12, fn="ray_plugin:kills_its_worker_once_or_always",
        executor={"kind": "ray", "mode": "tune", "max_retries": 1}))
    run_experiment(cfg, progress=False)
    trials = {t.arch["a"]: t for t in finished(tmp_path / "tune_kill")}
    assert sorted(trials) == [0, 1, 2, 3]
    assert trials[0].status is Status.COMPLETE and trials[0].result.info["worker_retries"] == 1
    assert trials[1].status is Status.FAILED
    assert ("worker process died 2 times while evaluating this candidate "
            "(executor.max_retries=1)") in trials[1].result.error
    assert all(trials[a].status is Status.COMPLETE and "worker_retries" not in
               trials[a].result.info for a in (2, 3))


@pytest.mark.slow
def test_asha_stops_poor_candidates_early(ray_cluster, tmp_path):
    cfg = parse_config({
        "name": "asha", "run_dir": str(tmp_path / "asha"), "seed": 0,
        "space": {"name": "small_cnn", "options": {"stages": 2, "widths": [4, 8],
                                                   "depths": [1, 2]}},
        "task": {"name": "classification",
                 "options": {"dataset": "synthetic", "n_samples": 200, "image_size": 8}},
        "strategy": "random",
        "evaluator": {"kind": "train", "train": {"epochs": 3, "batch_size": 32,
                                                 "latency": False}},
        "budget": {"trials": 6}, "keep_checkpoints": 2,
        "executor": {"kind": "ray", "max_concurrent": 1, "scheduler": "asha",
                     "asha": {"grace_period": 1, "reduction_factor": 2}}})
    outcome = run_experiment(cfg, progress=False)
    trials = finished(tmp_path / "asha")
    assert len(trials) == 6 and all(t.status is Status.COMPLETE for t in trials)
    stopped = [t for t in trials if t.result.info.get("early_stopped")]
    full = [t for t in trials if not t.result.info.get("early_stopped")]
    assert stopped and full
    assert all(1 <= t.result.info["resource"] < 3 and "accuracy" in t.result.metrics
               and t.result.costs["params"] > 0 for t in stopped)
    assert all(t.result.info["steps"] > 0 and "train_loss" in t.result.metrics for t in full)
    # the best candidates' weights came back from the workers
    kept = sorted((tmp_path / "asha" / "checkpoints").glob("trial_*.pt"))
    assert len(kept) == 2
    assert outcome.report.is_file()


@pytest.mark.slow
def test_killed_driver_resumes_without_losing_or_repeating_finished_trials(
        ray_cluster, tmp_path, toy_env, marks):
    """SIGKILL a `nastk search --executor ray` process mid-search, resume it: every trial
    finished before the kill is still there, unchanged, and none is evaluated again."""
    cfg = search_config(tmp_path, "driver", trials=24, executor={"kind": "ray"})
    path = tmp_path / "driver.yaml"
    path.write_text(yaml.safe_dump(cfg))
    (marks / "sleep").write_text("0.25")
    env = dict(toy_env)
    args = [sys.executable, "-m", "nastk.cli", "search", str(path), "--address", ray_cluster,
            "--no-progress"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_for_complete(tmp_path / "driver" / "store.sqlite", 8, 90, proc)
    assert proc.poll() is None, proc.communicate()[1]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with RunStore.open_existing(tmp_path / "driver") as st:
        before = {t.id: (t.arch.key, t.result) for t in st.finished()}
        in_flight = {t.arch.key for t in st.trials() if t.status is Status.RUNNING}
    assert 8 <= len(before) < 24
    log_at_kill = len(evaluations())

    proc = subprocess.run([*args, "--resume"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "resumed" in proc.stderr
    with RunStore.open_existing(tmp_path / "driver") as st:
        after = st.finished()
        assert st.count(Status.RUNNING) == 0
        assert st.count(Status.INTERRUPTED) == len(in_flight)
    assert len(after) == 24 == len({t.arch.key for t in after})
    assert in_flight <= {t.arch.key for t in after}  # what was in flight was redone
    by_id = {t.id: (t.arch.key, t.result) for t in after}
    assert all(by_id[i] == before[i] for i in before)  # nothing finished was lost or changed
    later = evaluations()[log_at_kill:]
    assert not {key for key, _ in before.values()} & set(later)  # nor evaluated again


def refused_search(tmp_path, name, cfg, capsys) -> str:
    """Run ``nastk search`` on ``cfg`` written as ``NAME.yaml``; it must stop with exit 2.
    Returns its stderr with the whitespace collapsed."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--no-progress"]) == 2
    return " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["actors", "tune"])
def test_workers_that_cannot_build_the_evaluator_stop_the_search_with_the_fix(
        ray_cluster, tmp_path, monkeypatch, capsys, mode):
    """A module only the driver can import (a single-file plugin is shipped to the workers
    alone, without the helper module beside it that it imports): the workers fail to build
    the evaluator, and the search stops with an error that says so (instead of recording
    every candidate failed)."""
    (tmp_path / "driver_only").mkdir()
    (tmp_path / "driver_only" / "driver_only_plugin.py").write_text(
        "import driver_only_helper\n\n\ndef score(arch):\n"
        "    return {'score': driver_only_helper.SCORE}\n")
    (tmp_path / "driver_only" / "driver_only_helper.py").write_text("SCORE = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "driver_only"))
    cfg = search_config(tmp_path, "lonely", trials=4, fn="driver_only_plugin:score",
                        executor={"kind": "ray", "mode": mode})
    err = refused_search(tmp_path, "lonely", cfg, capsys)
    assert "a Ray worker could not build the evaluator" in err
    assert "No module named 'driver_only_helper'" in err and "make them a package" in err
    with RunStore.open_existing(tmp_path / "lonely") as st:
        assert st.count(Status.COMPLETE, Status.FAILED) == 0  # nothing recorded as failed


def test_unreachable_address_fails_with_the_fix(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(search_config(tmp_path, "x", executor="local")))
    assert main(["search", str(path), "--address", "127.0.0.1:1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach a Ray cluster at 127.0.0.1:1" in err and "ray start --head" in err
    assert main(["search", str(path), "--executor", "local", "--address", "auto"]) == 2
    assert "--address auto is for the ray executor" in capsys.readouterr().err


@pytest.mark.slow
def test_an_address_where_something_else_listens_fails_fast_in_one_line(tmp_path, toy_env):
    """A port that accepts connections but is not a Ray head: Ray's client used to retry for
    over two minutes, printing a score of warnings; now one line, in seconds, nothing
    written."""
    import socket

    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(search_config(tmp_path, "x", executor="local")))
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        proc = subprocess.run([sys.executable, "-m", "nastk.cli", "search", str(path),
                               "--address", address, "--no-progress"], env=toy_env,
                              capture_output=True, text=True, timeout=90)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: cannot reach a Ray cluster at {address}")
    assert "does not answer as a Ray head" in lines[0] and "ray start --head" in lines[0]
    assert not (tmp_path / "x").exists()


def test_a_real_ray_head_passes_the_address_check(ray_cluster):
    from nastk.executors.ray_cluster import _check_reachable

    _check_reachable(ray_cluster)  # the GCS answers the HTTP/2 preface with SETTINGS


@pytest.mark.parametrize("mode", ["actors", "tune"])
def test_a_data_error_on_a_worker_stops_the_search_with_the_file_named(
        ray_cluster, tmp_path, capsys, marks, mode):
    """A run-stopping error raised on a worker (an unreadable data file) stops the search on
    either executor, as it does in-process: the file named, exit 2, the candidate recorded
    interrupted rather than failed."""
    cfg = search_config(tmp_path, "stop", trials=12, fn="ray_plugin:data_file_breaks",
                        executor={"kind": "ray", "mode": mode})
    err = refused_search(tmp_path, "stop", cfg, capsys)
    assert "cannot read image /data/train/0042.png" in err
    assert "the search stopped" in err and "--resume" in err
    with RunStore.open_existing(tmp_path / "stop") as st:
        assert st.count(Status.FAILED) == 0 and st.count(Status.RUNNING) == 0
        assert st.count(Status.INTERRUPTED) >= 1
        assert all(t.arch["a"] != 0 for t in st.finished())
