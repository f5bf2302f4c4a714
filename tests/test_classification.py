"""The classification task, its synthetic data and the training evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from nastk import Architecture, Categorical, SearchSpace
from nastk.core.errors import ConfigError
from nastk.core.registry import TASKS, instantiate, summary
from nastk.evaluation.base import Evaluator
from nastk.evaluation.train import TrainConfig, TrainEvaluator, arch_seed
from nastk.search_spaces.small_cnn import SmallCNNSpace
from nastk.tasks.classification import ClassificationTask
from nastk.tasks.classification.synthetic import (
    MAX_GLYPHS,
    SHAPES,
    glyph_templates,
    make_glyphs,
    make_shapes,
)

#: a small, quick-to-train architecture of the default small_cnn space
SMALL = Architecture(depth=(1, 1, 1), width=(16, 16, 24), kernel=(3, 3, 3), expand=(1, 2, 2))


@pytest.fixture(scope="module")
def digits() -> ClassificationTask:
    return ClassificationTask(dataset="digits")


@pytest.fixture(scope="module")
def space() -> SmallCNNSpace:
    return SmallCNNSpace()


# -- data ----------------------------------------------------------------------------------------
def test_digits_shapes_and_splits(digits):
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert summary(ClassificationTask) and "\n" not in summary(ClassificationTask)
    splits = digits.splits()
    assert set(splits) == {"train", "val", "test"}
    assert digits.splits()["train"] is splits["train"]  # cached
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 1797
    assert abs(sizes["val"] - 0.2 * 1797) <= 2 and abs(sizes["test"] - 0.2 * 1797) <= 2
    idx = digits.split_indices
    all_idx = np.concatenate(list(idx.values()))
    assert len(np.unique(all_idx)) == 1797  # disjoint and complete
    x, y = splits["train"].tensors
    assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8) and y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    overall = np.bincount(np.concatenate([s.tensors[1].numpy() for s in splits.values()]),
                          minlength=10) / 1797
    for ds in splits.values():  # stratified: every split has the overall class shares
        share = np.bincount(ds.tensors[1].numpy(), minlength=10) / len(ds)
        assert np.abs(share - overall).max() < 0.01


def test_split_depends_on_seed_only():
    a, b, c = (ClassificationTask(seed=s) for s in (0, 0, 1))
    for task in (a, b, c):
        task.splits()
    assert np.array_equal(a.split_indices["val"], b.split_indices["val"])
    assert not np.array_equal(a.split_indices["val"], c.split_indices["val"])
    no_test = ClassificationTask(test_fraction=0.0)
    assert set(no_test.splits()) == {"train", "val"}


def test_synthetic_generator_deterministic_and_balanced():
    x1, y1 = make_shapes(300, image_size=16, num_classes=6, seed=3)
    x2, y2 = make_shapes(300, image_size=16, num_classes=6, seed=3)
    x3, _ = make_shapes(300, image_size=16, num_classes=6, seed=4)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)
    assert x1.shape == (300, 1, 16, 16) and x1.dtype == np.float32 and y1.dtype == np.int64
    assert x1.min() >= 0.0 and x1.max() <= 1.0
    assert np.bincount(y1).tolist() == [50] * 6
    _, y9 = make_shapes(100, image_size=12, num_classes=len(SHAPES), seed=0)
    counts = np.bincount(y9)
    assert len(counts) == len(SHAPES) and counts.max() - counts.min() <= 1
    with pytest.raises(ValueError):
        make_shapes(10, num_classes=len(SHAPES) + 1)


def test_glyphs_are_distinct_fixed_and_the_default():
    t = glyph_templates(MAX_GLYPHS)
    assert t.shape == (MAX_GLYPHS, 5, 5) and t.dtype == bool
    flat = t.reshape(MAX_GLYPHS, -1)
    dist = (flat[:, None, :] != flat[None, :, :]).sum(-1)
    assert dist[~np.eye(MAX_GLYPHS, dtype=bool)].min() >= 6  # a quarter of 25 pixels
    assert np.all((flat.mean(1) >= 0.35) & (flat.mean(1) <= 0.65))
    assert np.array_equal(glyph_templates(16), t[:16])  # fewer classes: a subset
    x1, y1 = make_glyphs(320, seed=3)
    x2, y2 = make_glyphs(320, seed=3)
    x3, _ = make_glyphs(320, seed=4)
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2) and not np.array_equal(x1, x3)
    assert x1.shape == (320, 1, 10, 10) and x1.min() >= 0.0 and x1.max() <= 1.0
    assert np.bincount(y1).tolist() == [20] * 16
    # without noise or background the glyph is there, pixel for pixel, somewhere in the image
    x0, y0 = make_glyphs(32, noise=0.0, seed=1)
    img, glyph = x0[0, 0], glyph_templates(16)[y0[0]]
    found = [np.array_equal(img[r:r + 5, c:c + 5] > img.min() + 0.39, glyph)
             for r in range(6) for c in range(6)]
    assert any(found)
    with pytest.raises(ValueError, match="image_size"):
        make_glyphs(100, image_size=6)
    with pytest.raises(ValueError, match="num_classes"):
        glyph_templates(MAX_GLYPHS + 1)
    task = ClassificationTask()
    assert task.options.dataset == "glyphs" and task.input_shape == (1, 10, 10)
    assert task.num_classes == 16
    assert {k: len(v) for k, v in task.splits().items()} == {"train": 2000, "val": 1400,
                                                            "test": 600}
    with pytest.raises(ValueError, match="at most 9"):
        ClassificationTask(dataset="synthetic", num_classes=12)


def test_synthetic_task():
    task = ClassificationTask(dataset="synthetic", n_samples=400, image_size=12, num_classes=4)
    assert task.input_shape == (1, 12, 12) and task.num_classes == 4
    splits = task.splits()
    assert sum(len(s) for s in splits.values()) == 400
    for ds in splits.values():
        counts = np.bincount(ds.tensors[1].numpy(), minlength=4)
        assert counts.max() - counts.min() <= 1
    again = ClassificationTask(dataset="synthetic", n_samples=400, image_size=12, num_classes=4)
    assert torch.equal(again.splits()["val"].tensors[0], splits["val"].tensors[0])


def test_task_options_via_registry():
    assert TASKS.get("classification") is ClassificationTask
    task = instantiate(TASKS, "classification", {"dataset": "synthetic", "n_samples": 100})
    assert task.options.n_samples == 100
    with pytest.raises(ConfigError, match="dataset"):
        instantiate(TASKS, "classification", {"dataset": "mnist"}, where="task.options")
    with pytest.raises(ConfigError, match="n_sampels"):
        instantiate(TASKS, "classification", {"n_sampels": 10}, where="task.options")
    with pytest.raises(ConfigError, match="training"):
        instantiate(TASKS, "classification", {"val_fraction": 0.5, "test_fraction": 0.45})


def test_model_loss_and_evaluate(digits, space):
    model = digits.build_model(space, SMALL)
    x, y = digits.splits()["val"].tensors
    out = model(x[:5])
    assert out.shape == (5, 10)
    assert digits.loss(out, y[:5]).ndim == 0
    model.train()
    metrics = digits.evaluate(model, DataLoader(digits.splits()["val"], batch_size=100))
    assert set(metrics) == {"accuracy", "loss"} and 0.0 <= metrics["accuracy"] <= 1.0
    assert model.training  # previous mode restored


# -- training evaluator --------------------------------------------------------------------------
def test_train_config_forbids_unknown_fields():
    with pytest.raises(ValueError):
        TrainConfig(epoch=3)
    assert TrainConfig().epochs == 5 and TrainConfig().steps is None


@pytest.mark.slow
def test_training_on_digits_beats_chance(digits, space):
    calls = []
    ev = TrainEvaluator(digits, space, TrainConfig(epochs=3, latency_repeats=3), seed=0)
    assert isinstance(ev, Evaluator)
    result = ev.evaluate(SMALL, progress=lambda step, total: calls.append((step, total)))
    assert result.ok, result.error
    print(f"digits, 3 epochs: accuracy={result.metrics['accuracy']:.3f} "
          f"in {result.duration_s:.2f}s")
    assert result.metrics["accuracy"] > 0.5  # chance is 0.1; measured ~0.9
    assert set(result.metrics) == {"accuracy", "loss", "train_loss"}
    assert set(result.costs) == {"params", "flops", "latency_ms"}
    assert result.duration_s > 0 and result.info["steps"] == calls[-1][1] == len(calls)
    assert calls[-1][0] == calls[-1][1] == 3 * math.ceil(len(digits.splits()["train"]) / 64)


def test_training_is_deterministic_per_arch(digits, space):
    ev = TrainEvaluator(digits, space, TrainConfig(steps=15, latency=False), seed=7)
    torch.manual_seed(123)
    before = torch.rand(1)
    a, b = ev.evaluate(SMALL), ev.evaluate(SMALL)
    assert a.ok and a.metrics == b.metrics
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the global RNG is left alone
    assert "latency_ms" not in a.costs and a.info["steps"] == 15
    assert arch_seed(7, SMALL) != arch_seed(8, SMALL)
    other = TrainEvaluator(digits, space, TrainConfig(steps=15, latency=False), seed=8)
    assert other.evaluate(SMALL).metrics != a.metrics


class _Body(nn.Module):
    def __init__(self, in_channels: int, scale: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.scale = scale
        self.out_channels = 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale


class _NaNSpace(SearchSpace):
    """Builds a body whose output is NaN."""

    def __init__(self) -> None:
        super().__init__([Categorical("a", [0, 1])], name="nan_space")

    def build(self, arch: Architecture, in_channels: int) -> nn.Module:
        return _Body(in_channels, float("nan"))


class _BrokenSpace(SearchSpace):
    """Fails to build."""

    def __init__(self) -> None:
        super().__init__([Categorical("a", [0, 1])], name="broken_space")

    def build(self, arch: Architecture, in_channels: int) -> nn.Module:
        raise RuntimeError(f"cannot build a={arch['a']}")


class _ShapeSpace(SearchSpace):
    """Builds a body whose out_channels lies about its output, so the head gets a wrong shape."""

    def __init__(self) -> None:
        super().__init__([Categorical("a", [0, 1])], name="shape_space")

    def build(self, arch: Architecture, in_channels: int) -> nn.Module:
        body = _Body(in_channels, 1.0)
        body.out_channels = 5
        return body


def test_nan_model_gives_diverged_failure(digits):
    result = TrainEvaluator(digits, _NaNSpace(), TrainConfig(steps=5, latency=False)).evaluate(
        Architecture(a=0))
    assert not result.ok
    assert "diverged" in result.error and "nan" in result.error and "step 1" in result.error
    assert result.costs["params"] == 4 * 9 + 4 + 4 * 10 + 10


def test_huge_lr_diverges(digits, space):
    cfg = TrainConfig(steps=40, lr=1e6, optimizer="sgd", latency=False)
    result = TrainEvaluator(digits, space, cfg).evaluate(SMALL)
    assert not result.ok and result.error.startswith("diverged: loss became")


def test_build_and_shape_errors_become_failed_results(digits, space):
    cfg = TrainConfig(steps=3, latency=False)
    broken = TrainEvaluator(digits, _BrokenSpace(), cfg).evaluate(Architecture(a=1))
    assert not broken.ok and "RuntimeError: cannot build a=1" in broken.error
    shape = TrainEvaluator(digits, _ShapeSpace(), cfg).evaluate(Architecture(a=1))
    assert not shape.ok and "RuntimeError" in shape.error
    invalid = TrainEvaluator(digits, space, cfg).evaluate(Architecture(a=1))
    assert not invalid.ok and "InvalidArchitectureError" in invalid.error
    no_split = TrainEvaluator(digits, space, TrainConfig(steps=2, latency=False,
                                                         eval_split="nope")).evaluate(SMALL)
    assert not no_split.ok and "nope" in no_split.error


def test_checkpoint_loads_weights_only_and_reproduces_eval(digits, space, tmp_path):
    ckpt = tmp_path / "sub" / "model.pt"
    ev = TrainEvaluator(digits, space, TrainConfig(steps=20, latency=False), seed=1)
    result = ev.evaluate(SMALL, checkpoint=ckpt)
    assert result.ok and ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)
    fresh = digits.build_model(space, SMALL)
    fresh.load_state_dict(state)
    val = DataLoader(digits.splits()["val"], batch_size=128)
    metrics = digits.evaluate(fresh, val)
    assert metrics["accuracy"] == result.metrics["accuracy"]
    assert metrics["loss"] == pytest.approx(result.metrics["loss"], rel=1e-5)
    other = digits.build_model(space, SMALL)
    other.load_state_dict(torch.load(ckpt, weights_only=True))
    fresh.eval()
    other.eval()
    x = digits.splits()["val"].tensors[0][:32]
    with torch.no_grad():
        assert torch.equal(fresh(x), other(x))


def test_batch_norm_statistics_recalibrated_on_train_split(digits, space, tmp_path):
    ckpt = tmp_path / "m.pt"
    cfg = TrainConfig(steps=5, latency=False)
    assert TrainEvaluator(digits, space, cfg).evaluate(SMALL, checkpoint=ckpt).ok
    model = digits.build_model(space, SMALL)
    model.load_state_dict(torch.load(ckpt, weights_only=True))
    conv, bn = model.body.stem[0], model.body.stem[1]
    x = digits.splits()["train"].tensors[0]
    with torch.no_grad():  # cumulative average of the per-batch means (eval batches of 256)
        means = torch.stack([conv(x[i:i + 256]).mean(dim=(0, 2, 3))
                             for i in range(0, len(x), 256)])
    assert torch.allclose(bn.running_mean, means.mean(0), atol=1e-5)
    assert bn.momentum == 0.1  # restored
