"""``data:`` — loader worker processes (nastk.data.loading, nastk.data.loaders): the same
batches for any number of workers, auto workers only for data read from files, errors from a
worker as they are without one, and the option validated where it is written."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from nastk.config.compose import build_task
from nastk.config.schema import PluginRef, parse_config
from nastk.core.errors import ConfigError
from nastk.data import loaders, sample_folders
from nastk.data import loading as loading_module
from nastk.data.folders import DatasetError
from nastk.data.loaders import make_loader, split_batch
from nastk.data.loading import MAX_AUTO_WORKERS, Loading

SEG = {"dataset": "cityscapes", "size": [32, 64]}


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    return sample_folders.write_cityscapes(tmp_path_factory.mktemp("city"), 10, size=(64, 128))


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    return sample_folders.write_coco(tmp_path_factory.mktemp("coco"), 10, size=(48, 64))


def task_for(name: str, root: Path, workers, **options):
    dataset = {"segmentation": "cityscapes", "detection": "coco", "saliency": "salicon"}[name]
    ref = PluginRef(name=name, options={"dataset": dataset, "root": str(root), **options})
    return build_task(ref, loading=Loading(workers=workers))


def batches(task, split="train", batch_size=3, shard=None):
    loader = make_loader(task, task.splits()[split], batch_size, shuffle=True,
                         generator=torch.Generator().manual_seed(5), shard=shard)
    return [split_batch(b) for b in loader]


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@pytest.mark.parametrize("name, size", [("segmentation", [32, 64]), ("detection", 40)])
def test_workers_give_the_batches_of_the_training_process(name, size, city, coco):
    root = city if name == "segmentation" else coco
    reference = batches(task_for(name, root, 0, size=size))
    assert len(reference) >= 3
    for workers in (1, 2):
        assert same(batches(task_for(name, root, workers, size=size)), reference)
    # data-parallel shards too
    shard = batches(task_for(name, root, 2, size=size), shard=(1, 2))
    assert same(shard, batches(task_for(name, root, 0, size=size), shard=(1, 2)))


def test_auto_reads_files_in_workers_and_memory_in_process(city, monkeypatch):
    folder = task_for("segmentation", city, "auto", size=[32, 64])
    generated = build_task(PluginRef(name="segmentation", options={}))
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert len(folder.splits()["train"]) < loading_module.AUTO_MIN_ITEMS
    assert Loading().workers_for(folder.splits()["train"]) == 0  # a few images: in-process
    monkeypatch.setattr(loading_module, "AUTO_MIN_ITEMS", 4)
    assert Loading().workers_for(folder.splits()["train"]) == 3
    assert Loading().workers_for(generated.splits()["train"]) == 0
    assert make_loader(generated, generated.splits()["train"], 4).num_workers == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert Loading().workers_for(folder.splits()["train"]) == MAX_AUTO_WORKERS
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(loading_module, "available_cpus", lambda: 2)
    assert Loading().workers_for(folder.splits()["train"]) == 2
    assert Loading(workers=0).workers_for(folder.splits()["train"]) == 0
    loader = make_loader(folder, folder.splits()["train"], 4)
    assert loader.num_workers == 2 and loader.persistent_workers
    assert loader.pin_memory == torch.cuda.is_available()
    assert make_loader(folder, folder.splits()["train"], 4, num_workers=0).num_workers == 0


def test_a_corrupt_image_read_by_a_worker_fails_as_it_does_in_process(tmp_path):
    root = sample_folders.write_cityscapes(tmp_path / "city", 6, size=(32, 64))
    bad = sorted((root / "leftImg8bit" / "train").rglob("*.png"))[3]
    bad.write_bytes(b"not a png")
    errors = []
    for workers in (0, 2):
        task = task_for("segmentation", root, workers, size=[16, 32], data_check="first-batch")
        with pytest.raises(DatasetError) as info:
            for split in ("train", "val"):  # the official train split, held-out part too
                for _ in make_loader(task, task.splits()[split], 2):
                    pass
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    assert str(bad) in errors[1] and "Caught" not in errors[1]


class _Lambdas(Dataset):
    def __init__(self):
        self.fn = lambda i: torch.full((2,), float(i))

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return self.fn(i), 0


def test_a_data_set_that_cannot_go_to_spawned_workers_is_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(loading_module.multiprocessing, "get_start_method",
                        lambda allow_none=False: "spawn")
    with pytest.raises(ConfigError, match=r"data.workers: the data set \(_Lambdas\) cannot be "
                                          r"sent .*'spawn'.*data.workers: 0"):
        make_loader(None, _Lambdas(), 2, num_workers=2)
    plain = TensorDataset(torch.arange(4.0))
    pickle.dumps(plain)
    assert len(list(make_loader(None, plain, 2, num_workers=2))) == 2


class _NumpyNoise(Dataset):
    """Draws from numpy's global generator (as third-party transforms do)."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor([float(np.random.random())]), i


def test_worker_generators_are_seeded_from_the_loader_seed():
    def run():
        return [split_batch(b)[0] for b in make_loader(
            None, _NumpyNoise(), 2, shuffle=True, generator=torch.Generator().manual_seed(1),
            num_workers=2)]

    first, second = run(), run()
    assert same(first, second)
    values = torch.cat(first).flatten().tolist()
    assert len(set(values)) == len(values)  # the workers do not repeat each other's draws


@pytest.mark.parametrize("data, message", [
    ({"workers": -1}, r"data.workers"),
    ({"workers": "many"}, r"data.workers"),
    ({"prefetch": 0}, r"data.prefetch"),
    ({"pin_memory": "sometimes"}, r"data.pin_memory"),
    ({"threads": 2}, r"data.threads"),
])
def test_data_options_are_validated_naming_the_field(data, message):
    config = {"name": "s", "space": "small_cnn", "task": "classification", "data": data}
    with pytest.raises(ConfigError, match=message):
        parse_config(config, "exp.yaml")


def test_data_options_are_not_part_of_a_runs_identity():
    base = {"name": "s", "space": "small_cnn", "task": "classification"}
    one = parse_config(base).identity()
    assert parse_config({**base, "data": {"workers": 3, "persistent": False}}).identity() == one


class _FileImages(Dataset):
    """Images resized from a file's pixels; ``halve`` changes them in place afterwards."""

    def __init__(self, path: Path, halve: bool) -> None:
        self.path, self.halve = path, halve

    def __len__(self):
        return 4

    def __getitem__(self, i):
        from nastk.data.images import pixels, read_rgb, resize_image

        image = resize_image(pixels(read_rgb(self.path)), (17, 23))
        if self.halve:
            image.mul_(0.5)  # stale levels must not be sent
        return image, i


@pytest.mark.parametrize("halve", [False, True])
def test_images_of_file_levels_come_back_bit_for_bit(tmp_path, halve):
    """A worker sends an image resized from a file's pixels as its uint8 levels; the float
    image the training process gets is the one the data set made, also when it was changed
    in place after the resize."""
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
                    ).save(tmp_path / "x.png")
    data = _FileImages(tmp_path / "x.png", halve)
    made = torch.stack([data[i][0] for i in range(4)])
    assert (loaders._Levels.pack(data[0][0]) is None) == halve  # levels kept while unchanged
    got = torch.cat([split_batch(b)[0] for b in make_loader(None, data, 2, num_workers=2)])
    assert got.dtype == torch.float32 and torch.equal(got, made)
