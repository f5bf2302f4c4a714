"""Exporting the best trained architecture of a classification run."""

import json

import pytest
import torch
import yaml

from nastk.cli import main
from nastk.commands.export import load_exported
from nastk.store import RunStore


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    cfg = {"name": "exp", "run_dir": str(tmp / "run"), "space": "small_cnn",
           "task": {"name": "classification", "options": {"dataset": "digits"}},
           "strategy": "random", "objective": {"costs": ["flops"]},
           "evaluator": {"train": {"epochs": 1, "latency": False}},
           "budget": {"trials": 3}, "keep_checkpoints": 1}
    path = tmp / "exp.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--no-progress"]) == 0
    return tmp / "run"


def test_only_the_best_checkpoints_are_kept(digits_run):
    with RunStore.open_existing(digits_run) as st:
        trials = st.finished()
    best = max(trials, key=lambda t: t.result.metrics["accuracy"])
    kept = sorted(p.name for p in (digits_run / "checkpoints").glob("*.pt"))
    assert kept == [f"trial_{best.id}.pt"]


def test_export_writes_weights_only_checkpoint_and_program(digits_run, capsys):
    assert main(["export", str(digits_run)]) == 0
    out_dir = digits_run / "export"
    record = json.loads((out_dir / "arch.json").read_text())
    with RunStore.open_existing(digits_run) as st:
        trials = st.finished()
    best = max(trials, key=lambda t: t.result.metrics["accuracy"])
    assert record["trial"] == best.id and record["arch_key"] == best.arch.key

    payload = torch.load(out_dir / "model.pt", weights_only=True)
    assert payload["format"] == "nastk.export/1"
    model = load_exported(out_dir / "model.pt")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (5, 10)

    program = torch.export.load(out_dir / "model.pt2")
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), y)

    # the exported weights score what the trial scored on the validation split
    from nastk.registry import TASKS

    task = TASKS.get("classification")(dataset="digits")
    loader = torch.utils.data.DataLoader(task.splits()["val"], batch_size=256)
    acc = task.evaluate(model, loader)["accuracy"]
    assert acc == pytest.approx(best.result.metrics["accuracy"], abs=1e-6)


def test_export_of_a_trial_without_checkpoint_retrains_it(digits_run):
    with RunStore.open_existing(digits_run) as st:
        trials = st.finished()
    worst = min(trials, key=lambda t: t.result.metrics["accuracy"])
    assert not (digits_run / "checkpoints" / f"trial_{worst.id}.pt").exists()
    assert main(["export", str(digits_run), "--trial", str(worst.id), "--out",
                 str(digits_run / "export_worst")]) == 0
    model = load_exported(digits_run / "export_worst" / "model.pt")
    from nastk.registry import TASKS

    task = TASKS.get("classification")(dataset="digits")
    loader = torch.utils.data.DataLoader(task.splits()["val"], batch_size=256)
    # seeded by the architecture: retraining reproduces the recorded score
    assert task.evaluate(model, loader)["accuracy"] == pytest.approx(
        worst.result.metrics["accuracy"], abs=1e-6)


def test_export_rejects_a_non_export_file(tmp_path):
    from nastk.errors import NastkError

    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(NastkError, match="not a nastk export"):
        load_exported(tmp_path / "x.pt")
