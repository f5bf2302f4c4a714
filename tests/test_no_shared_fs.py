"""Ray workers need no shared file system for the files a search's evaluator reads: the
driver ships the supernet checkpoint's bytes (nastk.config.factory), so a weight-sharing
search runs on a multi-node Ray cluster even when the checkpoint is gone from the driver's
disk after it was read."""

import os
from pathlib import Path

import pytest
import yaml

from nastk.cli.main import main
from nastk.config.factory import ConfigEvaluatorFactory
from nastk.config.schema import parse_config
from nastk.pipelines.search import search_setup
from nastk.run.lifecycle import execute
from nastk.run.sqlite_store import RunStore

TESTS = Path(__file__).parent
TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 200, "image_size": 16,
                    "num_classes": 4}}


def _trained_supernet(tmp: Path) -> Path:
    cfg = {"name": "toy", "run_dir": str(tmp / "supernet"), "plugins": ["toy_supernet"],
           "space": "toy_supernet", "task": TASK,
           "training": {"phases": [{"epochs": 1}], "batch_size": 32, "n_random": 1,
                        "bn_calib_batches": 2, "num_threads": 1}}
    path = tmp / "supernet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["supernet", "train", str(path), "--no-progress"]) == 0
    return tmp / "supernet" / "supernet.pt"


def _search(tmp: Path, name: str, checkpoint: Path, executor: object) -> dict:
    return {"name": name, "run_dir": str(tmp / name), "plugins": ["toy_supernet"],
            "space": "toy_supernet", "task": TASK, "strategy": "random", "seed": 1,
            "evaluator": {"kind": "supernet",
                          "supernet": {"checkpoint": str(checkpoint), "calib_batches": 2}},
            "budget": {"trials": 6}, "executor": executor}


def _rows(run_dir: Path) -> dict:
    with RunStore.open_existing(run_dir) as store:
        return {t.arch.key: t.result.metrics for t in store.finished()}


def test_the_factory_carries_the_files_a_worker_reads(tmp_path):
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights")
    data = {"evaluator": {"kind": "supernet", "supernet": {"checkpoint": str(ckpt)},
                         "train": {"init": None}}}
    factory = ConfigEvaluatorFactory.shipping(data)
    assert factory.files == {"evaluator.supernet.checkpoint": ("w.pt", b"weights")}
    other = ConfigEvaluatorFactory.shipping(data)
    assert other.key == factory.key  # one evaluator per worker for equal contents
    ckpt.write_bytes(b"other weights")
    assert ConfigEvaluatorFactory.shipping(data).key != factory.key


@pytest.mark.slow
def test_a_multi_node_search_runs_after_the_driver_lost_its_checkpoint(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    checkpoint = _trained_supernet(tmp_path)
    local = parse_config(_search(tmp_path, "local", checkpoint, "local"))
    execute(search_setup(local), local.resolved_run_dir(), progress=False)

    pythonpath = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH")] if p)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):  # two worker nodes; the head runs no candidate
            cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
        moved = tmp_path / "elsewhere.pt"
        config = parse_config(_search(tmp_path, "ray", checkpoint, {"kind": "ray"}))
        setup = search_setup(config)  # the driver reads the checkpoint here ...
        checkpoint.rename(moved)  # ... and no node can read it at that path afterwards
        outcome = execute(setup, config.resolved_run_dir(), progress=False)
        nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len(nodes) == 3
    assert len(outcome.trials) == 6 and all(t.result.ok for t in outcome.trials)
    assert _rows(tmp_path / "ray") == _rows(tmp_path / "local")
