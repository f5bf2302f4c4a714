"""Exporting the best trained architecture of a classification run."""

import json

import pytest
import torch
import yaml

from nastk.cli.commands.export import load_exported
from nastk.cli.main import main
from nastk.run.sqlite_store import RunStore


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
    # digits are generated data: images in [0, 1], no normalisation in the model
    assert record["input"] == {"shape": [1, 8, 8], "range": [0.0, 1.0], "normalize": None}

    payload = torch.load(out_dir / "model.pt", weights_only=True)
    assert payload["format"] == "nastk.export/1" and payload["input"] == record["input"]
    model = load_exported(out_dir / "model.pt")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (5, 10)

    program = torch.export.load(out_dir / "model.pt2")
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), y)

    # the exported weights score what the trial scored on the validation split
    from nastk.core.registry import TASKS

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
    from nastk.core.registry import TASKS

    task = TASKS.get("classification")(dataset="digits")
    loader = torch.utils.data.DataLoader(task.splits()["val"], batch_size=256)
    # seeded by the architecture: retraining reproduces the recorded score
    assert task.evaluate(model, loader)["accuracy"] == pytest.approx(
        worst.result.metrics["accuracy"], abs=1e-6)


def test_export_rejects_a_non_export_file(tmp_path):
    from nastk.core.errors import NastkError

    torch.save({"weights": torch.zeros(2)}, tmp_path / "x.pt")
    with pytest.raises(NastkError, match="not a nastk export"):
        load_exported(tmp_path / "x.pt")


TOY_TASK = {"name": "classification",
            "options": {"dataset": "synthetic", "n_samples": 300, "image_size": 16,
                        "num_classes": 4}}


@pytest.fixture(scope="module")
def weight_sharing_run(tmp_path_factory):
    """A random search of the toy supernet by weight sharing (only the best weights kept)."""
    tmp = tmp_path_factory.mktemp("export_front")
    supernet = {"name": "sn", "run_dir": str(tmp / "sn"), "plugins": ["toy_supernet"],
                "space": "toy_supernet", "task": TOY_TASK,
                "training": {"epochs": 1, "batch_size": 32, "n_random": 2,
                             "bn_calib_batches": 2, "num_threads": 1}}
    path = tmp / "sn.yaml"
    path.write_text(yaml.safe_dump(supernet))
    assert main(["supernet", "train", str(path), "--no-progress"]) == 0
    search = {"name": "ws", "run_dir": str(tmp / "run"), "plugins": ["toy_supernet"],
              "space": "toy_supernet", "task": TOY_TASK, "strategy": "random",
              "objective": {"costs": ["flops", "params"]}, "keep_checkpoints": 1,
              "evaluator": {"kind": "supernet",
                            "supernet": {"checkpoint": str(tmp / "sn" / "supernet.pt"),
                                         "calib_batches": 2}},
              "budget": {"trials": 12}}
    path = tmp / "ws.yaml"
    path.write_text(yaml.safe_dump(search))
    assert main(["search", str(path), "--no-progress"]) == 0
    return tmp / "run"


def test_export_front_writes_every_pareto_trial_with_its_scored_weights(weight_sharing_run,
                                                                        capsys):
    """`nastk export RUN --front`: every non-dominated trial (accuracy vs flops and params),
    its weights the supernet's sub-network as the weight-sharing evaluator scored it, extracted
    again (no training) when its checkpoint was not kept."""
    run = weight_sharing_run
    assert main(["export", str(run), "--front"]) == 0
    out = capsys.readouterr().out
    front = json.loads((run / "front" / "front.json").read_text())
    with RunStore.open_existing(run) as st:
        trials = [t for t in st.finished() if t.result.ok]

    def vec(t):
        return (t.result.metrics["accuracy"], -t.result.costs["flops"], -t.result.costs["params"])

    def dominated(t):
        return any(all(a >= b for a, b in zip(vec(o), vec(t), strict=True)) and vec(o) != vec(t)
                   for o in trials)

    expected = {t.id for t in trials if not dominated(t)}
    ids = [p["trial"] for p in front["points"]]
    assert set(ids) == expected and len(ids) == len(expected) >= 2
    flops = [p["costs"]["flops"] for p in front["points"]]
    assert flops == sorted(flops)
    assert front["objective"]["costs"] == ["flops", "params"]
    assert "Pareto front" in out and "extracted its sub-network" in out

    from nastk.core.registry import TASKS

    task = TASKS.get("classification")(**TOY_TASK["options"])
    loader = torch.utils.data.DataLoader(task.splits()["val"], batch_size=256)
    by_id = {t.id: t for t in trials}
    kept = {p.stem for p in (run / "checkpoints").glob("*.pt")}
    assert 0 < len({f"trial_{i}" for i in ids} & kept) < len(ids)  # kept and extracted ones
    for point in front["points"]:
        folder = run / "front" / point["dir"]
        record = json.loads((folder / "arch.json").read_text())
        assert record["trial"] == point["trial"] and point["arch"] == record["arch"]
        assert point["metric"] == by_id[point["trial"]].result.metrics["accuracy"]
        model = load_exported(folder / "model.pt")
        assert (folder / "model.pt2").is_file()
        extracted = (folder / f"trial_{point['trial']}_extracted.pt").is_file()
        assert extracted == (f"trial_{point['trial']}" not in kept)
        assert task.evaluate(model, loader)["accuracy"] == pytest.approx(point["metric"],
                                                                         abs=1e-6)


def test_export_front_and_trial_do_not_mix(weight_sharing_run, capsys):
    assert main(["export", str(weight_sharing_run), "--front", "--trial", "1"]) == 2
    assert "drop --trial" in capsys.readouterr().err
