"""Thread counts that fit the machine (nastk.core.cpus, nastk.training.threads) and latency
measurements that state their conditions (nastk.evaluation.cost.measure_latency)."""

import json
import os
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from nastk.core import cpus
from nastk.core.cpus import auto_threads, available_cpus, cgroup_cpu_quota, resolve_threads
from nastk.evaluation import cost
from nastk.training.threads import torch_threads


def test_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cgroup_cpu_quota(tmp_path) == 3.0


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path) is None


def test_available_cpus_is_affinity_capped_by_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda: None)
    assert available_cpus() == 8
    monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda: 2.5)
    assert available_cpus() == 2
    monkeypatch.setattr(cpus, "cgroup_cpu_quota", lambda: 0.5)  # a fraction of one CPU
    assert available_cpus() == 1


def test_auto_threads(monkeypatch):
    monkeypatch.setattr(cpus, "available_cpus", lambda: 8)
    monkeypatch.setattr(cpus, "cpus_busy_elsewhere", lambda: 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setitem(cpus._SPIN_AT_IMPORT, "torch_first", False)
    assert auto_threads() == 8
    assert auto_threads(workers=3) == 2  # 8 CPUs shared by three side-by-side candidates
    assert auto_threads(workers=16) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # Ray sets it to an actor's reserved CPUs
    assert auto_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # spinning threads: one is safest
    assert auto_threads() == 1
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setitem(cpus._SPIN_AT_IMPORT, "torch_first", True)
    assert auto_threads() == 1
    with pytest.raises(ValueError):
        auto_threads(workers=0)


def test_auto_threads_leave_the_cores_other_processes_use(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setitem(cpus._SPIN_AT_IMPORT, "torch_first", False)
    monkeypatch.setattr(cpus, "available_cpus", lambda: 2)
    for busy, expected in ((0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (3.0, 1)):
        monkeypatch.setattr(cpus, "cpus_busy_elsewhere", lambda busy=busy: busy)
        assert auto_threads() == expected, busy
    monkeypatch.setattr(cpus, "available_cpus", lambda: 16)
    monkeypatch.setattr(cpus, "cpus_busy_elsewhere", lambda: 5.0)
    assert auto_threads() == 11 and auto_threads(workers=4) == 4


def test_cpus_busy_elsewhere_subtracts_this_process(monkeypatch):
    """Machine busy time from /proc/stat over the window, less this process's own CPU time
    (a scripted clock: 4 CPUs, 0.2 s window, 0.6 CPU-seconds busy in all of which 0.1 was
    ours -> 2.5 CPUs kept busy elsewhere)."""
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 4)
    stats = iter([(100.0, 1000.0), (100.0 + 60.0, 1000.0 + 80.0)])  # jiffies: busy, total
    own = iter([5.0, 5.1])
    clock = iter([10.0, 10.0, 10.2])  # the cache check, the window start, its end
    monkeypatch.setattr(cpus, "_cpu_times", lambda: next(stats))
    monkeypatch.setattr(cpus, "_own_cpu_s", lambda: next(own))
    monkeypatch.setattr(cpus.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(cpus.time, "sleep", lambda s: None)
    monkeypatch.setattr(cpus, "_BUSY_CACHE", {})
    # 60 of 80 jiffies busy on 4 CPUs = 3.0 CPUs; ours 0.1 s / 0.2 s = 0.5 CPU -> 2.5
    assert cpus.cpus_busy_elsewhere() == pytest.approx(2.5)


def test_cpus_busy_elsewhere_measures_a_spinning_neighbour():
    """A real neighbour spinning a CPU shows up as (about) one busy CPU."""
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        busy = cpus.cpus_busy_elsewhere(window_s=0.5, max_age_s=0.0)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert busy > 0.6


def test_resolve_threads(monkeypatch):
    monkeypatch.setattr(cpus, "auto_threads",
                        lambda workers=1, loader_workers=0: (6 - loader_workers) // workers)
    assert resolve_threads("auto") == 6
    assert resolve_threads("auto", workers=2) == 3
    assert resolve_threads("auto", loader_workers=2) == 4
    assert resolve_threads(4) == 4
    assert resolve_threads(None) is None
    for bad in (0, -1, 1.5, "two", True):
        with pytest.raises(ValueError, match="num_threads"):
            resolve_threads(bad)


def test_torch_threads_sets_and_restores():
    before = torch.get_num_threads()
    other = 2 if before != 2 else 3
    with torch_threads(other) as n:
        assert n == other == torch.get_num_threads()
    assert torch.get_num_threads() == before
    with torch_threads(None) as n:
        assert n == before


def _import_order(code: str, env_extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


REPORT = ("import json, os\nfrom nastk.core import cpus\n"
          "print(json.dumps({'policy': os.environ.get('OMP_WAIT_POLICY'), "
          "'spins': cpus.pool_may_spin()}))")


def test_importing_nastk_first_makes_waiting_threads_sleep():
    assert _import_order("import nastk, torch\n" + REPORT, {}) == {
        "policy": "PASSIVE", "spins": False}


def test_torch_imported_first_is_noticed_and_a_users_policy_kept():
    assert _import_order("import torch, nastk\n" + REPORT, {}) == {
        "policy": None, "spins": True}
    assert _import_order("import nastk\n" + REPORT, {"OMP_WAIT_POLICY": "ACTIVE"}) == {
        "policy": "ACTIVE", "spins": True}


def test_train_config_threads_default_to_auto_and_apply_during_a_trial(monkeypatch):
    from nastk.evaluation.train import TrainConfig, seeded_threads

    assert TrainConfig().num_threads == "auto"
    before = torch.get_num_threads()
    monkeypatch.setattr(cpus, "auto_threads", lambda workers=1, loader_workers=0: 3)
    with seeded_threads(TrainConfig(), seed=0):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before


def test_auto_threads_leave_a_cpu_to_each_loader_worker(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setitem(cpus._SPIN_AT_IMPORT, "torch_first", False)
    monkeypatch.setattr(cpus, "cpus_busy_elsewhere", lambda: 0.0)
    monkeypatch.setattr(cpus, "available_cpus", lambda: 8)
    assert auto_threads(loader_workers=0) == 8
    assert auto_threads(loader_workers=4) == 4
    assert auto_threads(workers=2, loader_workers=4) == 2
    monkeypatch.setattr(cpus, "available_cpus", lambda: 2)
    assert auto_threads(loader_workers=2) == 1 and auto_threads(loader_workers=9) == 1
    with pytest.raises(ValueError, match="loader_workers"):
        auto_threads(loader_workers=-1)


def test_a_trial_with_loader_workers_trains_on_the_cpus_they_leave(monkeypatch, tmp_path):
    from nastk.data.loading import Loading
    from nastk.data.sample_folders import write_cityscapes
    from nastk.evaluation.train import TrainConfig, TrainEvaluator
    from nastk.search_spaces.small_cnn import SmallCNNSpace
    from nastk.tasks.segmentation import SegmentationTask

    seen = []
    monkeypatch.setattr(cpus, "auto_threads",
                        lambda workers=1, loader_workers=0: seen.append(loader_workers) or 1)
    task = SegmentationTask(dataset="cityscapes", root=write_cityscapes(tmp_path, (6, 2),
                                                                        size=(16, 32)),
                            size=(16, 32), holdout_fraction=0.3)
    task.loading = Loading(workers=2, persistent=False)
    ev = TrainEvaluator(task, SmallCNNSpace(), TrainConfig(epochs=1, batch_size=2, latency=False))
    assert ev.loader_workers() == 2
    result = ev.evaluate(SmallCNNSpace().sample(__import__("numpy").random.default_rng(0)))
    assert result.status.name == "COMPLETE", result.error
    assert seen == [2]  # the trial's threads were chosen knowing its loader's two workers


class _Clocked(nn.Module):
    """A model whose forward passes take scripted times on a fake clock."""

    def __init__(self, durations_ms):
        super().__init__()
        self.lin = nn.Linear(2, 2)
        self.durations = list(durations_ms)
        self.now = 0.0
        self.calls = 0

    def clock(self) -> float:
        return self.now

    def forward(self, x):
        self.now += self.durations[self.calls % len(self.durations)] / 1000.0
        self.calls += 1
        return self.lin(x)


def test_steady_latency_is_measured_once_and_not_flagged(monkeypatch):
    model = _Clocked([2.0, 2.1, 1.9, 2.0])
    monkeypatch.setattr(cost.time, "perf_counter", model.clock)
    m = cost.measure_latency(model, (2,), repeats=8, warmup=0)
    assert m.ms == pytest.approx(2.0)
    assert m.attempts == 1 and not m.busy
    # quartiles of 1.9, 1.9, 2.0, 2.0, 2.0, 2.0, 2.1, 2.1 (exclusive method): 1.925, 2.075
    assert m.spread == pytest.approx((2.075 - 1.925) / 2.0)
    assert m.threads == torch.get_num_threads()
    info = {}
    costs = cost.model_costs(model, (2,), repeats=8, info=info)
    assert costs["latency_ms"] == pytest.approx(2.0)
    assert info["latency"]["busy"] is False and info["latency"]["repeats"] == 8


def test_a_spread_that_says_the_machine_was_busy_is_retried_then_flagged(monkeypatch):
    model = _Clocked([2.0, 9.0])  # every other pass waited for the CPU
    monkeypatch.setattr(cost.time, "perf_counter", model.clock)
    m = cost.measure_latency(model, (2,), repeats=8, warmup=0, attempts=3)
    assert m.attempts == 3 and m.busy
    assert m.spread > cost.MAX_LATENCY_SPREAD
    assert m.conditions()["busy"] is True


def test_a_busy_first_attempt_then_a_quiet_one_is_kept_unflagged(monkeypatch):
    model = _Clocked([2.0, 9.0] * 4 + [3.0] * 8)
    monkeypatch.setattr(cost.time, "perf_counter", model.clock)
    m = cost.measure_latency(model, (2,), repeats=8, warmup=0, attempts=3)
    assert (m.attempts, m.busy, m.ms, m.spread) == (2, False, pytest.approx(3.0), 0.0)
