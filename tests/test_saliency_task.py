"""The saliency task on the engine: batches keep per-image fixations, the composite loss is
named terms, Self-KD blends density maps and keeps fixations, and a trained salnas subnet
beats the centre-bias baseline on the synthetic test split."""

from __future__ import annotations

import pytest
import torch

from nastk.core import registry
from nastk.data.loaders import make_loader
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.tasks.saliency import SaliencyTask
from nastk.training.self_kd import SelfKDConfig

SMALL = {"n_samples": 160, "size": (32, 40)}


def test_batches_keep_a_list_of_targets_with_their_fixations():
    task = SaliencyTask(**SMALL)
    x, targets = next(iter(make_loader(task, task.splits()["train"], 8)))
    assert x.shape == (8, 3, 32, 40) and isinstance(targets, list) and len(targets) == 8
    assert all(t["density"].shape == (32, 40) and t["fixations"].shape[1] == 2
               for t in targets)


def test_blended_targets_mix_normalised_densities_and_keep_the_fixations():
    task = SaliencyTask(**SMALL)
    _, targets = next(iter(make_loader(task, task.splits()["train"], 2)))
    teacher = torch.rand(2, 1, 32, 40)
    blended = task.blend_targets(targets, teacher, 0.25)
    for b, t, m in zip(blended, targets, teacher, strict=True):
        assert torch.equal(b["fixations"], t["fixations"])
        expected = 0.25 * t["density"] / t["density"].sum() + 0.75 * m[0] / m[0].sum()
        torch.testing.assert_close(b["density"], expected)
        torch.testing.assert_close(b["density"].sum(), torch.tensor(1.0))


def score_centre_bias(task: SaliencyTask, split: str) -> dict[str, float]:
    meter = task.meter()
    cb = task.center_bias()
    for _, targets in make_loader(task, task.splits()[split], 256):
        maps = torch.stack([cb(t["density"].shape).float() for t in targets])[:, None]
        meter.update(maps, maps, targets)
    return meter.compute()


@pytest.mark.slow
def test_a_trained_salnas_subnet_beats_the_centre_bias_on_the_test_split():
    task = SaliencyTask(n_samples=240, size=(32, 40))
    space = registry.instantiate(registry.SEARCH_SPACES, "salnas", {})
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.005, latency=False, eval_split="test",
                      num_threads=2)
    result = TrainEvaluator(task, space, cfg).evaluate(space.largest())
    assert result.ok, result.error
    m, base = result.metrics, score_centre_bias(task, "test")
    assert {"train_loss_kld", "train_loss_cc", "train_loss_nss"} <= set(m)
    assert set(SaliencyTask.metrics) <= set(m)
    assert m["cc"] > base["cc"] + 0.2
    assert m["nss"] > base["nss"] + 0.5
    assert m["auc_judd"] > base["auc_judd"] + 0.05
    assert m["ig"] > 0  # more bits per fixation than the centre bias


def test_self_kd_trains_a_saliency_model():
    task = SaliencyTask(**SMALL)
    space = registry.instantiate(registry.SEARCH_SPACES, "salnas", {})
    cfg = TrainConfig(epochs=2, batch_size=16, latency=False,
                      self_kd=SelfKDConfig(alpha=0.5, schedule="progressive"))
    result = TrainEvaluator(task, space, cfg).evaluate(space.smallest())
    assert result.ok, result.error
    assert result.info["self_kd_teacher_epochs"] == [1]


@pytest.mark.slow
def test_the_saliency_examples_run_end_to_end_with_a_prediction_grid(tmp_path, monkeypatch):
    from pathlib import Path

    import yaml

    from nastk.cli.commands.export import load_exported
    from nastk.cli.main import main

    root = Path(__file__).resolve().parents[1] / "examples"
    monkeypatch.chdir(tmp_path)
    train = yaml.safe_load((root / "saliency_supernet.yaml").read_text())
    search = yaml.safe_load((root / "saliency_search.yaml").read_text())
    small = {"dataset": "synthetic", "n_samples": 80, "size": [32, 40]}
    train["task"]["options"] = search["task"]["options"] = small
    train["training"]["epochs"] = 2
    search["budget"]["trials"] = 6
    search["strategy"]["options"]["population"] = 4
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(train))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(search))
    assert main(["supernet", "train", "t.yaml", "--no-progress"]) == 0
    assert (tmp_path / "runs/saliency_supernet/history.png").is_file()
    assert main(["search", "s.yaml", "--no-progress"]) == 0
    run = tmp_path / "runs/saliency_search"
    report = (run / "report.md").read_text()
    assert "## Pareto front: cc vs FLOPs" in report
    assert "![predictions](predictions.png)" in report and (run / "predictions.png").is_file()
    assert main(["export", str(run)]) == 0
    model = load_exported(run / "export" / "model.pt")
    assert model(torch.rand(1, 3, 32, 40)).shape == (1, 1, 32, 40)
