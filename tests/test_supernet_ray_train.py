"""Data-parallel supernet training on Ray Train (2 CPU workers on a local Ray)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
import yaml

from nastk.cli.commands.supernet_train import train_supernet
from nastk.cli.main import main
from nastk.config.compose import build_supernet_model
from nastk.config.schema import SupernetConfig, parse_config
from nastk.core.errors import NastkError
from nastk.run.sqlite_store import RunStore

ray = pytest.importorskip("ray")

SPACE = {"name": "ofa_mbv3", "options": {"stages": [8, 16], "final_channels": 32}}
TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 240, "image_size": 16,
                    "num_classes": 4}}
#: how close 2 workers' parameters come to 1 worker's after one epoch of 2 steps in float32
#: (measured 2026-12-03: 2.8e-6, while the steps moved the weights by up to 8e-3). Both compute
#: the same sums over the global batch in another order (batch norm's statistics merged over
#: shards, gradients averaged over workers). A ReLU after batch norm sees many values near 0;
#: a rounding difference that moves one across 0 changes that element's gradient entirely, so
#: float32 differences grow with the steps (1e-3 after 6 steps here, as large as permuting the
#: images within each batch of one worker makes them). tests/test_data_parallel.py checks 6
#: steps in float64, where the workers agree with one worker to 2.5e-14.
PARAM_ATOL = 5e-5


def config(run_dir, epochs=1, task=TASK, **training):
    data = {"name": "dp", "run_dir": str(run_dir), "seed": 3, "space": SPACE, "task": task,
            "training": {"epochs": epochs, "batch_size": 24, "n_random": 1,
                         "bn_calib_batches": 2, "num_threads": 1, "lr": 0.05, **training}}
    return parse_config(data, "test", SupernetConfig)


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def weights(run_dir):
    return torch.load(run_dir / "supernet.pt", weights_only=True)


@pytest.mark.slow
def test_two_workers_take_the_steps_of_one_worker_with_their_joint_batch(tmp_path, local_ray):
    task = {**TASK, "options": {**TASK["options"], "n_samples": 80}}  # 48 images: 2 steps
    one = train_supernet(config(tmp_path / "one", task=task), progress=False)
    two = train_supernet(config(tmp_path / "two", task=task, workers=2, sync_batchnorm=True),
                         progress=False)
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a["epoch"] == b["epoch"] == 1
    start = config(tmp_path / "x", task=task)  # the untrained supernet
    torch.manual_seed(start.seed)
    init_net = build_supernet_model(start).net
    init = init_net.state_dict()
    params = {k for k, _ in init_net.named_parameters()}
    worst = max(float((b["model"][k] - a["model"][k]).abs().max()) for k in params)
    print(f"largest parameter difference of 2 workers vs 1: {worst:.2e}")
    assert worst < PARAM_ATOL, worst
    moved = max(float((a["model"][k] - init[k]).abs().max()) for k in params)
    print(f"largest parameter change in training: {moved:.2e}")
    assert moved > 100 * PARAM_ATOL  # training moved the weights far more than that
    for k, value in a["model"].items():  # buffers (BN statistics of the last evaluation)
        assert b["model"][k].shape == value.shape
        if k not in params and value.is_floating_point():
            assert torch.allclose(b["model"][k], value, rtol=1e-2, atol=1e-3), k
    assert [r["workers"] for r in one.history] == [1]
    assert [r["workers"] for r in two.history] == [2]
    for key in ("val_accuracy_largest", "val_accuracy_smallest", "train_loss_largest"):
        assert two.history[0][key] == pytest.approx(one.history[0][key], abs=1e-4)


@pytest.mark.slow
def test_a_worker_that_dies_is_replaced_and_training_continues(tmp_path, local_ray):
    run_dir = tmp_path / "run"
    cfg = config(run_dir, epochs=3, workers=2, max_failures=1)
    killed: dict = {}

    def kill_rank_1_after_epoch_1():
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                history = json.loads((run_dir / "history.json").read_text())
                workers = json.loads((run_dir / "workers.json").read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if len(history) >= 1:
                pid = next(w["pid"] for w in workers["workers"] if w["rank"] == 1)
                os.kill(pid, signal.SIGKILL)
                killed["pid"], killed["after"] = pid, len(history)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill_rank_1_after_epoch_1, daemon=True)
    thread.start()
    outcome = train_supernet(cfg, progress=False)
    thread.join(5)
    assert killed and killed["after"] < 3
    assert [r["epoch"] for r in outcome.history] == [1, 2, 3]
    notes = [r["restarted"] for r in outcome.history if "restarted" in r]
    assert len(notes) == 1 and notes[0]["attempt"] == 2 and notes[0]["workers"] == 2
    assert notes[0]["from_epoch"] >= 1
    workers = json.loads((run_dir / "workers.json").read_text())
    assert workers["attempt"] == 2 and killed["pid"] not in {w["pid"]
                                                             for w in workers["workers"]}
    assert weights(run_dir)["epoch"] == 3


@pytest.mark.slow
def test_killed_run_resumes_on_another_number_of_workers_and_its_supernet_is_searched(
        tmp_path, local_ray):
    run_dir = tmp_path / "run"
    cfg = config(run_dir, epochs=3, workers=2)
    path = tmp_path / "supernet.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    proc = subprocess.Popen([sys.executable, "-m", "nastk.cli", "supernet", "train", str(path),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                if len(json.loads((run_dir / "history.json").read_text())) >= 1:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.communicate()
    done = weights(run_dir)["epoch"]
    assert 1 <= done < 3
    # resumed with one worker, in this process
    assert main(["supernet", "train", str(path), "--resume", "--workers", "1",
                 "--no-progress"]) == 0
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["workers"] for r in history] == [2] * done + [1] * (3 - done)
    assert history[done]["resumed"] == {"from_epoch": done, "workers": 1}
    assert weights(run_dir)["epoch"] == 3
    # a weight-sharing search on the Ray actor pool loads it unchanged and scores candidates
    search = {"name": "ws", "run_dir": str(tmp_path / "search"), "space": SPACE, "task": TASK,
              "strategy": "random", "evaluator": {"kind": "supernet", "supernet": {
                  "checkpoint": str(run_dir / "supernet.pt"), "calib_batches": 2}},
              "executor": {"kind": "ray", "mode": "actors", "actors": 1},
              "budget": {"trials": 3}}
    search_path = tmp_path / "search.yaml"
    search_path.write_text(yaml.safe_dump(search))
    assert main(["search", str(search_path), "--no-progress"]) == 0
    with RunStore.open_existing(tmp_path / "search") as store:
        trials = store.finished()
    assert len(trials) == 3 and all(t.result.ok for t in trials)
    assert all(t.result.info.get("evaluator") == "weight_sharing" for t in trials)
    assert all(0.0 <= t.result.metrics["accuracy"] <= 1.0 for t in trials)

def test_settings_that_cannot_work_stop_before_any_worker_starts(tmp_path, local_ray):
    with pytest.raises(NastkError, match=r"training.workers .*exceeds training.batch_size"):
        config(tmp_path / "a", workers=32)
    cfg = config(tmp_path / "b", workers=3)  # the local Ray has 2 CPUs
    with pytest.raises(NastkError, match=r"need 3 CPUs .* Use fewer workers"):
        train_supernet(cfg, progress=False)
    # CUDA workers: this process needs no GPU, the cluster does (the local Ray has none)
    with pytest.raises(NastkError, match=r"need 2 CPUs and 2 GPUs"):
        train_supernet(config(tmp_path / "c", workers=2, device="cuda"), progress=False)
    with pytest.raises(NastkError, match=r"training\.precision: .*fp16"):
        train_supernet(config(tmp_path / "d", workers=2, precision="fp16"), progress=False)
    assert not any((tmp_path / d / "supernet.pt").exists() for d in "bcd")


@pytest.mark.slow
def test_a_failure_a_restart_would_repeat_is_not_trained_into_again(tmp_path, local_ray):
    cfg = config(tmp_path / "run", epochs=2, workers=2, lr=1e9, grad_clip=None, max_failures=1)
    with pytest.raises(NastkError, match=r"not retried: rank \d failed with supernet training "
                                         r"diverged"):
        train_supernet(cfg, progress=False)
    assert json.loads((tmp_path / "run" / "failure.json").read_text())["error"].startswith(
        "supernet training diverged")
    assert not (tmp_path / "run" / "supernet.pt").exists()
    # the restarted group stopped before its workers registered: only attempt 1 trained
    assert json.loads((tmp_path / "run" / "workers.json").read_text())["attempt"] == 1
