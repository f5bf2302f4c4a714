"""The shared image-task pieces of nastk/data: the size option (plain and as task options), image
reading and resizing against PIL / torch references, and a task's cached splits and split
builders."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import ConfigDict, ValidationError
from torch.utils.data import Dataset, TensorDataset

from nastk.data.images import (
    ImageInput,
    ImageSizeOptions,
    check_size,
    image_tensor,
    read_grey,
    read_rgb,
    resize_image,
    size_field,
)
from nastk.data.splits import (
    CachedSplits,
    SplitOptions,
    holdout_indices,
    holdout_splits,
    shuffled_split_indices,
    synthetic_splits,
)


# -- the size option --------------------------------------------------------------------------
def test_check_size():
    assert check_size(None) is None
    assert check_size(5) == (5, 5) and check_size((3, 4)) == (3, 4)
    assert check_size([3, np.int64(4)]) == (3, 4)
    for bad in (2.5, (1, 2, 3), (True, 2), "32"):
        with pytest.raises(ValueError, match="target_size must be None, an int or a"):
            check_size(bad, "target_size")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"size must be positive, got \(0, 4\)"):
        check_size((0, 4))


class _Options(ImageSizeOptions):
    model_config = ConfigDict(extra="forbid")
    min_side: ClassVar[int] = 16
    size: int | tuple[int, int] = size_field((16, 24))


def test_size_options_check_the_side_and_give_height_width():
    assert _Options().image_size == (16, 24)
    assert _Options(size=20).image_size == (20, 20) and _Options(size=[20, 30]).size == (20, 30)
    assert _Options.model_fields["size"].description.startswith("image side, or (height, width)")
    with pytest.raises(ValidationError) as err:
        _Options(size=(16, 15))
    (error,) = err.value.errors()
    assert error["loc"] == ("size",)
    assert "size (16, 15) is too small; use at least 16 pixels a side" in error["msg"]
    assert ImageSizeOptions(size=8).size == 8  # the base's minimum is 8
    assert _Options(size=18).square_side() == 18
    with pytest.raises(ValueError, match=r"synthetic scenes are square; got size \(16, 24\)"):
        _Options().square_side()


def test_image_input_reads_the_options():
    class Task(ImageInput):
        def __init__(self, **options: object) -> None:
            self.options = _Options(**options)

    assert Task().input_shape == (3, 16, 24) and Task(size=20).image_size == (20, 20)


# -- reading and resizing ---------------------------------------------------------------------
def test_read_and_tensor_match_pil(tmp_path: Path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_rgb(tmp_path / "a.png"), rgb)
    # a grey file read as RGB repeats its level; an RGB file read as grey is PIL's luma
    np.testing.assert_array_equal(read_rgb(tmp_path / "g.png"), rgb[..., :1].repeat(3, axis=2))
    luma = np.asarray(Image.fromarray(rgb).convert("L"))
    np.testing.assert_array_equal(read_grey(tmp_path / "a.png"), luma)
    x = image_tensor(rgb)
    assert x.shape == (3, 5, 7) and x.dtype == torch.float32
    assert float(x[1, 2, 3]) == np.float32(rgb[2, 3, 1]) / np.float32(255.0)


def test_resize_image():
    x = torch.rand(3, 9, 12, generator=torch.Generator().manual_seed(0))
    before = x.clone()
    assert resize_image(x, None) is x and resize_image(x, (9, 12)) is x
    out = resize_image(x, (4, 5))
    ref = F.interpolate(x[None], size=(4, 5), mode="bilinear", align_corners=False,
                        antialias=True)[0]
    assert out.shape == (3, 4, 5) and torch.equal(out, ref.clamp(0, 1))
    assert torch.equal(x, before)  # the input is left alone


# -- splits -----------------------------------------------------------------------------------
class _Splits(SplitOptions):
    dataset: str = "synthetic"


def test_synthetic_splits_follow_the_shuffled_indices():
    o = _Splits(val_fraction=0.2, test_fraction=0.1, seed=3)
    seen: list[np.ndarray] = []

    def make(ix: np.ndarray) -> Dataset:
        seen.append(ix)
        return TensorDataset(torch.from_numpy(ix))

    out = synthetic_splits(50, o, make)
    expected = shuffled_split_indices(50, 0.2, 0.1, 3)
    assert list(out) == list(expected) == ["train", "val", "test"]
    for name, ds in out.items():
        assert ds.tensors[0].tolist() == expected[name].tolist()
    assert sorted(np.concatenate(seen).tolist()) == list(range(50))
    no_test = synthetic_splits(50, _Splits(test_fraction=0.0), make)
    assert list(no_test) == ["train", "val"]


def test_holdout_splits_and_the_official_test():
    official = TensorDataset(torch.arange(20))
    o = _Splits(holdout_fraction=0.25, seed=1)
    calls: list[str] = []

    def test_split() -> Dataset:
        calls.append("test")
        return TensorDataset(torch.arange(5))

    out = holdout_splits(official, o, "my data", test_split)
    train, val = holdout_indices(20, 0.25, 1)
    assert out["train"].indices == train and out["val"].indices == val
    assert len(val) == 5 and not set(train) & set(val)
    assert len(out["test"]) == 5 and calls == ["test"]
    assert "test" not in holdout_splits(official, o, "my data", lambda: None)
    # too few images: the holdout's error, before the test split is read
    with pytest.raises(ValueError, match="tiny: 1 training images are too few"):
        holdout_splits(TensorDataset(torch.arange(1)), o, "tiny", test_split)
    assert calls == ["test"]


def test_cached_splits_build_once_and_hand_out_copies():
    class Task(CachedSplits):
        builds = 0

        def build_splits(self) -> dict[str, Dataset]:
            type(self).builds += 1
            return {"train": TensorDataset(torch.zeros(2)), "val": TensorDataset(torch.ones(1))}

    task = Task()
    first = task.splits()
    first.pop("val")
    second = task.splits()
    assert Task.builds == 1 and set(second) == {"train", "val"}
    assert second["train"] is first["train"]
    Task().splits()
    assert Task.builds == 2  # one build per task object
