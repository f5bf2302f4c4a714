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

__all__ = ["COCO_CATEGORIES", "write_cityscapes", "write_coco", "write_imagefolder",
           "write_salicon"]

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


def _shape_mask(shape: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Shape number ``shape`` (mod 8) on coordinates ``u``, ``v`` in units of its half-size."""
    inside = np.maximum(np.abs(u), np.abs(v)) <= 1.0
    r = np.sqrt(u**2 + v**2)
    masks = (inside,  # square
             r <= 1.0,  # disc
             inside & (np.abs(u) <= (v + 1.0) / 2.0),  # triangle
             np.abs(u) + np.abs(v) <= 1.0,  # diamond
             inside & ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3)),  # cross
             (r <= 1.0) & (r >= 0.5),  # ring
             inside & (np.floor((v + 1.0) * 2.5) % 2 == 0),  # horizontal bars
             inside & (np.floor((u + 1.0) * 2.5) % 2 == 0))  # vertical bars
    return masks[shape % len(masks)]


def _class_colour(index: int, n_classes: int) -> np.ndarray:
    """A saturated RGB colour of its own for class ``index`` (hues evenly spaced)."""
    hue = index / max(n_classes, 1)
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    return 230.0 - 200.0 * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def write_imagefolder(root: str | Path, classes: int | Sequence[str] = 4,
                      per_class: int | Sequence[int] = 8, size: int | tuple[int, int] = 32,
                      seed: int = 0, val: bool = True) -> Path:
    """The ImageNet folder layout, ``train/<class>/<class>_<i>.JPEG`` and (with ``val``)
    ``val/<class>/ILSVRC2012_val_<n>.JPEG``, for the classification task's ``dataset:
    imagefolder``: ``classes`` (a number, named ``n00000000``, ``n00000001``, ... like
    ImageNet's WordNet ids, or the names) with ``per_class`` train images each (and a quarter as
    many val ones), or ``(train, val)``, of ``size`` (an int or ``(height, width)``).

    Every image of a class shows the class's own shape (one of eight) in the class's own
    colour, at a random place and scale, on a random grey gradient with pixel noise: a small
    network learns them in an epoch or two."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    names = ([f"n{i:08d}" for i in range(classes)] if isinstance(classes, int)
             else [str(c) for c in classes])
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"classes must be a positive number or distinct names, got {classes!r}")
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    counts = _counts(per_class)
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    val_number = 1
    for split, count in zip(("train", "val"), counts, strict=True):
        if split == "val" and not val:
            break
        for c, name in enumerate(names):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = _class_colour(c, len(names))
            for i in range(count):
                grey = rng.uniform(70, 180, 2)
                image = (grey[0] * (1 - t) + grey[1] * t) * np.ones((h, w, 3), np.float32)
                half = rng.uniform(0.25, 0.4) * min(h, w)
                cy = rng.uniform(half, h - half)
                cx = rng.uniform(half, w - half)
                mask = _shape_mask(c, (xs - cx) / half, (ys - cy) / half)
                image[mask] = colour + rng.normal(0.0, 8.0, 3)
                image += rng.normal(0.0, 6.0, (h, w, 1))
                pixels = np.clip(image, 0, 255).astype(np.uint8)
                if split == "train":
                    file = folder / f"{name}_{i}.JPEG"
                else:
                    file = folder / f"ILSVRC2012_val_{val_number:08d}.JPEG"
                    val_number += 1
                Image.fromarray(pixels).save(file, format="JPEG", quality=92)
    return root


#: the Pascal VOC class names :func:`write_voc` draws its objects from
VOC_SAMPLE_CLASSES = ("person", "car", "dog", "cat")


def write_voc(root: str | Path,
              n: dict[str, dict[str, int]] | None = None,
              size: tuple[int, int] = (375, 500), seed: int = 0) -> Path:
    """A ``VOCdevkit`` folder at ``root``: ``VOC<year>/JPEGImages/<id>.jpg``,
    ``Annotations/<id>.xml`` (``<size>``, one ``<object>`` per rectangle with ``name``,
    ``difficult`` 0 and a 1-based inclusive ``bndbox``) and ``ImageSets/Main/<split>.txt``.
    ``n`` gives the image count per year and split, by default the VOC07+12 layout in small:
    ``{"2007": {"trainval": 8, "test": 4}, "2012": {"trainval": 8}}``; a ``trainval`` set is
    also written as ``train.txt`` (its first half) and ``val.txt`` (the rest), as in the real
    copies. Ids are ``000001``... for 2007 (the test images follow the trainval ones) and
    ``<year>_000001``... for later years. Every image also has its segmentation label,
    ``SegmentationClass/<id>.png`` (a palette PNG of VOC class indices: the rectangles on the
    background, 0, with a 1-pixel border of 255 around each), listed in
    ``ImageSets/Segmentation/<split>.txt`` like ``Main``'s, so that the VOC2012 folder is also
    a segmentation copy. Returns ``root`` (the task's ``root``)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    counts = n if n is not None else {"2007": {"trainval": 8, "test": 4},
                                      "2012": {"trainval": 8}}
    for year, splits in counts.items():
        voc = root / f"VOC{year}"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "SegmentationClass",
                    "ImageSets/Segmentation"):
            (voc / sub).mkdir(parents=True, exist_ok=True)
        number = 0
        for split, count in splits.items():
            ids = []
            for _ in range(int(count)):
                number += 1
                image_id = f"{number:06d}" if year == "2007" else f"{year}_{number:06d}"
                scene = _scene(rng, h, w, len(VOC_SAMPLE_CLASSES), n_objects=2)
                Image.fromarray(scene.image).save(voc / "JPEGImages" / f"{image_id}.jpg",
                                                  quality=90)
                objects = "".join(
                    f"<object><name>{VOC_SAMPLE_CLASSES[cls]}</name><pose>Unspecified</pose>"
                    f"<truncated>0</truncated><difficult>0</difficult><bndbox>"
                    f"<xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax>"
                    f"<ymax>{y1}</ymax></bndbox></object>"
                    for cls, x0, y0, x1, y1 in scene.boxes)
                (voc / "Annotations" / f"{image_id}.xml").write_text(
                    f"<annotation><folder>VOC{year}</folder><filename>{image_id}.jpg"
                    f"</filename><size><width>{w}</width><height>{h}</height><depth>3</depth>"
                    f"</size><segmented>0</segmented>{objects}</annotation>")
                _voc_label(h, w, scene.boxes).save(voc / "SegmentationClass" / f"{image_id}.png")
                ids.append(image_id)
            lists = {split: ids}
            if split == "trainval":
                half = (len(ids) + 1) // 2
                lists.update(train=ids[:half], val=ids[half:])
            for name, listed in lists.items():
                for kind in ("Main", "Segmentation"):
                    (voc / "ImageSets" / kind / f"{name}.txt").write_text(
                        "".join(f"{i}\n" for i in listed))
    return root


#: VOC class index of each of :data:`VOC_SAMPLE_CLASSES` (background is 0)
_VOC_INDEX = {"person": 15, "car": 7, "dog": 12, "cat": 8}


def _voc_label(h: int, w: int, boxes: list[tuple[int, int, int, int, int]]) -> Image.Image:
    """A VOC segmentation label: palette PNG of class indices, 255 on the objects' borders."""
    label = np.zeros((h, w), np.uint8)
    for cls, x0, y0, x1, y1 in boxes:
        label[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = 255
        label[y0:y1, x0:x1] = _VOC_INDEX[VOC_SAMPLE_CLASSES[cls]]
    img = Image.fromarray(label, mode="P")
    palette = []
    for i in range(256):  # VOC's colour map: the index's bits spread over R, G, B
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    img.putpalette(palette)
    return img


__all__ += ["VOC_SAMPLE_CLASSES", "write_voc"]
