"""The presets for real data sets (examples/real/): each validates as shipped (GPU, mixed
precision, the layout it expects stated), and each runs end to end on a tiny generated folder
in its data set's exact layout, with sizes, epochs and budgets shrunk and the device set to the
CPU, so that the presets stay valid as the code changes."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nastk.cli.main import main
from nastk.config.schema import SearchConfig, SupernetConfig, load_config
from nastk.data import sample_folders
from nastk.training.distill import DistillConfig

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "examples" / "real"

#: preset -> (command, the data set its folder is written for)
PRESETS: dict[str, tuple[str, str]] = {
    "imagenet_supernet.yaml": ("supernet", "imagenet"),
    "salicon_salnas.yaml": ("recipe", "salicon"),
    "cityscapes_search.yaml": ("search", "cityscapes"),
    "cityscapes_distill.yaml": ("distill", "cityscapes"),
    "voc_segmentation_search.yaml": ("search", "voc"),
    "voc_segmentation_distill.yaml": ("distill", "voc"),
    "voc_detofa.yaml": ("recipe", "voc"),
    "coco_detofa.yaml": ("recipe", "coco"),
}

#: data set -> writer of a tiny folder in its layout (returns the task's root)
WRITERS: dict[str, Callable[[Path], Path]] = {
    "imagenet": lambda p: sample_folders.write_imagefolder(p, 3, 8, size=40),
    "salicon": lambda p: sample_folders.write_salicon(p, (8, 2), size=(48, 64)),
    "cityscapes": lambda p: sample_folders.write_cityscapes(p, (8, 2), size=(32, 64)),
    "voc": lambda p: sample_folders.write_voc(
        p / "VOCdevkit", {"2007": {"trainval": 6, "test": 3}, "2012": {"trainval": 8}},
        size=(40, 56)),
    "coco": lambda p: sample_folders.write_coco(p, (8, 3), size=(48, 64)),
}

#: the preset's working size -> the tiny one (aspect kept)
SIZES = {224: 32, 320: 64, 512: 32, (288, 384): [48, 64], (512, 1024): [32, 64]}

#: field -> shrunk value, wherever it appears
SHRUNK: dict[str, Any] = {
    "epochs": 1, "trials": 12, "population": 4, "batch_size": 4, "calib_batches": 1,
    "calib_batch_size": 4, "eval_batch_size": 8, "bn_calib_batches": 1, "n_samples": 10,
    "device": "cpu", "precision": "fp32", "workers": 0, "holdout_fraction": 0.25,
    "val_fraction": 0.25, "buckets": 2, "data_check": "full",
}


def _size(value: Any) -> Any:
    key = tuple(value) if isinstance(value, list) else value
    return SIZES[key]


def shrink(doc: Any, root: Path, runs: Path) -> Any:
    """``doc`` with the data root, sizes, schedules and budgets made tiny, the CPU as device,
    and every run folder under ``runs``."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            if key == "root":
                out[key] = str(root)
            elif key == "size":
                out[key] = _size(value)
            elif key in SHRUNK and not isinstance(value, (dict, list)):
                out[key] = SHRUNK[key]
            else:
                out[key] = shrink(value, root, runs)
        return out
    if isinstance(doc, list):
        return [shrink(v, root, runs) for v in doc]
    if isinstance(doc, str) and doc.startswith("runs/"):
        return str(runs / doc)
    return doc


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_is_valid_as_shipped(name):
    text = (REAL / name).read_text()
    assert "Expected folder" in text, f"{name}: say which folder layout it reads"
    doc = yaml.safe_load(text)
    kind = PRESETS[name][0]
    devices = [v for k, v in _walk(doc) if k == "device"]
    assert devices and set(devices) == {"cuda"}
    assert {v for k, v in _walk(doc) if k == "precision"} == {"bf16"}
    if kind == "supernet":
        load_config(REAL / name, SupernetConfig)
    elif kind == "search":
        load_config(REAL / name, SearchConfig)
    elif kind == "distill":
        DistillConfig.model_validate(doc)
    else:
        from nastk.cli.commands.recipe import check_stage
        from nastk.pipelines.recipe import load_recipe

        plan = load_recipe(REAL / name, check_stage)  # every stage's config is validated
        assert plan.recipe.stages


def _walk(doc: Any) -> list[tuple[str, Any]]:
    if isinstance(doc, dict):
        return [p for k, v in doc.items() for p in [(k, v), *_walk(v)]]
    if isinstance(doc, list):
        return [p for v in doc for p in _walk(v)]
    return []


def _write(tmp_path: Path, name: str, data_root: Path) -> Path:
    doc = shrink(yaml.safe_load((REAL / name).read_text()), data_root, tmp_path)
    out = tmp_path / name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _run(command: str, config: Path) -> int:
    args = {"supernet": ["supernet", "train"], "search": ["search"], "distill": ["distill"],
            "recipe": ["recipe"]}[command]
    return main([*args, str(config)])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_runs_on_a_tiny_folder_in_its_layout(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    command, dataset = PRESETS[name]
    data_root = WRITERS[dataset](tmp_path / "data")
    # what a preset reads from another one's run (an architecture, the ImageNet supernet) is
    # made first, from the shrunk preset that writes it
    needs = {"cityscapes_distill.yaml": "cityscapes_search.yaml",
             "voc_segmentation_distill.yaml": "voc_segmentation_search.yaml",
             }
    if name.endswith("_detofa.yaml"):  # once-for-all's checkpoint, where the preset reads it
        from test_ofa_full import random_ofa, save_ofa

        (tmp_path / "ofa_nets").mkdir()
        save_ofa(random_ofa(1.0), tmp_path / "ofa_nets" / "ofa_mbv3_d234_e346_k357_w1.0")
    if name in needs:
        first = needs[name]
        first_command, first_data = PRESETS[first]
        first_root = (data_root if first_data == dataset
                      else WRITERS[first_data](tmp_path / "data_first"))
        assert _run(first_command, _write(tmp_path, first, first_root)) == 0
    config = _write(tmp_path, name, data_root)
    if name.endswith("_detofa.yaml"):  # one epoch from random weights: every AP is 0, the loss
        doc = yaml.safe_load(config.read_text())  # still ranks the paths for the filter
        doc["defaults"]["objective"]["metric"] = "loss"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert _run(command, config) == 0
    written = copy.deepcopy(yaml.safe_load((tmp_path / name).read_text()))
    run_dir = Path(written.get("run_dir") or tmp_path / "runs" / "real" / written["name"])
    assert run_dir.is_dir() and any(run_dir.iterdir())
