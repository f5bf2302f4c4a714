"""Folders in the exact layouts of real data sets, filled with generated scenes: to try a
config for Cityscapes, SALICON or COCO before the real copy is at hand, and for the tests and
the loading benchmark (``benchmarks/data_throughput.py``).

Each scene is a smooth background with a few filled rectangles of random classes and colours,
plus pixel noise (so that the files compress, and decode, about as real photographs do). The
annotations follow the scene: Cityscapes label ids paint the rectangles over the road's id;
SALICON's fixations (the 2015 JSON file, 1-based ``[y, x]``) fall near the rectangles' centres
with a grey density map blurred around them; COCO's boxes are the rectangles, in pixels of the
written image. Every writer returns the root to give the task's ``root`` option.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["COCO_CATEGORIES", "write_cityscapes", "write_coco", "write_salicon"]

#: Cityscapes label ids used for the rectangles (car, person, building, vegetation, sky...)
_CITYSCAPES_IDS = (11, 17, 21, 23, 24, 26)
_CITYSCAPES_ROAD = 7


@dataclass
class _Scene:
    image: np.ndarray  # H x W x 3 uint8
    boxes: list[tuple[int, int, int, int, int]]  # (class index, x0, y0, x1, y1), exclusive


def _scene(rng: np.random.Generator, height: int, width: int, n_classes: int,
           n_objects: int = 4) -> _Scene:
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    top, bottom = rng.uniform(40, 215, 3), rng.uniform(40, 215, 3)
    image = top * (1 - y) + bottom * y + 20.0 * np.sin(6.0 * x + rng.uniform(0, 6))
    boxes = []
    for _ in range(n_objects):
        w = int(rng.integers(max(2, width // 10), max(3, width // 3)))
        h = int(rng.integers(max(2, height // 10), max(3, height // 3)))
        x0, y0 = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
        cls = int(rng.integers(0, n_classes))
        image[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 255, 3)
        boxes.append((cls, x0, y0, x0 + w, y0 + h))
    noise = rng.normal(0.0, 6.0, (height, width, 1)).astype(np.float32)
    return _Scene(np.clip(image + noise, 0, 255).astype(np.uint8), boxes)


def _counts(n: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(n, int):
        return n, max(1, n // 4)
    train, val = n
    return int(train), int(val)


def write_cityscapes(root: str | Path, n: int | Sequence[int] = 8,
                     size: tuple[int, int] = (1024, 2048), seed: int = 0) -> Path:
    """``leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png`` and
    ``gtFine/{train,val}/<city>/<name>_gtFine_labelIds.png`` (label ids 0..33): ``n`` train
    images (and a quarter as many val ones), or ``(train, val)``, of ``size`` (H, W)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    for split, count in zip(("train", "val"), _counts(n), strict=True):
        images = root / "leftImg8bit" / split / "aachen"
        labels = root / "gtFine" / split / "aachen"
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            scene = _scene(rng, h, w, len(_CITYSCAPES_IDS))
            ids = np.full((h, w), _CITYSCAPES_ROAD, np.uint8)
            for cls, x0, y0, x1, y1 in scene.boxes:
                ids[y0:y1, x0:x1] = _CITYSCAPES_IDS[cls]
            name = f"aachen_{i:06d}_000019"
            Image.fromarray(scene.image).save(images / f"{name}_leftImg8bit.png")
            Image.fromarray(ids).save(labels / f"{name}_gtFine_labelIds.png")
    return root


def _density(points: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    """A grey map (0..255) of Gaussians at 0-based ``[y, x]`` points, computed separably."""
    ys, xs = np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32)
    out = np.zeros((h, w), np.float32)
    for py, px in points:
        out += np.exp(-((ys - py) ** 2) / (2 * sigma**2))[:, None] * np.exp(
            -((xs - px) ** 2) / (2 * sigma**2))[None, :]
    peak = float(out.max())
    return (out / peak * 255.0 if peak > 0 else out).astype(np.uint8)


def write_salicon(root: str | Path, n: int | Sequence[int] = 8,
                  size: tuple[int, int] = (480, 640), seed: int = 0,
                  observers: int = 5, fixations_per_observer: int = 6) -> Path:
    """``images/{train,val}/COCO_<split>2014_<id>.jpg``, ``maps/{train,val}/<same>.png`` and
    the 2015 fixation files ``annotations/fixations_{train,val}2014.json`` (1-based ``[y,
    x]`` per observer) for ``n`` train images (and a quarter as many val ones)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    for split, count in zip(("train", "val"), _counts(n), strict=True):
        images, maps = root / "images" / split, root / "maps" / split
        images.mkdir(parents=True, exist_ok=True)
        maps.mkdir(parents=True, exist_ok=True)
        entries, annotations = [], []
        for i in range(count):
            scene = _scene(rng, h, w, 3)
            name = f"COCO_{split}2014_{i:012d}"
            centres = np.array([((y0 + y1) / 2, (x0 + x1) / 2)
                                for _, x0, y0, x1, y1 in scene.boxes], np.float64)
            all_points = []
            for observer in range(observers):
                pick = centres[rng.integers(0, len(centres), fixations_per_observer)]
                pts = np.clip(pick + rng.normal(0, min(h, w) / 40, pick.shape),
                              0, [h - 1, w - 1])
                all_points.append(pts)
                annotations.append({"image_id": i, "worker_id": observer,
                                    "fixations": (np.round(pts) + 1).astype(int).tolist()})
            Image.fromarray(scene.image).save(images / f"{name}.jpg", quality=90)
            Image.fromarray(_density(np.concatenate(all_points), h, w, min(h, w) / 25)).save(
                maps / f"{name}.png")
            entries.append({"id": i, "file_name": f"{name}.jpg", "width": w, "height": h})
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"fixations_{split}2014.json").write_text(
            json.dumps({"images": entries, "annotations": annotations}))
    return root


#: the categories :func:`write_coco` writes (COCO's ids for them)
COCO_CATEGORIES = ({"id": 1, "name": "person"}, {"id": 3, "name": "car"},
                   {"id": 18, "name": "dog"})


def write_coco(root: str | Path, n: int | Sequence[int] = 8,
               size: tuple[int, int] = (480, 640), seed: int = 0) -> Path:
    """``train2017/``, ``val2017/`` JPEGs and ``annotations/instances_{train,val}2017.json``
    (boxes ``[x, y, width, height]`` in pixels, three categories, no crowd regions) for ``n``
    train images (and a quarter as many val ones)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, count in zip(("train", "val"), _counts(n), strict=True):
        folder = root / f"{split}2017"
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(count):
            image_id = i + 1 + (0 if split == "train" else 100000)
            scene = _scene(rng, h, w, len(COCO_CATEGORIES))
            name = f"{image_id:012d}.jpg"
            Image.fromarray(scene.image).save(folder / name, quality=90)
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
            for cls, x0, y0, x1, y1 in scene.boxes:
                annotations.append({"id": ann_id, "image_id": image_id,
                                    "category_id": COCO_CATEGORIES[cls]["id"],
                                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                                    "area": float((x1 - x0) * (y1 - y0)), "iscrowd": 0})
                ann_id += 1
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(
            {"images": images, "annotations": annotations,
             "categories": list(COCO_CATEGORIES)}))
    return root
