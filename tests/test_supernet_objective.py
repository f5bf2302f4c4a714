"""The run's objective judges a training's epochs: Self-KD's teacher epochs and a supernet's best
epoch follow the objective (a supernet config's ``training.objective``, a search's
``objective``), not the task's primary metric, when the two disagree; an objective the task
cannot report is refused before training."""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import numpy as np
import pytest
import torch

from nastk.cli.commands.supernet_train import train_supernet
from nastk.config.schema import SupernetConfig, parse_config
from nastk.config.supernet_trainer import build_supernet_trainer
from nastk.core.errors import ConfigError, NastkError
from nastk.core.objective import Objective
from nastk.core.registry import TASKS
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.tasks.classification import ClassificationTask
from nastk.training.self_kd import SelfKDConfig
from nastk.training.supernet import best_epoch

#: (accuracy, loss) of the model scored at the end of epochs 1, 2, 3, 4: by accuracy (max) the
#: epochs 1, 2, 3 improve and 3 is best; by loss (min) the epochs 1, 3, 4 improve and 4 is best
SCRIPT = [(0.50, 1.0), (0.60, 1.2), (0.70, 0.9), (0.40, 0.8)]


class ScriptedTask(ClassificationTask):
    """Classification on tiny generated shapes whose validation scores are :data:`SCRIPT`'s,
    epoch after epoch, whatever the weights (``per_epoch`` evaluations an epoch: 2 in
    supernet training, the largest subnet first)."""

    name: ClassVar[str] = "scripted_scores"
    per_epoch = 2

    class Options(ClassificationTask.Options):
        dataset: Literal["glyphs", "synthetic", "digits"] = "synthetic"
        n_samples: int | None = 60
        image_size: int | None = 16
        num_classes: int | None = 3

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls = 0

    def evaluate(self, model: Any, loader: Any) -> dict[str, float]:
        epoch, which = divmod(self.calls, self.per_epoch)
        self.calls += 1
        accuracy, loss = SCRIPT[min(epoch, len(SCRIPT) - 1)]
        return {"accuracy": accuracy if which == 0 else 0.0, "loss": loss if which == 0 else 9.0}


if "scripted_scores" not in TASKS:
    TASKS.register("scripted_scores", ScriptedTask)


def _config(tmp_path, objective: dict[str, Any] | None = None, **training: Any) -> SupernetConfig:
    data = {"name": "judged", "run_dir": str(tmp_path / "run"), "plugins": ["toy_supernet"],
            "space": "toy_supernet", "task": "scripted_scores",
            "training": {"epochs": 4, "batch_size": 30, "n_random": 0, "bn_calib_batches": 1,
                         "num_threads": 1, **training}}
    if objective is not None:
        data["training"]["objective"] = objective
    return parse_config(data, "judged.yaml", SupernetConfig)


def test_a_secondary_objective_picks_the_teacher_and_the_best_epoch(tmp_path, capsys):
    config = _config(tmp_path, {"metric": "loss", "direction": "min"},
                     self_kd={"alpha": 0.5})
    outcome = train_supernet(config, progress=False)
    history = outcome.history
    assert [r["val_loss_largest"] for r in history] == [1.0, 1.2, 0.9, 0.8]
    assert [r["val_accuracy_largest"] for r in history] == [0.5, 0.6, 0.7, 0.4]
    # the loss decides: the teacher averages epochs 1, 3 and 4, and the best epoch moves so
    assert [r["self_kd_teacher_epochs"] for r in history] == [1, 1, 2, 3]
    assert [r["best_epoch"] for r in history] == [1, 1, 3, 4]
    state = torch.load(outcome.checkpoint, weights_only=True)
    assert json.loads(state["self_kd"]["epochs"]) == [1, 3, 4]
    assert state["best_epoch"] == 4
    assert json.loads(state["objective"]) == {"metric": "loss", "direction": "min"}
    assert json.loads((outcome.run_dir / "history.json").read_text())[-1]["best_epoch"] == 4
    assert "best epoch 4 of 4 by loss (min) of the largest subnet: 0.8" in capsys.readouterr().err
    # the task's primary metric would have chosen differently
    assert best_epoch(history, Objective(metric="accuracy")) == 3


def test_the_default_objective_is_the_primary_metric(tmp_path):
    outcome = train_supernet(_config(tmp_path, self_kd={"alpha": 0.5}), progress=False)
    history = outcome.history
    assert [r["self_kd_teacher_epochs"] for r in history] == [1, 2, 3, 3]
    assert [r["best_epoch"] for r in history] == [1, 2, 3, 3]
    state = torch.load(outcome.checkpoint, weights_only=True)
    assert json.loads(state["self_kd"]["epochs"]) == [1, 2, 3]
    assert json.loads(state["objective"]) == {"metric": "accuracy", "direction": "max"}


def test_an_objective_the_task_cannot_report_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match=r"training.objective.metric: 'los' is not a metric of "
                                          r"task 'scripted_scores'; .* by \['accuracy', 'loss'\] "
                                          r"\(did you mean 'loss'\?\)"):
        build_supernet_trainer(_config(tmp_path, {"metric": "los", "direction": "min"}),
                               tmp_path / "run")
    with pytest.raises(ConfigError, match=r"training.objective.direction: say whether 'loss' "
                                          r"is maximised or minimised"):
        train_supernet(_config(tmp_path, {"metric": "loss"}), progress=False)
    assert not (tmp_path / "run").exists()
    primary = build_supernet_trainer(_config(tmp_path, {"direction": "min"}), tmp_path / "run")
    assert primary.objective == Objective(metric="accuracy", direction="min")


def test_the_objective_is_part_of_a_checkpoints_identity(tmp_path):
    train_supernet(_config(tmp_path, epochs=1), progress=False)
    config = _config(tmp_path, {"metric": "loss", "direction": "min"}, epochs=1)
    with pytest.raises(NastkError, match=r"training.objective.metric: None -> 'loss'"):
        train_supernet(config, resume=True, progress=False)


def test_the_train_evaluator_judges_self_kd_epochs_by_the_search_objective(tmp_path):
    task = ScriptedTask()
    task.per_epoch = 1  # one evaluation at the end of each epoch but the last, then the final
    space = SmallCNNSpace(stages=2, depths=[1], widths=[8], kernels=[3], expansions=[1])
    arch = space.sample(np.random.default_rng(0))
    config = TrainConfig(epochs=5, batch_size=30, latency=False, recalibrate_bn=False,
                         self_kd=SelfKDConfig(alpha=0.5))
    by_loss = TrainEvaluator(task, space, config,
                             objective=Objective(metric="loss", direction="min"))
    assert by_loss.evaluate(arch).info["self_kd_teacher_epochs"] == [1, 3, 4]
    task.calls = 0
    by_default = TrainEvaluator(task, space, config)
    assert by_default.evaluate(arch).info["self_kd_teacher_epochs"] == [1, 2, 3]
    # a cost does not change between epochs: the task's primary metric judges them
    by_flops = TrainEvaluator(task, space, config,
                              objective=Objective(metric="flops", direction="min"))
    assert by_flops.epoch_objective == Objective(metric="accuracy")


def test_a_search_config_gives_its_objective_to_the_train_evaluator(tmp_path):
    from nastk.config.compose import build_components
    from nastk.config.schema import SearchConfig

    raw = {"space": {"name": "small_cnn"}, "task": "scripted_scores",
           "objective": {"metric": "loss", "direction": "min"},
           "evaluator": {"train": {"epochs": 1, "latency": False}},
           "run_dir": str(tmp_path / "s")}
    components = build_components(parse_config(raw, "s.yaml", SearchConfig), check=False)
    assert components.evaluator.objective == Objective(metric="loss", direction="min")
