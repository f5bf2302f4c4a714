"""The folder-dataset base (nastk/data/folders.py) through the loader its module docstring shows
a user (run as written): split and folder checks, the layout in every folder error, files
named when they are missing or unreadable, resizing, the transform, and loaders by name."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import nastk.data.folders
from nastk.core.errors import NastkError
from nastk.data.folders import DatasetError, FolderDataset, loader_named


def _docstring_example() -> type[FolderDataset]:
    """The loader the module docstring shows a user, run as written."""
    doc = nastk.data.folders.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    code = textwrap.dedent("\n".join(line for line in block.splitlines()
                                      if not line or line.startswith("    ")))
    namespace: dict[str, object] = {}
    exec(compile(code, "nastk/data/folders.py docstring", "exec", dont_inherit=True), namespace)
    return namespace["MyMasks"]  # type: ignore[return-value]


MyMasks = _docstring_example()
H, W = 6, 10


def _write(root: Path, split: str, n: int) -> list[np.ndarray]:
    (root / split).mkdir(parents=True)
    pixels = []
    for i in range(n):
        rgb = np.random.default_rng(i).integers(0, 256, (H, W, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(root / split / f"{i:02d}.jpg", quality=100)
        Image.fromarray(np.full((H, W), i, dtype=np.uint8)).save(root / split / f"{i:02d}.png")
        pixels.append(np.asarray(Image.open(root / split / f"{i:02d}.jpg").convert("RGB")))
    return pixels


def test_items_images_and_targets(tmp_path):
    pixels = _write(tmp_path, "train", 3)
    ds = MyMasks(tmp_path)
    assert len(ds) == 3 and [p.name for p in ds.items] == ["00.jpg", "01.jpg", "02.jpg"]
    x, mask = ds[2]
    assert x.dtype == torch.float32 and x.shape == (3, H, W)
    np.testing.assert_array_equal((x * 255).round().byte().permute(1, 2, 0).numpy(), pixels[2])
    assert mask.shape == (H, W) and int(mask.unique()) == 2
    assert repr(ds) == f"MyMasks(root={str(tmp_path)!r}, split='train', size=None, items=3)"


def test_size_and_transform(tmp_path):
    _write(tmp_path, "train", 2)
    plain = MyMasks(tmp_path)[1][0]
    x, _ = MyMasks(tmp_path, size=(3, 4))[1]
    # resized as the file's uint8 pixels (torch's fast path), then made float
    pix = (plain * 255).round().to(torch.uint8)
    assert torch.equal(x, F.interpolate(pix[None], size=(3, 4), mode="bilinear",
                                        align_corners=False, antialias=True)[0].float() / 255)
    # within one grey level of resizing the float image
    ref = F.interpolate(plain[None], size=(3, 4), mode="bilinear", align_corners=False,
                        antialias=True)[0].clamp(0, 1)
    assert (x - ref).abs().max() <= 1 / 255 + 1e-6
    assert MyMasks(tmp_path, size=5)[0][0].shape == (3, 5, 5)
    seen = []

    def transform(image, target):
        seen.append(image.shape)
        return image * 0, target + 1

    x, mask = MyMasks(tmp_path, size=(3, 4), transform=transform)[1]
    assert seen == [(3, 3, 4)]  # after the resize
    assert not x.any() and int(mask.unique()) == 2


def test_split_and_folder_errors_name_the_path_and_layout(tmp_path):
    with pytest.raises(ValueError, match=r"MyMasks: split must be one of \['train', 'val'\], "
                                         r"got 'test'"):
        MyMasks(tmp_path, "test")
    with pytest.raises(DatasetError) as err:
        MyMasks(tmp_path / "nowhere")
    message = str(err.value)
    assert message.startswith(f"MyMasks: the data-set root does not exist: {tmp_path / 'nowhere'}")
    assert message.endswith("expected layout:\n" + MyMasks.layout)
    assert isinstance(err.value, NastkError) and isinstance(err.value, ValueError)
    with pytest.raises(DatasetError, match="missing folder: " + str(tmp_path / "train")):
        MyMasks(tmp_path)
    (tmp_path / "val").write_text("not a folder")
    with pytest.raises(DatasetError, match=r"missing folder \(it is a file\)"):
        MyMasks(tmp_path, "val")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetError, match="no images found for split 'train' in "
                                           + str(tmp_path / "train")):
        MyMasks(tmp_path)


def test_missing_and_unreadable_files_are_named(tmp_path):
    _write(tmp_path, "train", 2)
    (tmp_path / "train" / "01.png").unlink()
    with pytest.raises(DatasetError, match="image 01.jpg has no mask: missing "
                                           + str(tmp_path / "train" / "01.png")):
        MyMasks(tmp_path)
    _write(tmp_path, "val", 1)
    image = tmp_path / "val" / "00.jpg"
    image.write_bytes(image.read_bytes()[:30])
    ds = MyMasks(tmp_path, "val")
    with pytest.raises(DatasetError, match=f"MyMasks: cannot read image {image}: "):
        ds[0]


def test_any_split_name_when_the_loader_lists_none(tmp_path):
    class AnySplit(MyMasks):
        splits = None

    _write(tmp_path, "train_2017", 1)
    assert len(AnySplit(tmp_path, "train_2017")) == 1
    for bad in ("a/b", "", 3):
        with pytest.raises(ValueError, match="split must be a name like 'train'"):
            AnySplit(tmp_path, bad)  # type: ignore[arg-type]


def test_loader_named():
    loaders = {"mine": MyMasks}
    assert loader_named(loaders, "MINE", "toy") is MyMasks
    with pytest.raises(ValueError, match=r"unknown toy data set 'other'; known: mine"):
        loader_named(loaders, "other", "toy")
