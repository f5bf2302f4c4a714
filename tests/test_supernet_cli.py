"""`nastk supernet train`, then a search that inherits the supernet's weights, then export."""

import pytest
import torch
import yaml

from nastk.cli.commands.export import load_exported
from nastk.cli.main import main
from nastk.config.compose import build_components
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError
from nastk.run.sqlite_store import RunStore

TASK = {"name": "classification",
        "options": {"dataset": "synthetic", "n_samples": 400, "image_size": 16,
                    "num_classes": 4}}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("supernet")
    cfg = {"name": "toy", "run_dir": str(tmp / "supernet"), "plugins": ["toy_supernet"],
           "space": "toy_supernet", "task": TASK,
           "training": {"phases": [{"epochs": 1, "unlock": ["kernel"]}, {"epochs": 1}],
                        "batch_size": 32, "n_random": 1, "bn_calib_batches": 2,
                        "num_threads": 1}}
    path = tmp / "supernet.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["supernet", "train", str(path), "--no-progress"]) == 0
    return tmp, path


def search_config(tmp, **changes):
    cfg = {"name": "ws", "run_dir": str(tmp / "search"), "plugins": ["toy_supernet"],
           "space": "toy_supernet", "task": TASK, "strategy": {"name": "evolution",
                                                               "options": {"population": 4}},
           "objective": {"costs": ["flops"]},
           "evaluator": {"kind": "supernet",
                         "supernet": {"checkpoint": str(tmp / "supernet" / "supernet.pt"),
                                      "calib_batches": 2}},
           "budget": {"trials": 8}}
    cfg.update(changes)
    return cfg


def test_supernet_train_writes_checkpoint_and_history(trained, capsys):
    tmp, path = trained
    ckpt = torch.load(tmp / "supernet" / "supernet.pt", weights_only=True)
    assert ckpt["epoch"] == 2
    assert (tmp / "supernet" / "history.json").is_file()
    # a second start is refused; the checkpoint is untouched
    assert main(["supernet", "train", str(path), "--no-progress"]) == 2
    assert "--resume" in capsys.readouterr().err
    # resuming a finished training is a no-op that keeps the weights
    assert main(["supernet", "train", str(path), "--resume", "--no-progress"]) == 0
    again = torch.load(tmp / "supernet" / "supernet.pt", weights_only=True)
    for k, v in ckpt["model"].items():
        assert torch.equal(again["model"][k], v)


def test_search_over_trained_supernet_and_export(trained, capsys):
    tmp, _ = trained
    path = tmp / "search.yaml"
    path.write_text(yaml.safe_dump(search_config(tmp)))
    assert main(["search", str(path), "--no-progress"]) == 0
    with RunStore.open_existing(tmp / "search") as st:
        trials = st.finished()
    assert len(trials) == 8 and all(t.result.ok for t in trials)
    assert all(t.result.info.get("evaluator") == "weight_sharing" for t in trials)
    assert len({t.result.costs["flops"] for t in trials}) > 1
    best = max(trials, key=lambda t: t.result.metrics["accuracy"])

    assert main(["export", str(tmp / "search")]) == 0
    model = load_exported(tmp / "search" / "export" / "model.pt")
    comps = build_components(parse_config(search_config(tmp)))
    loader = torch.utils.data.DataLoader(comps.task.splits()["val"], batch_size=256)
    assert comps.task.evaluate(model, loader)["accuracy"] == pytest.approx(
        best.result.metrics["accuracy"], abs=1e-6)


def test_checkpoint_for_another_space_is_refused(trained):
    tmp, _ = trained
    cfg = search_config(tmp, space={"name": "toy_supernet", "options": {"stages": 3}})
    with pytest.raises(ConfigError, match="was trained for another space"):
        build_components(parse_config(cfg))


def test_supernet_kind_needs_a_supernet_space(trained):
    tmp, _ = trained
    cfg = search_config(tmp, space="small_cnn", plugins=[])
    with pytest.raises(ConfigError, match="not a SupernetSpace"):
        build_components(parse_config(cfg))
