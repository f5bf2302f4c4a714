"""The segmentation task: splits, heads on every kind of body, metrics through evaluate(),
real-format datasets, and failed candidates in an RL search over nas_segm."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nastk import Objective, Status
from nastk.core.errors import ConfigError
from nastk.core.registry import TASKS, instantiate
from nastk.evaluation.train import TrainConfig, TrainEvaluator
from nastk.nn.supernet import SupernetModel
from nastk.run.loop import Budget, Search
from nastk.run.sqlite_store import RunStore
from nastk.search_spaces.nas_segm import NasSegmSpace
from nastk.search_spaces.ofa_mbv3 import OFAMobileNetV3Space
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.strategies.rl import RLController
from nastk.tasks.segmentation import SegmentationModel, SegmentationTask

TINY_SEGM = dict(stem_channels=8, encoder_widths=[8, 8, 8], encoder_depths=[1, 1, 1],
                 decoder_channels=8, agg_channels=8, n_layers=2, n_stride_layers=1,
                 max_repeats=2)


def test_synthetic_splits_are_deterministic_and_disjoint():
    task = SegmentationTask(n_samples=50, size=16, num_classes=4, seed=3)
    splits = task.splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 30, "val": 10, "test": 10}
    x, y = splits["train"][0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert y.shape == (16, 16) and y.dtype == torch.int64 and int(y.max()) < 4
    again = SegmentationTask(n_samples=50, size=16, num_classes=4, seed=3).splits()
    assert torch.equal(splits["val"].tensors[0], again["val"].tensors[0])
    seen = {tuple(t.flatten()[:40].tolist()) for s in splits.values() for t in s.tensors[0]}
    assert len(seen) == 50  # every scene in exactly one split
    assert task.input_shape == (3, 16, 16) and task.num_classes == 4


def test_heads_on_every_kind_of_body():
    task = SegmentationTask(size=32, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    rng = np.random.default_rng(0)
    segm = NasSegmSpace(**TINY_SEGM)
    model = task.build_model(segm, segm.sample(rng))
    assert isinstance(model, SegmentationModel) and model.head_kind == "linear"
    assert model(x).shape == (2, 5, 32, 32)
    cnn = SmallCNNSpace()
    model = task.build_model(cnn, cnn.sample(rng))
    assert model.head_kind == "fpn" and model(x).shape == (2, 5, 32, 32)
    with pytest.raises(TypeError, match="head 'fpn' needs a staged body"):
        SegmentationTask(head="fpn").build_model(segm, segm.sample(rng))


def test_supernet_with_segmentation_head_extracts_exactly():
    torch.manual_seed(0)
    space = OFAMobileNetV3Space(stages=[8, 8, 16, 16, 24], final_channels=32)
    task = SegmentationTask(size=32, num_classes=3)
    model = SupernetModel(space, task).eval()
    x = torch.randn(2, 3, 32, 32)
    rng = np.random.default_rng(1)
    for _ in range(4):
        arch = space.sample(rng)
        model.set_active(arch)
        sub = model.extract(arch).eval()
        assert torch.allclose(model(x), sub(x), atol=1e-5)
        assert sub(x).shape == (2, 3, 32, 32)


class _Oracle(nn.Module):
    """Reads the label hidden in channel 0 of the input; optionally always says class 0."""

    def __init__(self, classes, background_only=False):
        super().__init__()
        self.classes = classes
        self.background_only = background_only
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        labels = x[:, 0].long().clamp(0, self.classes - 1)
        if self.background_only:
            labels = torch.zeros_like(labels)
        return nn.functional.one_hot(labels, self.classes).permute(0, 3, 1, 2).float() * 10


def _loader(masks):
    x = torch.stack([torch.stack([m.float()] * 3) for m in masks])
    return DataLoader(TensorDataset(x, torch.stack(masks)), batch_size=2)


def test_evaluate_matches_hand_computed_metrics_and_ignores_255():
    task = SegmentationTask(num_classes=3)
    # 2 images of 2x2; labels: 5 background, 2 class 1, 1 class 2 counted; one pixel ignored
    masks = [torch.tensor([[0, 0], [1, 255]]), torch.tensor([[0, 0], [0, 1]]),
             torch.tensor([[2, 0], [255, 255]])]
    perfect = task.evaluate(_Oracle(3), _loader(masks))
    assert perfect["miou"] == pytest.approx(1.0) and perfect["score"] == pytest.approx(1.0)
    assert perfect["pixel_accuracy"] == pytest.approx(1.0)
    assert perfect["iou_background"] == pytest.approx(1.0)
    bg = task.evaluate(_Oracle(3, background_only=True), _loader(masks))
    # counted pixels: 6 background, 2 class 1, 1 class 2 (the ignored ones are not scored)
    # IoU: background 6/9, class 1 0/2, class 2 0/1 -> mIoU = (6/9) / 3
    assert bg["miou"] == pytest.approx((6 / 9) / 3)
    assert bg["pixel_accuracy"] == pytest.approx(6 / 9)
    assert bg["mean_accuracy"] == pytest.approx(1 / 3)
    fw = (6 / 9) * (6 / 9)
    assert bg["fw_iou"] == pytest.approx(fw)
    assert bg["score"] == pytest.approx(((6 / 9) / 3 * (1 / 3) * fw) ** (1 / 3))
    # omit the background from the class means (nas-segm's VOC reward)
    omitted = SegmentationTask(num_classes=3, omit_classes=[0]).evaluate(
        _Oracle(3, background_only=True), _loader(masks))
    assert omitted["miou"] == pytest.approx(0.0)
    assert omitted["pixel_accuracy"] == pytest.approx(6 / 9)


def test_loss_ignores_255():
    task = SegmentationTask(num_classes=3)
    logits = torch.randn(1, 3, 2, 2)
    target = torch.tensor([[[0, 1], [255, 255]]])
    expected = nn.functional.cross_entropy(logits[0, :, 0].T, target[0, 0])
    assert float(task.loss(logits, target)) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize(("options", "message"), [
    ({"dataset": "camvid"}, "needs `root`"),
    ({"num_classes": 40}, "at most 10 classes"),
    ({"omit_classes": [7]}, r"omit_classes \[7\] not in \[0, 5\)"),
    ({"size": 4}, "too small"),
    ({"val_fraction": 0.5, "test_fraction": 0.45}, "at least 10%"),
])
def test_option_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        instantiate(TASKS, "segmentation", options, where="task.options")


def test_camvid_task_holds_out_part_of_train(tmp_path):
    from PIL import Image

    root = tmp_path / "CamVid"
    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("val", 3)):
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(
                root / split / f"f{i}.png")
            Image.fromarray(rng.integers(0, 12, (12, 16), dtype=np.uint8), mode="L").save(
                root / f"{split}annot" / f"f{i}.png")
    task = SegmentationTask(dataset="camvid", root=root, size=(8, 12), holdout_fraction=0.2)
    splits = task.splits()
    assert {k: len(v) for k, v in splits.items()} == {"train": 8, "val": 2, "test": 3}
    x, y = splits["test"][0]
    assert x.shape == (3, 8, 12) and set(y.unique().tolist()) <= set(range(11)) | {255}
    assert task.num_classes == 11 and task.class_names[0] == "Sky"
    with pytest.raises(Exception, match=str(tmp_path / "nowhere")):
        SegmentationTask(dataset="camvid", root=tmp_path / "nowhere").splits()


def test_out_of_memory_candidates_are_failed_not_zero(tmp_path, monkeypatch):
    """A candidate that runs out of memory is recorded as failed with the error; the RL
    controller learns only from the others (nas-segm scored such candidates 0)."""
    space = NasSegmSpace(**TINY_SEGM)
    task = SegmentationTask(n_samples=24, size=16, num_classes=3)
    original = NasSegmSpace.build

    def build(self, arch, in_channels):
        if arch["layer0_repeats"] == 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return original(self, arch, in_channels)

    monkeypatch.setattr(NasSegmSpace, "build", build)
    objective = Objective(metric="score", direction="max")
    strategy = RLController(space, objective, seed=0, batch_size=4)
    evaluator = TrainEvaluator(task, space, TrainConfig(steps=2, batch_size=8, latency=False))
    with RunStore.in_dir(tmp_path) as store:
        trials = Search(space, strategy, evaluator, objective, store, Budget(trials=12)).run()
    failed = [t for t in trials if t.result.status is Status.FAILED]
    ok = [t for t in trials if t.result.ok]
    assert failed and ok
    assert all(t.arch["layer0_repeats"] == 2 for t in failed)
    assert all("OutOfMemoryError" in t.result.error for t in failed)
    assert all("score" not in t.result.metrics for t in failed)
    assert all(math.isfinite(t.result.metrics["score"]) for t in ok)
    # one policy update per 4 successes: the failures never entered a batch
    assert strategy.updates == len(ok) // 4
