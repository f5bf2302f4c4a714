"""The classification task's ``dataset: imagefolder`` (issue 27, item 5): the ImageNet folder
layout listed, split and checked, searched over, and pre-trained on with ``nastk supernet
train``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from nastk.cli.main import main
from nastk.config.compose import build_components
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError, NastkError
from nastk.data.augment import Augmented
from nastk.data.folders import IMAGE_SUFFIXES, DatasetError, folder_datasets
from nastk.data.sample_folders import write_imagefolder
from nastk.evaluation.preflight import check_task_data
from nastk.run.sqlite_store import RunStore
from nastk.tasks.classification import ClassificationTask
from nastk.tasks.classification.imagefolder import ImageFolder

TINY_CNN = {"stages": 2, "depths": [1], "widths": [8, 16], "kernels": [3], "expansions": [1]}


def folder_task(root: Path, **options) -> ClassificationTask:
    return ClassificationTask(dataset="imagefolder", root=str(root), size=16, **options)


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    """4 classes, 12 train and 3 val images each, with things the loader must skip."""
    root = write_imagefolder(tmp_path_factory.mktemp("imagenet"), 4, (12, 3), size=(20, 24))
    train = root / "train"
    (train / ".cache").mkdir()  # a hidden folder: no class
    Image.new("RGB", (8, 8)).save(train / ".cache" / "x.png")
    (train / "n00000001" / "notes.txt").write_text("not an image")
    (train / "n00000001" / "nested").mkdir()  # a class folder's subfolder: ignored
    Image.new("RGB", (8, 8)).save(train / "n00000001" / "nested" / "y.png")
    Image.new("RGB", (9, 7), (200, 10, 10)).save(train / "n00000002" / "extra.png")
    (train / "README").write_text("a file beside the class folders")
    return root


def brute_force(split_dir: Path, classes: list[str]) -> list[tuple[str, int]]:
    out = []
    for label, name in enumerate(classes):
        folder = split_dir / name
        if not folder.is_dir():
            continue
        for f in sorted(os.listdir(folder)):
            if (folder / f).is_file() and Path(f).suffix.lower() in IMAGE_SUFFIXES:
                out.append((str(folder / f), label))
    return out


# -- the loader ----------------------------------------------------------------------------------
def test_loader_lists_the_items_and_classes_of_a_brute_force_listing(imagenet):
    train_dir = imagenet / "train"
    classes = sorted(d for d in os.listdir(train_dir)
                     if (train_dir / d).is_dir() and not d.startswith("."))
    assert classes == [f"n{i:08d}" for i in range(4)]
    train = ImageFolder(imagenet, "train", size=16)
    assert train.classes == classes
    assert train.items == brute_force(train_dir, classes)
    assert len(train) == 4 * 12 + 1  # the extra .png counts, notes.txt and nested/ do not
    assert np.bincount(train.labels).tolist() == [12, 12, 13, 12]
    val = ImageFolder(imagenet, "val", size=16, classes=train.classes)
    assert val.items == brute_force(imagenet / "val", classes) and len(val) == 12
    x, y = train[len(train) - 1]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y == 3
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    grey = ImageFolder(imagenet, "train", size=(8, 12), channels=1)
    assert grey[0][0].shape == (1, 8, 12)
    assert train.check_files() == len(train)
    assert "classes=4" in repr(train)


def test_val_classes_are_a_subset_of_train_with_train_labels(tmp_path):
    root = write_imagefolder(tmp_path, ["cat", "dog", "eel"], (4, 2), size=12)
    for f in (root / "val" / "dog").iterdir():  # val without one class
        f.unlink()
    (root / "val" / "dog").rmdir()
    val = ImageFolder(root, "val")
    assert val.classes == ["cat", "dog", "eel"]
    assert sorted(set(val.labels.tolist())) == [0, 2]


# -- the task's splits ---------------------------------------------------------------------------
def test_with_root_val_val_is_held_out_of_train_and_test_is_root_val(imagenet):
    task = folder_task(imagenet, val_fraction=0.25)
    assert task.num_classes == 4 and task.input_shape == (3, 16, 16)
    assert task.class_names == [f"n{i:08d}" for i in range(4)]
    splits = task.splits()
    assert set(splits) == {"train", "val", "test"}
    augmented, val, test = splits["train"], splits["val"], splits["test"]
    assert isinstance(augmented, Augmented)  # the folder's preset: random resized crops...
    assert augmented.augment.resized_crop == (0.08, 1.0)
    train = augmented.dataset
    assert isinstance(test, ImageFolder) and test.split == "val" and len(test) == 12
    assert train.dataset is val.dataset  # one listing of root/train
    n = len(train.dataset)
    assert sorted(train.indices + val.indices) == list(range(n))
    assert len(val) == round(0.25 * n) or len(val) == int(np.ceil(0.25 * n))
    labels = train.dataset.labels
    assert np.bincount(labels[val.indices], minlength=4).min() >= 3  # stratified
    # every split's folder data sets are found for the data_check preflight
    found = {id(f) for s in splits.values() for f in folder_datasets(s)}
    assert found == {id(train.dataset), id(test)}
    again = folder_task(imagenet, val_fraction=0.25)
    again.splits()
    assert np.array_equal(again.split_indices["val"], task.split_indices["val"])
    other = folder_task(imagenet, val_fraction=0.25, seed=1)
    other.splits()
    assert not np.array_equal(other.split_indices["val"], task.split_indices["val"])
    with pytest.raises(ValueError, match="test_fraction"):
        folder_task(imagenet, test_fraction=0.1).splits()


def test_without_root_val_val_and_test_are_held_out_fractions(tmp_path):
    root = write_imagefolder(tmp_path, 3, 20, size=12, val=False)
    task = folder_task(root)  # val 0.1, test 0.1 of 60
    splits = task.splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 48, "val": 6, "test": 6}
    idx = np.concatenate(list(task.split_indices.values()))
    assert sorted(idx.tolist()) == list(range(60))
    for name in ("val", "test"):
        labels = splits[name].dataset.labels[splits[name].indices]
        assert np.bincount(labels).tolist() == [2, 2, 2]
    assert set(folder_task(root, test_fraction=0.0).splits()) == {"train", "val"}
    plain = folder_task(root, stratify=False, val_fraction=0.2, test_fraction=0.0)
    assert {k: len(v) for k, v in plain.splits().items()} == {"train": 48, "val": 12}
    few = folder_task(root, val_fraction=0.02, test_fraction=0.0)  # 2 images, 3 classes
    with pytest.raises(ValueError, match=r"val_fraction.*stratify: false"):
        few.splits()


def test_generated_data_sets_keep_their_options_and_data():
    """A generated data set's options dump as before (a run's identity is unchanged)."""
    task = ClassificationTask()
    assert task.options.model_dump(mode="json") == {
        "dataset": "glyphs", "val_fraction": 0.35, "test_fraction": 0.15, "seed": 0,
        "n_samples": 4000, "image_size": 10, "num_classes": 16, "noise": 0.1, "dropout": 0.0,
        "channels": 1}
    assert task.input_shape == (1, 10, 10) and task.num_classes == 16
    digits = ClassificationTask(dataset="digits", channels=3)
    assert digits.input_shape == (3, 8, 8)
    assert "root" not in digits.options.model_dump()


# -- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"dataset": "imagefolder"}, "root: dataset 'imagefolder' needs `root`"),
    ({"root": "/data"}, "root: only dataset 'imagefolder' reads it"),
    ({"dataset": "digits", "size": 32}, "size: only dataset 'imagefolder'.*image_size"),
    ({"dataset": "imagefolder", "root": "/data", "num_classes": 5},
     "num_classes: not an option of dataset 'imagefolder'"),
    ({"dataset": "imagefolder", "root": "/data", "image_size": 24}, "image_size: .*use size"),
    ({"dataset": "imagefolder", "root": "/data", "size": 4}, "size 4 is too small.*at least 8"),
    ({"dataset": "imagefolder", "root": "/data", "size": [16, 0]}, "size must be positive"),
    ({"dataset": "imagefolder", "root": "/data", "data_check": "all"},
     "data_check: Input should be 'full', 'sample' or 'first-batch'"),
    ({"dataset": "imagefolder", "root": "/data", "channels": 2}, "channels: Input should be 1"),
    ({"dataset": "imagenet"}, "dataset: Input should be .*'imagefolder'"),
    ({"dataset": "imagefolder", "root": "/data", "val_fraction": 0.5, "test_fraction": 0.45},
     "at least 10% for training"),
])
def test_options_are_validated_naming_the_field(options, message):
    with pytest.raises(ConfigError, match=message):
        ClassificationTask(**options)


def test_folder_errors_name_the_path_and_show_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="root does not exist"):
        folder_task(tmp_path / "nowhere").splits()
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match=r"missing folder .*a[/\\]train\n.*expected layout"):
        _ = folder_task(tmp_path / "a").num_classes
    (tmp_path / "a" / "train").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        folder_task(tmp_path / "a").splits()
    root = write_imagefolder(tmp_path / "b", 2, (4, 1), size=12)
    (root / "train" / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"class folder 'empty' holds no image file .*empty"):
        folder_task(root).splits()
    (root / "train" / "empty" / "labels.csv").write_text("no images here")
    with pytest.raises(DatasetError, match="class folder 'empty' holds no image file"):
        ImageFolder(root, "train")
    (root / "train" / "empty" / "labels.csv").unlink()
    (root / "train" / "empty").rmdir()
    (root / "val" / "n99999999").mkdir()
    Image.new("RGB", (8, 8)).save(root / "val" / "n99999999" / "a.png")
    with pytest.raises(DatasetError, match=r"class folder 'n99999999' of split 'val' is not one "
                                           r"of the 2 classes of root/train: .*n99999999"):
        folder_task(root).splits()
    # ImageNet's val images as downloaded: one flat folder
    flat = write_imagefolder(tmp_path / "c", 2, (3, 1), size=12)
    for image in sorted((flat / "val").glob("*/*.JPEG")):
        image.rename(flat / "val" / image.name)
    for folder in (flat / "val").glob("n*"):
        folder.rmdir()
    with pytest.raises(DatasetError, match="holds its images directly, not in class folders"):
        folder_task(flat).splits()


def test_a_corrupt_image_is_named_by_check_files_and_before_the_first_trial(tmp_path, capsys):
    root = write_imagefolder(tmp_path / "data", 2, (6, 2), size=12)
    bad = sorted((root / "val" / "n00000001").iterdir())[-1]
    bad.write_bytes(b"not a jpeg")
    task = folder_task(root)
    with pytest.raises(DatasetError, match=f"cannot read image file {re.escape(str(bad))}"):
        task.splits()["test"].check_files()
    # the preflight finds it through the task's data_check (full by default), though the
    # first batch of train and val never reads it
    with pytest.raises(NastkError, match=re.escape(str(bad))):
        check_task_data(folder_task(root), ["train", "val"], 4)
    check_task_data(folder_task(root, data_check="first-batch"), ["train", "val"], 4)
    config = search_config(root, tmp_path / "run")
    assert main(["search", write(tmp_path / "s.yaml", config), "--no-progress"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert str(bad) in err and "cannot read image" in err
    assert not (tmp_path / "run").exists()


# -- end to end ----------------------------------------------------------------------------------
def write(path: Path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


def search_config(root: Path, run_dir: Path, trials: int = 2) -> dict:
    return {"name": "folder", "run_dir": str(run_dir),
            "space": {"name": "small_cnn", "options": TINY_CNN},
            "task": {"name": "classification",
                     "options": {"dataset": "imagefolder", "root": str(root), "size": 16,
                                 "val_fraction": 0.25}},
            "strategy": "random",
            "evaluator": {"kind": "train", "train": {"epochs": 4, "batch_size": 8, "lr": 0.01,
                                                     "latency": False, "num_threads": 1}},
            "data": {"workers": 0},
            "budget": {"trials": trials}}


def test_a_search_on_an_image_folder_runs_end_to_end_and_learns(tmp_path):
    root = write_imagefolder(tmp_path / "data", 4, (16, 4), size=16, seed=3)
    config = search_config(root, tmp_path / "run")
    assert main(["search", write(tmp_path / "s.yaml", config), "--no-progress"]) == 0
    with RunStore.open_existing(tmp_path / "run") as store:
        trials = store.finished()
    assert len(trials) == 2 and all(t.result.ok for t in trials)
    assert max(t.result.metrics["accuracy"] for t in trials) >= 0.75  # chance: 0.25
    comps = build_components(parse_config(config))
    assert comps.task.num_classes == 4 and len(comps.task.splits()["test"]) == 16


def test_supernet_train_pretrains_on_an_image_folder(tmp_path):
    root = write_imagefolder(tmp_path / "data", 3, (8, 2), size=16)
    cfg = {"name": "pretrain", "run_dir": str(tmp_path / "supernet"),
           "plugins": ["toy_supernet"], "space": "toy_supernet",
           "task": {"name": "classification",
                    "options": {"dataset": "imagefolder", "root": str(root), "size": 16,
                                "val_fraction": 0.25}},
           "training": {"epochs": 1, "batch_size": 6, "n_random": 1, "bn_calib_batches": 1,
                        "num_threads": 1},
           "data": {"workers": 0}}
    assert main(["supernet", "train", write(tmp_path / "p.yaml", cfg), "--no-progress"]) == 0
    ckpt = torch.load(tmp_path / "supernet" / "supernet.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert ckpt["model"]["head.weight"].shape[0] == 3  # the folder's classes
    assert (tmp_path / "supernet" / "history.json").is_file()
