"""Training augmentation (nastk.data.augment): targets move with the image, checked on scenes
drawn here (a flip twice is the identity; fixations stay on the density map's maxima; boxes
stay on the drawn rectangles; no label value is invented), seeding across worker processes,
and the options' validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch.utils.data import Dataset

from nastk.data.augment import Augment, Augmented, TargetLayout, augmented_in, sample_seed
from nastk.data.images import pixels, resize_image
from nastk.data.loaders import make_loader
from nastk.data.loading import Loading

SALIENCY = TargetLayout(maps=("density",), points=("fixations",), points_on="density")
BOXES = TargetLayout(boxes="boxes", per_box=("labels", "iscrowd", "area"))
MASK = TargetLayout(mask=True, ignore_index=255)

DRAWS = [Augment(flip=0.5, scale=(0.5, 2.0)), Augment(flip=1.0, scale=(0.7, 0.7)),
         Augment(flip=0.0, scale=(1.6, 1.9)), Augment(flip=0.5, resized_crop=(0.2, 1.0))]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Items(Dataset):
    def __init__(self, samples: list) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        return self.samples[i]


def _saliency_sample(rng: np.random.Generator, hw=(30, 40), dens_hw=(60, 80)):
    """An image and a density map (finer than the image) with one Gaussian peak per fixation,
    the fixations at least 12 density pixels apart."""
    h, w = dens_hw
    points: list[tuple[int, int]] = []
    while len(points) < 4:
        r, c = int(rng.integers(4, h - 4)), int(rng.integers(4, w - 4))
        if all(max(abs(r - a), abs(c - b)) >= 12 for a, b in points):
            points.append((r, c))
    yy, xx = np.mgrid[0:h, 0:w]
    dens = sum(np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * 2.0 ** 2)) for r, c in points)
    image = torch.rand(3, *hw, generator=torch.Generator().manual_seed(int(rng.integers(1e6))))
    return image, {"density": torch.tensor(dens, dtype=torch.float32),
                   "fixations": torch.tensor(points, dtype=torch.int64)}


def _box_scene(rng: np.random.Generator, hw=(48, 64)):
    """An image of non-overlapping rectangles, each in its own colour (label = colour index)
    on black, and their boxes."""
    h, w = hw
    colours = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], np.float32)
    image = np.zeros((h, w, 3), np.float32)
    taken = np.zeros((h, w), bool)
    boxes, labels = [], []
    for k in range(4):
        for _ in range(50):
            bw, bh = int(rng.integers(6, 20)), int(rng.integers(6, 20))
            x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            if not taken[max(0, y0 - 1):y0 + bh + 1, max(0, x0 - 1):x0 + bw + 1].any():
                taken[y0:y0 + bh, x0:x0 + bw] = True
                image[y0:y0 + bh, x0:x0 + bw] = colours[k]
                boxes.append([x0, y0, x0 + bw, y0 + bh])
                labels.append(k)
                break
    b = torch.tensor(boxes, dtype=torch.float32)
    target = {"boxes": b, "labels": torch.tensor(labels),
              "iscrowd": torch.tensor([i % 2 == 0 for i in range(len(labels))]),
              "area": (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), "image_id": 7}
    return torch.from_numpy(image).permute(2, 0, 1).contiguous(), target, colours


def test_a_flip_twice_is_the_identity_for_every_target():
    rng = np.random.default_rng(0)
    flip = Augment(flip=1.0)
    x, sal = _saliency_sample(rng)
    once = Augmented(_Items([]), flip, SALIENCY).apply(x, sal, _gen(0))
    twice = Augmented(_Items([]), flip, SALIENCY).apply(*once, _gen(1))
    assert not torch.equal(once[0], x)
    assert torch.equal(twice[0], x)
    assert torch.equal(twice[1]["density"], sal["density"])
    assert torch.equal(twice[1]["fixations"], sal["fixations"])
    x, det, _ = _box_scene(rng)
    twice = Augmented(_Items([]), flip, BOXES).apply(
        *Augmented(_Items([]), flip, BOXES).apply(x, det, _gen(0)), _gen(1))
    assert torch.equal(twice[0], x)
    for key in ("boxes", "labels", "iscrowd", "area"):
        assert torch.equal(twice[1][key], det[key]), key
    mask = torch.from_numpy(rng.integers(0, 5, (10, 12)))
    aug = Augmented(_Items([]), flip, MASK)
    assert torch.equal(aug.apply(*aug.apply(torch.rand(3, 10, 12), mask, _gen(0)), _gen(1))[1],
                       mask)


@pytest.mark.parametrize("augment", DRAWS)
def test_fixations_stay_on_the_density_maxima(augment):
    rng = np.random.default_rng(1)
    kept_total = 0
    for seed in range(25):
        x, target = _saliency_sample(rng)
        out_x, out = Augmented(_Items([]), augment, SALIENCY).apply(x, target, _gen(seed))
        assert out_x.shape == x.shape and out["density"].shape == target["density"].shape
        dens = out["density"]
        for r, c in out["fixations"].tolist():
            kept_total += 1
            r0, c0 = max(0, r - 3), max(0, c - 3)
            patch = dens[r0:r + 4, c0:c + 4]
            pr, pc = divmod(int(patch.argmax()), patch.shape[1])
            # the map's peak near the moved fixation is within a pixel of it (a pixel doubled
            # by a zoom has two centres)
            assert max(abs(pr + r0 - r), abs(pc + c0 - c)) <= 1, (seed, r, c)
            assert dens[r, c] > 0.3 * float(dens.max())
    assert kept_total > 20


@pytest.mark.parametrize("augment", DRAWS)
def test_boxes_stay_on_the_drawn_rectangles_with_their_fields(augment):
    rng = np.random.default_rng(2)
    kept = dropped = 0
    for seed in range(25):
        x, target, colours = _box_scene(rng)
        a = augment.model_copy(update={"min_box": 3.0})
        out_x, out = Augmented(_Items([]), a, BOXES).apply(x, target, _gen(seed))
        n = len(out["boxes"])
        assert len(out["labels"]) == len(out["iscrowd"]) == len(out["area"]) == n
        assert out["image_id"] == 7
        dropped += len(target["boxes"]) - n
        for box, label, crowd, area in zip(out["boxes"], out["labels"], out["iscrowd"],
                                           out["area"], strict=True):
            kept += 1
            x0, y0, x1, y1 = box.tolist()
            assert 0 <= x0 < x1 <= x.shape[2] and 0 <= y0 < y1 <= x.shape[1]
            assert x1 - x0 >= 3 and y1 - y0 >= 3
            inner = out_x[:, int(np.ceil(y0)) + 1:int(y1) - 1, int(np.ceil(x0)) + 1:int(x1) - 1]
            colour = torch.from_numpy(colours[int(label)])[:, None, None]
            # the inside of the moved box is the rectangle's colour
            assert (inner - colour).abs().amax() < 0.05, (seed, box, label)
            original = int(torch.nonzero(target["labels"] == label)[0])
            assert bool(crowd) == bool(target["iscrowd"][original])
            assert float(area) == pytest.approx((x1 - x0) * (y1 - y0), rel=1e-4)
    assert kept > 30
    if augment.scale and augment.scale[0] > 1.5:
        assert dropped > 0  # a zoom crops rectangles out


@pytest.mark.parametrize("augment", DRAWS)
def test_no_label_value_is_invented(augment):
    rng = np.random.default_rng(3)
    values = torch.tensor([0, 3, 7, 255])
    for seed in range(10):
        mask = values[torch.from_numpy(rng.integers(0, 4, (24, 32)))]
        _, out = Augmented(_Items([]), augment, MASK).apply(torch.rand(3, 24, 32), mask,
                                                            _gen(seed))
        assert out.dtype == mask.dtype and out.shape == mask.shape
        assert set(out.unique().tolist()) <= {0, 3, 7, 255}


def test_scale_below_one_pads_with_the_ignore_label_and_black():
    mask = torch.zeros(20, 20, dtype=torch.long)
    x, out = Augmented(_Items([]), Augment(flip=0, scale=(0.5, 0.5)), MASK).apply(
        torch.ones(3, 20, 20), mask, _gen(0))
    assert (out == 255).float().mean() == pytest.approx(0.75, abs=0.05)
    assert (out == 0).float().mean() == pytest.approx(0.25, abs=0.05)
    assert float(x.mean()) == pytest.approx(0.25, abs=0.05)


def test_file_levels_are_cropped_as_levels_and_match_the_float_path():
    rng = np.random.default_rng(4)
    rgb = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    x = resize_image(pixels(rgb), (30, 40))
    aug = Augmented(_Items([]), Augment(flip=1.0, scale=(0.8, 1.3)), TargetLayout())
    a, _ = aug.apply(x, 0, _gen(5))
    b, _ = aug.apply(x.clone(), 0, _gen(5))  # a clone has no levels: the float path
    assert getattr(a, "_nastk_levels", None) is not None
    assert (a - b).abs().max() <= 1.5 / 255


def test_colour_jitter_changes_the_image_only_and_stays_in_range():
    x = torch.rand(3, 16, 16, generator=_gen(0))
    mask = torch.randint(0, 3, (16, 16), generator=_gen(1))
    a = Augment(flip=0, jitter={"brightness": 0.4, "contrast": 0.4, "saturation": 0.4})
    out_x, out = Augmented(_Items([]), a, MASK).apply(x, mask, _gen(2))
    assert torch.equal(out, mask)
    assert not torch.allclose(out_x, x)
    assert 0.0 <= float(out_x.min()) and float(out_x.max()) <= 1.0
    saturation = Augment(flip=0, jitter={"saturation": 0.9})
    grey = x.mean(0, keepdim=True).expand(3, -1, -1).contiguous()  # no colour to change
    out_grey, _ = Augmented(_Items([]), saturation, MASK).apply(grey, mask, _gen(3))
    assert torch.allclose(out_grey, grey, atol=1e-6)


def test_read_outside_a_loader_the_samples_are_unchanged():
    samples = [(torch.rand(3, 8, 8), torch.randint(0, 3, (8, 8))) for _ in range(3)]
    aug = Augmented(_Items(samples), Augment(flip=1.0, scale=(0.5, 2.0)), MASK)
    assert torch.equal(aug[1][0], samples[1][0]) and torch.equal(aug[1][1], samples[1][1])
    with sample_seed(11):
        moved = aug[1]
    assert not torch.equal(moved[0], samples[1][0])
    assert augmented_in(torch.utils.data.Subset(aug, [0, 1]))


class _Task:
    """The least a loader needs of a task, with the loading options given."""

    def __init__(self, workers: int) -> None:
        self.loading = Loading(workers=workers, persistent=False)

    def collate(self, samples):
        return torch.utils.data.default_collate(samples)


def _batches(dataset: Dataset, workers: int, seed: int = 3, passes: int = 2) -> list:
    gen = torch.Generator().manual_seed(seed)
    loader = make_loader(_Task(workers), dataset, 4, shuffle=True, generator=gen)
    return [[(x.clone(), y.clone()) for x, y in loader] for _ in range(passes)]


def test_worker_processes_draw_the_same_augmentations_and_every_pass_draws_anew():
    samples = [(torch.rand(3, 12, 12, generator=_gen(i)), torch.randint(0, 4, (12, 12),
                                                                     generator=_gen(100 + i)))
               for i in range(10)]
    aug = Augmented(_Items(samples), Augment(flip=0.5, scale=(0.5, 2.0),
                                             jitter={"brightness": 0.3}), MASK)
    inline = _batches(aug, 0)
    workers = _batches(aug, 2)
    for pass_a, pass_b in zip(inline, workers, strict=True):
        for (xa, ya), (xb, yb) in zip(pass_a, pass_b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # the two passes draw differently; the same seed draws the same again
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(inline[0], inline[1], strict=True))
    again = _batches(aug, 0)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(inline[0], again[0], strict=True))


@pytest.mark.parametrize(("options", "words"), [
    ({"flip": 1.5}, "flip"),
    ({"scale": [2.0, 1.0]}, "augment.scale"),
    ({"scale": [0.0, 1.0]}, "augment.scale"),
    ({"resized_crop": [0.1, 1.5]}, "augment.resized_crop"),
    ({"resized_crop": [0.1, 1.0], "scale": [0.5, 2.0]}, "not both"),
    ({"ratio": [2.0, 1.0]}, "augment.ratio"),
    ({"jitter": {"brightness": 1.2}}, "brightness"),
    ({"jitter": {"hue": 0.1}}, "hue"),
    ({"rotate": 10}, "rotate"),
])
def test_bad_options_name_the_field(options, words):
    with pytest.raises(ValidationError, match=words):
        Augment(**options)


def test_a_flip_keeps_a_density_maps_file_levels():
    from nastk.data.images import from_levels, kept_levels

    levels = torch.randint(0, 256, (12, 16), dtype=torch.uint8, generator=_gen(0))
    target = {"density": from_levels(levels), "fixations": torch.tensor([[2, 3]])}
    aug = Augmented(_Items([]), Augment(flip=1.0), SALIENCY)
    _, out = aug.apply(torch.rand(3, 6, 8), target, _gen(1))
    assert torch.equal(kept_levels(out["density"]), levels.flip(-1))
    assert torch.equal(out["density"], levels.flip(-1).float() / 255)
    assert out["fixations"].tolist() == [[2, 12]]


def test_a_folder_sample_is_cut_from_the_file_at_its_own_resolution(tmp_path):
    """Scale-and-crop by 2 on a folder read at a quarter of its files' size: the image is the
    window cut from the file's pixels and resized once (not the resized image zoomed), and the
    mask is cut from the label file by the same window, so the two stay aligned."""
    import torch.nn.functional as F

    from nastk.data.augment import _crop_window
    from nastk.data.images import read_grey, read_rgb
    from nastk.data.sample_folders import write_cityscapes
    from nastk.tasks.segmentation import SegmentationTask

    root = write_cityscapes(tmp_path, (4, 1), size=(64, 128))
    augment = Augment(flip=0.0, scale=(2.0, 2.0))
    task = SegmentationTask(dataset="cityscapes", root=root, size=(16, 32), augment=augment,
                            holdout_fraction=0.25)
    train = task.splits()["train"]
    folder = train.dataset.dataset
    index = train.dataset.indices[0]
    with sample_seed(5):
        x, mask = train[0]
    window = _crop_window((16, 32), augment, _gen(5))
    y0, x0, y1, x1 = window.pixels(64, 128)
    image_path, label_path = folder.items[index]
    pixels_ = torch.from_numpy(read_rgb(image_path)).permute(2, 0, 1)[:, y0:y1, x0:x1]
    expected = F.interpolate(pixels_[None].contiguous(), size=(16, 32), mode="bilinear",
                             align_corners=False, antialias=True)[0].float() / 255
    assert torch.equal(x, expected)
    ids = folder._map_label(read_grey(label_path), label_path)[y0:y1, x0:x1]
    expected_mask = F.interpolate(torch.from_numpy(ids)[None, None].float(), size=(16, 32),
                                  mode="nearest")[0, 0].long()
    assert torch.equal(mask, expected_mask)
    # the zoomed-in window holds more of the file's detail than the zoomed resized image
    zoomed = Augmented(folder, augment, TargetLayout(mask=True)).apply(
        *folder[index], _gen(5))[0]
    assert not torch.equal(zoomed, x)
