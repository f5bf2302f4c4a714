"""The widened task contract end to end: a task whose targets are lists of dicts, whose loss has
named terms and which post-processes its outputs runs through `nastk search` (train evaluator),
`nastk supernet train` and a weight-sharing search; pretrained bodies initialise other tasks;
nested batches, loss terms and callbacks behave as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from spots_task import SpotsTask

from nastk.cli.main import main
from nastk.core.errors import ConfigError, NastkError
from nastk.core.weights import save_weights
from nastk.data.loaders import make_loader, to_device
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.run.sqlite_store import RunStore
from nastk.search_spaces.ofa_mbv3 import OFAMobileNetV3Space
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.task.losses import combine_loss
from nastk.tasks.classification import ClassificationTask
from nastk.tasks.segmentation import SegmentationTask
from nastk.training.callbacks import EarlyStopping, TrainCallback
from nastk.training.pretrained import InitConfig, load_init

TINY_OFA = {"stages": [8, 16], "depths": [1, 2], "expands": [1, 2], "kernels": [3, 5],
            "final_channels": 16, "stem_channels": 8}
TINY_CNN = {"stages": 2, "depths": [1], "widths": [8, 16], "kernels": [3], "expansions": [1]}



def open_run_store(config, run_dir, resume):
    """The store a run of ``config`` opens in ``run_dir`` (the run lifecycle's own opening)."""
    from nastk.config.compose import build_components
    from nastk.pipelines.search import search_setup
    from nastk.run.lifecycle import open_storage

    setup = search_setup(config, build_components(config, check=False))
    return open_storage(setup, run_dir, resume=resume)[0]

def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


# -- units ----------------------------------------------------------------------------------------
def test_to_device_moves_nested_structures_and_keeps_their_types():
    data = {"a": torch.zeros(2), "b": [torch.ones(1), (torch.ones(3), 7)], "c": "text"}
    moved = to_device(data, "cpu")
    assert isinstance(moved["b"], list) and isinstance(moved["b"][1], tuple)
    assert moved["b"][1][1] == 7 and moved["c"] == "text"
    assert torch.equal(moved["b"][1][0], torch.ones(3))


def test_loader_uses_the_tasks_collate_and_keeps_variable_length_targets():
    task = SpotsTask(n_samples=40)
    loader = make_loader(task, task.splits()["train"], 8, shuffle=True,
                         generator=torch.Generator().manual_seed(0))
    x, targets = next(iter(loader))
    assert x.shape == (8, 1, 16, 16)
    assert isinstance(targets, list) and len(targets) == 8
    assert {len(t["labels"]) for t in targets} <= {0, 1, 2, 3}
    assert all(t["boxes"].shape == (len(t["labels"]), 4) for t in targets)


def test_shuffled_loaders_follow_the_generator_whatever_the_dataset_type():
    task = ClassificationTask(dataset="digits")
    ds = task.splits()["train"]
    wrapped = torch.utils.data.Subset(ds, list(range(len(ds))))  # not a TensorDataset
    fast = make_loader(task, ds, 64, shuffle=True, generator=torch.Generator().manual_seed(3))
    plain = make_loader(task, wrapped, 64, shuffle=True,
                        generator=torch.Generator().manual_seed(3))
    order = torch.randperm(len(ds), generator=torch.Generator().manual_seed(3))
    global_state = torch.random.get_rng_state()
    for i, ((xa, ya), (xb, yb)) in enumerate(zip(fast, plain, strict=True)):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(ya, ds.tensors[1][order[i * 64:(i + 1) * 64]])
    assert torch.equal(torch.random.get_rng_state(), global_state)  # global RNG untouched


def test_combine_loss_sums_named_terms_and_rejects_bad_values():
    total, terms = combine_loss({"a": torch.tensor(1.5), "b": torch.tensor(2.0)})
    assert float(total) == 3.5 and set(terms) == {"a", "b"}
    assert combine_loss(torch.tensor(2.0))[1] == {}
    with pytest.raises(TypeError, match="scalar"):
        combine_loss(torch.ones(3))
    with pytest.raises(TypeError, match="identifiers"):
        combine_loss({"not a name": torch.tensor(1.0)})


def test_train_evaluator_records_every_loss_term_and_only_evaluation_postprocesses():
    task = SpotsTask(n_samples=64)
    space = SmallCNNSpace(**TINY_CNN)
    arch = space.sample(np.random.default_rng(0))
    before = SpotsTask.postprocessed
    result = TrainEvaluator(task, space, TrainConfig(epochs=2, batch_size=16, latency=False),
                            seed=0).evaluate(arch)
    assert result.ok, result.error
    m = result.metrics
    assert {"count_accuracy", "center_error", "train_loss", "train_loss_count",
            "train_loss_center"} <= set(m)
    assert m["train_loss"] == pytest.approx(m["train_loss_count"] + m["train_loss_center"],
                                            rel=1e-6)
    # one postprocess call per evaluation batch: the 16 validation images fit one batch
    assert SpotsTask.postprocessed - before == 1


class Recorder(TrainCallback):
    def __init__(self, stop_at: int | None = None) -> None:
        self.seen: list[tuple[int, dict]] = []
        self.stop_at = stop_at

    def on_epoch_end(self, epoch, model, metrics):
        assert isinstance(model, torch.nn.Module)
        self.seen.append((epoch, dict(metrics)))
        return self.stop_at is not None and epoch >= self.stop_at


def test_callbacks_see_every_epoch_leave_the_result_unchanged_and_may_stop():
    task = ClassificationTask(dataset="synthetic", n_samples=120, image_size=8)
    space = SmallCNNSpace(**TINY_CNN)
    arch = space.sample(np.random.default_rng(1))
    cfg = TrainConfig(epochs=3, batch_size=32, latency=False)
    plain = TrainEvaluator(task, space, cfg, seed=2).evaluate(arch)
    rec = Recorder()
    watched = TrainEvaluator(task, space, cfg, seed=2, callbacks=[rec]).evaluate(arch)
    assert watched.metrics == plain.metrics
    assert [e for e, _ in rec.seen] == [1, 2, 3]
    assert rec.seen[-1][1]["accuracy"] == plain.metrics["accuracy"]  # last epoch: final metrics
    stopper = Recorder(stop_at=1)
    stopped = TrainEvaluator(task, space, cfg, seed=2).evaluate(arch, callbacks=[stopper])
    assert stopped.ok and stopped.info["stopped_epoch"] == 1
    assert stopped.info["steps"] == plain.info["steps"] // 3
    assert [e for e, _ in stopper.seen] == [1, 1]  # epoch 1, then its final metrics


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    stop = EarlyStopping("accuracy", patience=2)
    model = torch.nn.Linear(1, 1)
    flags = [stop.on_epoch_end(e, model, {"accuracy": a})
             for e, a in enumerate([0.5, 0.6, 0.6, 0.55], start=1)]
    assert flags == [None, None, None, True] and stop.stopped_epoch == 4
    with pytest.raises(KeyError, match="accuracy"):
        EarlyStopping("accuracy").on_epoch_end(1, model, {"loss": 1.0})


def test_lr_mult_scales_the_parts_learning_rate_and_names_unknown_parts():
    task = ClassificationTask(dataset="synthetic", n_samples=60, image_size=8)
    space = SmallCNNSpace(**TINY_CNN)
    model = task.build_model(space, space.sample(np.random.default_rng(0)))
    ev = TrainEvaluator(task, space, TrainConfig(lr=0.01, lr_mult={"body": 0.1}))
    groups = ev._optimizer(model).param_groups
    assert sorted(g["lr"] for g in groups) == pytest.approx([0.001, 0.01])
    body_group = next(g for g in groups if g["lr"] == pytest.approx(0.001))
    assert {id(p) for p in body_group["params"]} == {id(p) for p in model.body.parameters()}
    bad = TrainEvaluator(task, space, TrainConfig(lr_mult={"backbone": 0.1}))
    with pytest.raises(ConfigError, match=r"backbone.*parts are \['body', 'head'\]"):
        bad._optimizer(model)


# -- pretrained weights ---------------------------------------------------------------------------
def test_classification_ofa_body_initialises_a_segmentation_model(tmp_path):
    space = OFAMobileNetV3Space(**TINY_OFA)
    arch = space.sample(np.random.default_rng(4))
    cls_task = ClassificationTask(dataset="synthetic", n_samples=80, image_size=16, channels=3)
    trained = TrainEvaluator(cls_task, space, TrainConfig(epochs=1, batch_size=16,
                                                          latency=False))
    ckpt = tmp_path / "cls.pt"
    assert trained.evaluate(arch, checkpoint=ckpt).ok
    seg_task = SegmentationTask(n_samples=20, size=16)
    seg = seg_task.build_model(space, arch)
    report = load_init(seg, InitConfig(**{"from": ckpt, "part": "body"}))
    file = torch.load(ckpt, weights_only=True)
    head = [k for k in seg.state_dict() if not k.startswith("body.")]
    assert head and sorted(report.missing) == sorted(head)
    assert sorted(report.ignored) == sorted(k for k in file if not k.startswith("body."))
    assert not report.unexpected and not report.mismatched
    state = seg.state_dict()
    body_keys = [k for k in file if k.startswith("body.")]
    assert sorted(report.loaded) == sorted(body_keys)
    assert all(torch.equal(state[k], file[k]) for k in body_keys)


def test_init_through_the_train_evaluator_reports_and_fine_tunes(tmp_path):
    space = SmallCNNSpace(**TINY_CNN)
    arch = space.sample(np.random.default_rng(0))
    cls_task = ClassificationTask(dataset="synthetic", n_samples=80, image_size=16)
    ckpt = tmp_path / "cls.pt"
    save_weights(cls_task.build_model(space, arch), ckpt)
    cfg = TrainConfig(epochs=1, batch_size=16, latency=False,
                      init={"from": str(ckpt), "part": "body"}, lr_mult={"body": 0.1})
    result = TrainEvaluator(SpotsTask(n_samples=32), space, cfg).evaluate(arch)
    assert result.ok, result.error
    info = result.info["init"]
    assert info["loaded"] == len([k for k in torch.load(ckpt, weights_only=True)
                                  if k.startswith("body.")])
    assert sorted(info["missing"]) == ["head.bias", "head.weight"]


def test_plain_candidate_starts_from_its_supernet_subnetwork(tmp_path):
    from nastk.nn.supernet import SupernetModel

    space = OFAMobileNetV3Space(**TINY_OFA)
    task = ClassificationTask(dataset="synthetic", n_samples=40, image_size=16)
    supernet = SupernetModel(space, task)
    path = tmp_path / "supernet.pt"
    torch.save({"format": "nastk.supernet/1", "model": supernet.net.state_dict()}, path)
    arch = space.sample(np.random.default_rng(2))
    plain = task.build_model(space, arch)
    report = load_init(plain, InitConfig(**{"from": path, "part": "all"}), space=space,
                       arch=arch, in_channels=1)
    assert report.extracted and not report.missing
    expected = supernet.extract(arch).state_dict()
    got = plain.state_dict()
    assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_a_file_that_fits_nothing_names_the_file_and_the_first_expected_tensor(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.conv.weight": torch.zeros(3, 3)}, path)
    model = SpotsTask().build_model(SmallCNNSpace(**TINY_CNN),
                                    SmallCNNSpace(**TINY_CNN).sample(np.random.default_rng(0)))
    first = next(iter(model.state_dict()))
    with pytest.raises(NastkError) as err:
        load_init(model, InitConfig(**{"from": path, "part": "body"}))
    assert str(path) in str(err.value) and repr(first) in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        TrainEvaluator(SpotsTask(), SmallCNNSpace(**TINY_CNN),
                       TrainConfig(init={"from": str(tmp_path / "missing.pt")}))


def test_an_init_file_that_is_not_a_checkpoint_is_refused_before_training(tmp_path, capsys):
    """A text file given as init.from is refused when the evaluator is built (before the
    first trial, exit 2, nothing written), as a missing one is; it used to fail every trial."""
    from nastk.cli.main import main

    notes = tmp_path / "notes.txt"
    notes.write_text("these are not weights\n")
    with pytest.raises(ConfigError, match=r"init.from: init file .*notes.txt is not a nastk "):
        TrainEvaluator(SpotsTask(), SmallCNNSpace(**TINY_CNN),
                       TrainConfig(init={"from": str(notes)}))
    cfg = {"name": "i", "run_dir": str(tmp_path / "run"), "plugins": ["spots_task"],
           "space": {"name": "small_cnn", "options": TINY_CNN},
           "task": {"name": "spots_test", "options": {"n_samples": 64}}, "strategy": "random",
           "evaluator": {"kind": "train", "train": {"epochs": 1, "latency": False,
                                                    "init": {"from": str(notes)}}},
           "budget": {"trials": 3}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--no-progress"]) == 2
    assert "init.from" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# -- the CLI ------------------------------------------------------------------------------------
def test_nested_task_runs_through_search_supernet_training_and_weight_sharing(tmp_path,
                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    task = {"name": "spots_test", "options": {"n_samples": 64}}
    search = {"name": "spots", "run_dir": "runs/spots", "seed": 0, "plugins": ["spots_task"],
              "space": {"name": "small_cnn", "options": TINY_CNN}, "task": task,
              "strategy": {"name": "random"},
              "evaluator": {"kind": "train",
                            "train": {"epochs": 1, "batch_size": 16, "latency": False}},
              "budget": {"trials": 3}}
    assert main(["search", write(tmp_path / "s.yaml", search), "--no-progress"]) == 0
    with RunStore.open_existing("runs/spots") as store:
        trials = store.finished()
    assert len(trials) == 3 and all(t.result.ok for t in trials)
    assert all({"train_loss_count", "train_loss_center"} <= set(t.result.metrics)
               for t in trials)
    report = (tmp_path / "runs/spots/report.md").read_text()
    assert "| train_loss | train_loss_count | train_loss_center |" in report  # leaderboard
    assert "sum of the task's loss terms (`train_loss_count`, `train_loss_center`)" in report
    assert "measured on the network alone" in report

    supernet = {"name": "spots_supernet", "run_dir": "runs/spots_supernet",
                "plugins": ["spots_task"], "space": {"name": "ofa_mbv3", "options": TINY_OFA},
                "task": task,
                "training": {"epochs": 1, "batch_size": 16, "n_random": 1,
                             "bn_calib_batches": 2, "num_threads": 1}}
    assert main(["supernet", "train", write(tmp_path / "t.yaml", supernet),
                 "--no-progress"]) == 0
    history = json.loads((tmp_path / "runs/spots_supernet/history.json").read_text())
    assert {"train_loss_largest_count", "train_loss_largest_center",
            "val_count_accuracy_largest"} <= set(history[-1])

    ws = {**search, "name": "spots_ws", "run_dir": "runs/spots_ws",
          "space": {"name": "ofa_mbv3", "options": TINY_OFA}, "strategy": "evolution",
          "evaluator": {"kind": "supernet",
                        "supernet": {"checkpoint": "runs/spots_supernet/supernet.pt",
                                     "calib_batches": 2, "calib_batch_size": 16}},
          "budget": {"trials": 4}}
    assert main(["search", write(tmp_path / "w.yaml", ws), "--no-progress"]) == 0
    with RunStore.open_existing("runs/spots_ws") as store:
        trials = store.finished()
    assert len(trials) == 4 and all(t.result.ok for t in trials)
    assert all("count_accuracy" in t.result.metrics for t in trials)


def test_supernet_training_starts_from_a_classification_supernet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = {"space": {"name": "ofa_mbv3", "options": TINY_OFA},
              "training": {"epochs": 1, "batch_size": 16, "n_random": 0,
                           "bn_calib_batches": 1, "num_threads": 1}}
    cls = {"name": "cls", "run_dir": "runs/cls", **common,
           "task": {"name": "classification",
                    "options": {"dataset": "synthetic", "n_samples": 64, "image_size": 16}}}
    assert main(["supernet", "train", write(tmp_path / "c.yaml", cls), "--no-progress"]) == 0
    spots = {"name": "spots", "run_dir": "runs/spots", "plugins": ["spots_task"], **common,
             "task": {"name": "spots_test", "options": {"n_samples": 32}},
             "training": {**common["training"],
                          "init": {"from": "runs/cls/supernet.pt", "part": "body"},
                          "lr_mult": {"body": 0.1}}}
    assert main(["supernet", "train", write(tmp_path / "d.yaml", spots), "--no-progress"]) == 0
    report = json.loads((tmp_path / "runs/spots/init_report.json").read_text())
    assert report["loaded"] and all(k.startswith("body.") for k in report["loaded"])
    assert sorted(report["missing"]) == ["head.bias", "head.weight"]
    assert sorted(report["ignored"]) == ["head.bias", "head.weight"]  # the classifier
    stored = torch.load(tmp_path / "runs/spots/supernet.pt", weights_only=True)
    assert json.loads(stored["init_report"])["loaded"] == report["loaded"]


def test_a_run_created_before_the_new_train_settings_still_resumes(tmp_path):
    from nastk.config.schema import parse_config
    from nastk.core.errors import StoreError
    from nastk.core.objective import Objective

    cfg = parse_config({"space": "small_cnn", "task": "classification",
                        "run_dir": str(tmp_path / "run")})
    store = open_run_store(cfg, tmp_path / "run", resume=False)
    assert Objective.model_validate(store.get_meta("objective")).metric == "accuracy"
    old = store.get_meta("identity")
    for key in ("init", "lr_mult"):  # what a store of the previous version holds
        del old["evaluator"]["train"][key]
    store.set_meta("identity", old)
    store.close()
    open_run_store(cfg, tmp_path / "run", resume=True).close()
    changed = parse_config({**cfg.model_dump(mode="json"), "seed": 5})
    with pytest.raises(StoreError, match=r"differs .* in \['seed'\]"):
        open_run_store(changed, tmp_path / "run", resume=True)
