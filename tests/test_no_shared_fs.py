"""Ray workers need no shared file system (issue 26, item 4): the driver ships the files a
config names and the plugin modules that are not installed packages (nastk.executors.shipping),
and supernet training on Ray Train sends its checkpoint and history back through a relay actor
(nastk.executors.ray_train). The multi-node tests run on a local three-node Ray cluster whose
worker nodes each start in a working directory of their own, and hide the plugin package and
the checkpoint on the driver's side after the driver read them."""

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from nastk.cli.commands.supernet_train import train_supernet
from nastk.config.factory import ConfigEvaluatorFactory
from nastk.config.schema import SupernetConfig, parse_config
from nastk.config.supernet_trainer import build_supernet_trainer
from nastk.core.errors import NastkError
from nastk.executors import ray_train
from nastk.executors.shipping import Parcel, module_files
from nastk.pipelines.search import search_setup
from nastk.run.lifecycle import execute
from nastk.run.sqlite_store import RunStore
from nastk.training.data_parallel import DataParallel
from nastk.training.supernet import write_history

TESTS = Path(__file__).parent
PLUGIN = "nofs_plugin"  # a package only the driver has: tests/toy_supernet.py renamed
SPACE = "nofs_supernet"
TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 200, "image_size": 16,
                    "num_classes": 4}}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory) -> Path:
    """A folder holding the package ``nofs_plugin`` (it registers the space
    ``nofs_supernet``); tests put it on the driver's ``sys.path``."""
    root = tmp_path_factory.mktemp("plugins")
    package = root / PLUGIN
    package.mkdir()
    source = (TESTS / "toy_supernet.py").read_text().replace('"toy_supernet"', f'"{SPACE}"')
    (package / "space.py").write_text(source)
    (package / "__init__.py").write_text("from . import space  # registers the space\n")
    return root


@pytest.fixture
def on_driver_path(plugin_dir, monkeypatch) -> Path:
    monkeypatch.syspath_prepend(str(plugin_dir))
    return plugin_dir


@contextlib.contextmanager
def hidden(path: Path) -> Iterator[None]:
    """``path`` moved away (no node can read it there) for the block."""
    away = path.with_name(path.name + ".hidden")
    path.rename(away)
    try:
        yield
    finally:
        away.rename(path)


def supernet_config(run_dir: Path, epochs: int = 1, **training) -> dict:
    return {"name": "toy", "run_dir": str(run_dir), "seed": 2, "plugins": [PLUGIN],
            "space": SPACE, "task": TASK,
            "training": {"phases": [{"epochs": epochs}], "batch_size": 32, "n_random": 1,
                         "bn_calib_batches": 2, "num_threads": 1, **training}}


def search_config(tmp: Path, name: str, evaluator: dict, executor: object,
                  trials: int = 6) -> dict:
    return {"name": name, "run_dir": str(tmp / name), "plugins": [PLUGIN], "space": SPACE,
            "task": TASK, "strategy": "random", "seed": 1, "evaluator": evaluator,
            "budget": {"trials": trials}, "executor": executor}


@pytest.fixture(scope="module")
def trained_supernet(tmp_path_factory, plugin_dir) -> Path:
    tmp = tmp_path_factory.mktemp("supernet")
    sys.path.insert(0, str(plugin_dir))
    try:
        train_supernet(parse_config(supernet_config(tmp / "run"), schema=SupernetConfig),
                       progress=False)
    finally:
        sys.path.remove(str(plugin_dir))
    return tmp / "run" / "supernet.pt"


def rows(run_dir: Path) -> dict:
    with RunStore.open_existing(run_dir) as store:
        return {t.arch.key: t.result.metrics for t in store.finished()}


# -- what the driver ships ----------------------------------------------------------------------
def test_the_factory_carries_the_files_and_the_plugin_package_a_worker_reads(
        tmp_path, on_driver_path):
    ckpt, init = tmp_path / "w.pt", tmp_path / "init.pt"
    ckpt.write_bytes(b"weights")
    init.write_bytes(b"initial weights")
    config = parse_config(search_config(
        tmp_path, "s", {"kind": "train", "train": {"epochs": 1, "init": {"from": str(init)}}},
        "local")).model_dump(mode="json")
    config["evaluator"]["supernet"] = {"checkpoint": str(ckpt)}
    factory = ConfigEvaluatorFactory.shipping(config)
    assert factory.parcel.files == {"evaluator.supernet.checkpoint": ("w.pt", b"weights"),
                                    "evaluator.train.init.from_": ("init.pt",
                                                                   b"initial weights")}
    shipped = factory.parcel.modules[PLUGIN]
    assert sorted(shipped) == [f"{PLUGIN}/__init__.py", f"{PLUGIN}/space.py"]
    assert shipped[f"{PLUGIN}/space.py"] == (on_driver_path / PLUGIN / "space.py").read_bytes()
    assert ConfigEvaluatorFactory.shipping(config).key == factory.key  # built once per worker
    ckpt.write_bytes(b"other weights")
    assert ConfigEvaluatorFactory.shipping(config).key != factory.key


def test_ray_train_workers_get_the_path_filter_and_init_weights_by_value(tmp_path):
    init, filt = tmp_path / "init.pt", tmp_path / "filter.pt"
    init.write_bytes(b"initial weights")
    filt.write_bytes(b"a fitted filter")
    data = parse_config({**supernet_config(tmp_path / "run", init={"from": str(init)}),
                         "plugins": [], "space": "ofa_mbv3",
                         "path_filter": {"file": str(filt)}},
                        schema=SupernetConfig).model_dump(mode="json")
    parcel = Parcel.pack(data, ray_train.SHIPPED_FILES, data["plugins"])
    assert set(parcel.files) == {"training.init.from_", "path_filter.file"}
    with hidden(init), hidden(filt):
        local = parse_config(parcel.unpack(data), schema=SupernetConfig)
    assert Path(local.training.init.from_).read_bytes() == b"initial weights"
    assert local.path_filter.file.read_bytes() == b"a fitted filter"
    assert local.path_filter.file.parent != tmp_path


def test_installed_packages_and_the_standard_library_are_not_shipped():
    assert module_files("nastk.tasks") is None
    assert module_files("yaml") is None and module_files("json") is None
    assert module_files("toy_supernet") is not None  # a module on the tests' path


def test_a_worker_imports_the_shipped_package_after_the_driver_folder_is_gone(
        on_driver_path, tmp_path):
    parcel = Parcel.pack({}, [], [PLUGIN])
    copy_of = {k: v for k, v in sys.modules.items() if k.split(".")[0] == PLUGIN}
    for name in copy_of:
        del sys.modules[name]
    try:
        with hidden(on_driver_path / PLUGIN):
            with pytest.raises(ImportError):
                __import__(PLUGIN)
            data = parcel.unpack({"plugins": [PLUGIN]})
            module = __import__(PLUGIN)
            assert not Path(module.__file__).is_relative_to(on_driver_path)
            assert data == {"plugins": [PLUGIN]}
    finally:
        for name in [k for k in sys.modules if k.split(".")[0] == PLUGIN]:
            del sys.modules[name]
        sys.modules.update(copy_of)


def test_a_worker_without_the_data_set_names_its_node(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a worker enters the driver's working directory
    missing = tmp_path / "no_salicon_here"
    task = {"name": "saliency", "options": {"dataset": "salicon", "root": str(missing)}}
    host = socket.gethostname()
    search = {"name": "s", "space": "salnas", "task": task, "evaluator": {"kind": "train"}}
    with pytest.raises(NastkError, match=rf"^on node {host}: .*no_salicon_here"):
        ConfigEvaluatorFactory.shipping(search)()
    supernet = {"name": "t", "space": "salnas", "task": task}
    loop = {"config": supernet, "parcel": Parcel(), "cwd": str(tmp_path), "source": "",
            "threads": 1}
    with pytest.raises(NastkError, match=rf"^on node {host}: .*no_salicon_here"):
        ray_train._worker_trainer(loop, DataParallel(rank=0, world=1), tmp_path / "scratch")


# -- on a local three-node Ray cluster ----------------------------------------------------------
@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    """A head with no CPUs (it runs no candidate) and two one-CPU worker nodes, each started
    in a working directory of its own; no PYTHONPATH is passed to the workers."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    home = os.getcwd()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for i in range(2):
            os.chdir(tmp_path_factory.mktemp(f"node{i}"))
            try:
                cluster.add_node(num_cpus=1)
            finally:
                os.chdir(home)
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_a_weight_sharing_search_runs_after_the_driver_lost_its_checkpoint_and_plugin(
        nodes, trained_supernet, tmp_path, on_driver_path):
    import ray

    evaluator = {"kind": "supernet",
                 "supernet": {"checkpoint": str(trained_supernet), "calib_batches": 2}}
    local = parse_config(search_config(tmp_path, "local", evaluator, "local"))
    execute(search_setup(local), local.resolved_run_dir(), progress=False)
    config = parse_config(search_config(tmp_path, "ray", evaluator, {"kind": "ray"}))
    setup = search_setup(config)  # the driver reads the checkpoint and the plugin here ...
    with hidden(trained_supernet), hidden(on_driver_path / PLUGIN):  # ... and nobody after
        outcome = execute(setup, config.resolved_run_dir(), progress=False)
    assert len({n["NodeID"] for n in ray.nodes() if n["Alive"]}) == 3
    assert len(outcome.trials) == 6 and all(t.result.ok for t in outcome.trials)
    assert rows(tmp_path / "ray") == rows(tmp_path / "local")


@pytest.mark.slow
def test_tune_trials_start_from_shipped_init_weights(nodes, trained_supernet, tmp_path,
                                                     on_driver_path):
    evaluator = {"kind": "train", "train": {"epochs": 1, "batch_size": 32, "latency": False,
                                            "init": {"from": str(trained_supernet)}}}
    config = parse_config(search_config(tmp_path, "tune", evaluator,
                                        {"kind": "ray", "mode": "tune"}, trials=2))
    setup = search_setup(config)
    with hidden(trained_supernet), hidden(on_driver_path / PLUGIN):
        outcome = execute(setup, config.resolved_run_dir(), progress=False)
    assert len(outcome.trials) == 2 and all(t.result.ok for t in outcome.trials)
    for trial in outcome.trials:
        init = trial.result.info["init"]  # the load report of the worker's own copy
        assert Path(init["file"]).name == trained_supernet.name
        assert "nastk-shipped-" in init["file"] and init["part"] == "body"


class Enough(Exception):
    pass


@pytest.mark.slow
def test_ray_train_resumes_from_the_driver_checkpoint_and_sends_the_run_files_back(
        nodes, tmp_path, on_driver_path, monkeypatch):
    run_dir = tmp_path / "run"
    one = parse_config(supernet_config(run_dir, epochs=2), schema=SupernetConfig)
    run_dir.mkdir()
    trainer = build_supernet_trainer(one, run_dir)

    def after_the_first_epoch(record):
        write_history(run_dir, trainer.history)
        raise Enough

    with pytest.raises(Enough):  # epoch 1 of 2 in this process, as if killed there
        trainer.train(on_epoch=after_the_first_epoch)
    assert torch.load(run_dir / "supernet.pt", weights_only=True)["epoch"] == 1
    read = ray_train._starting_checkpoint

    plugin = on_driver_path / PLUGIN

    def read_then_hide(run, resume):
        # the driver has packed the plugin and reads the checkpoint; then both are gone
        blob = read(run, resume)
        (run / "supernet.pt").rename(run / "supernet.pt.hidden")
        plugin.rename(plugin.with_name(PLUGIN + ".hidden"))
        return blob

    monkeypatch.setattr(ray_train, "_starting_checkpoint", read_then_hide)
    two = parse_config(supernet_config(run_dir, epochs=2, workers=2), schema=SupernetConfig)
    try:
        outcome = train_supernet(two, resume=True, progress=False)
    finally:
        plugin.with_name(PLUGIN + ".hidden").rename(plugin)
    history = json.loads((run_dir / "history.json").read_text())
    assert [r["workers"] for r in history] == [1, 2] and outcome.history == history
    assert history[1]["resumed"] == {"from_epoch": 1, "workers": 2}
    assert torch.load(run_dir / "supernet.pt", weights_only=True)["epoch"] == 2
    workers = json.loads((run_dir / "workers.json").read_text())
    assert workers["attempt"] == 1 and sorted(w["rank"] for w in workers["workers"]) == [0, 1]
    assert json.loads((run_dir / "progress.json").read_text())["epoch"] == 2


@pytest.mark.slow
def test_a_search_built_in_python_sends_its_own_module_by_value(nodes, tmp_path, monkeypatch):
    """The evaluator of a search built in Python is pickled; a function from a module only the
    driver has (not __main__, not installed) travels by value."""
    import nastk

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "nofs_scores.py").write_text(
        "def score(arch):\n"
        "    return {'score': float(sum(ord(c) for c in arch.key) % 97)}\n")
    monkeypatch.syspath_prepend(str(folder))
    import nofs_scores

    runs = {}
    for executor in ("local", {"kind": "ray", "mode": "actors", "actors": 2}):
        search = nastk.create_search("nb201", nofs_scores.score, objective="score",
                                     strategy="random", budget=8, seed=3, executor=executor,
                                     storage=None)
        with hidden(folder), search:
            search.optimize()
            runs[str(executor)] = {t.arch.key: t.result.metrics for t in search.trials}
    local, ray_run = runs.values()
    assert len(ray_run) == 8 and ray_run == local
