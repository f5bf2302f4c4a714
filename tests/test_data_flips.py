"""Target-aware flips (nastk/data/flips.py): each kind of target checked against the flipped
image itself (a box is the box of the flipped object's pixels, a fixation lands on the
flipped bright pixel), and the flip as a transform of the segmentation and detection loaders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nastk.data.flips import RandomHFlip, hflip
from nastk.tasks.detection.datasets import CocoDetection
from nastk.tasks.segmentation.datasets import CamVid


def _box_of(mask: torch.Tensor) -> list[float]:
    """xyxy (continuous pixel coordinates) of the nonzero pixels of a 2-D mask."""
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def test_boxes_follow_the_pixels():
    image = torch.zeros(3, 8, 12)
    image[0, 1:4, 2:5] = 1.0  # object 0
    image[1, 5:8, 9:12] = 1.0  # object 1, touching the right border
    target = {"boxes": torch.tensor([_box_of(image[0] > 0), _box_of(image[1] > 0)]),
              "labels": torch.tensor([3, 7]), "area": torch.tensor([9.0, 9.0]),
              "image_id": torch.tensor(4)}
    x, t = hflip(image, target)
    assert torch.equal(x, image.flip(-1))
    assert t["boxes"].tolist() == [_box_of(x[0] > 0), _box_of(x[1] > 0)]
    assert t["boxes"].tolist() == [[7.0, 1.0, 10.0, 4.0], [0.0, 5.0, 3.0, 8.0]]
    for key in ("labels", "area", "image_id"):
        assert t[key] is target[key]
    assert target["boxes"].tolist()[0] == [2.0, 1.0, 5.0, 4.0]  # the input is left alone
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    assert hflip(image, empty)[1]["boxes"].shape == (0, 4)


def test_masks_maps_and_labels():
    image = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    mask = torch.arange(15).reshape(3, 5)
    x, m = hflip(image, mask)
    assert torch.equal(x, image.flip(-1)) and m[:, 0].tolist() == [4, 9, 14]
    assert hflip(image, 3)[1] == 3
    label = torch.tensor(2)
    assert hflip(image, label)[1] is label
    masks = torch.zeros(2, 3, 5, dtype=torch.bool)
    masks[1, 0, 0] = True
    _, t = hflip(image, {"masks": masks, "mask": mask, "name": "kept"})
    assert bool(t["masks"][1, 0, 4]) and int(t["masks"].sum()) == 1
    assert torch.equal(t["mask"], mask.flip(-1)) and t["name"] == "kept"


def test_fixations_land_on_the_flipped_pixel():
    image = torch.zeros(3, 6, 9)
    density = torch.zeros(4, 7)  # a ground truth at its own resolution
    density[2, 1] = density[0, 6] = 1.0
    fix = torch.tensor([[2, 1], [0, 6]])
    _, t = hflip(image, {"density": density, "fixations": fix})
    assert all(t["density"][r, c] == 1.0 for r, c in t["fixations"].tolist())
    assert t["fixations"].tolist() == [[2, 5], [0, 0]]
    # without a density map the points index the image
    image[0, 3, 8] = 1.0
    x, t = hflip(image, {"fixations": torch.tensor([[3, 8]])})
    (r, c), = t["fixations"].tolist()
    assert x[0, r, c] == 1.0 and (r, c) == (3, 0)
    assert fix.tolist() == [[2, 1], [0, 6]]


def test_random_flip_on_the_segmentation_loader(tmp_path: Path):
    for split in ("train", "trainannot"):
        (tmp_path / split).mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "train" / "a.png")
    Image.fromarray(np.tile(np.arange(8, dtype=np.uint8), (6, 1))).save(
        tmp_path / "trainannot" / "a.png")
    plain = CamVid(tmp_path, size=(3, 4))[0]
    flipped = CamVid(tmp_path, size=(3, 4), transform=RandomHFlip(p=1.0))[0]
    assert torch.equal(flipped[0], plain[0].flip(-1))
    assert torch.equal(flipped[1], plain[1].flip(-1))
    # the mask's columns 0..7 resized to 4 by nearest neighbour (0, 2, 4, 6), then mirrored
    assert flipped[1][0].tolist() == [6, 4, 2, 0]


def test_random_flip_on_the_detection_loader(tmp_path: Path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "train2017").mkdir()
    Image.fromarray(np.zeros((10, 20, 3), dtype=np.uint8)).save(tmp_path / "train2017" / "1.jpg")
    coco = {"images": [{"id": 1, "file_name": "1.jpg", "width": 20, "height": 10}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "bbox": [2.0, 1.0, 5.0, 4.0]}]}
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(coco))
    _, t = CocoDetection(tmp_path, size=(5, 10), transform=RandomHFlip(p=1.0))[0]
    # resized by half, then mirrored in the 10 pixel wide image: x1 = 10 - 3.5
    assert t["boxes"].tolist() == [[6.5, 0.5, 9.0, 2.5]]
    assert t["area"].tolist() == [5.0]


def test_random_flip_is_seeded():
    x = torch.zeros(1, 1, 4)
    x[..., 0] = 1.0

    def draws(seed: int) -> list[bool]:
        flip = RandomHFlip(p=0.3, seed=seed)
        return [bool(flip(x, 0)[0][..., -1] == 1.0) for _ in range(300)]

    a = draws(1)
    assert a == draws(1) and a != draws(2) and 0.2 < np.mean(a) < 0.4
    assert all(draws(0)) is False and repr(RandomHFlip(0.3, 1)) == "RandomHFlip(p=0.3, seed=1)"
