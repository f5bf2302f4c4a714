"""Loaders for local copies of real object-detection data sets (nothing is downloaded).

Every loader is a :class:`~nastk.data.folders.FolderDataset` of ``(image, target)`` pairs:
``image`` a ``float32`` tensor ``[3, H, W]`` in [0, 1]; ``target`` a dict of tensors (``k``
objects, may be 0: then ``boxes`` is ``[0, 4]`` and the others ``[0]``, with the same dtypes):

- ``"boxes"``: ``float32 [k, 4]`` xyxy in continuous pixel coordinates of the returned
  (resized) image: ``(0, 0)`` is the top-left corner of the top-left pixel, the width is
  ``x2 - x1`` (no ``+ 1``);
- ``"labels"``: ``int64 [k]`` in ``0..num_classes - 1`` (names: :attr:`class_names`);
- ``"iscrowd"``: ``bool [k]``, COCO crowd regions (kept as ignore regions; always False for
  VOC);
- ``"difficult"``: ``bool [k]``, VOC ``difficult`` objects (always False for COCO);
- ``"area"``: ``float32 [k]``, COCO: the annotation's ``area`` (the segment's area; the box
  area where the field is absent), VOC: the box area — scaled by ``sx * sy`` of the resize;
- ``"orig_area"``: ``float32 [k]``, the same area in pixels of the original image (not
  scaled): what COCO's small / medium / large ranges (32², 96²) are defined on;
- ``"scale"``: ``float32 [2]``, ``(sx, sy)``, returned pixels per original pixel (``(1, 1)``
  when the image is not resized): the evaluation divides box areas by ``sx * sy`` to classify
  detections by size in original pixels (:mod:`nastk.tasks.detection.metrics`);
- ``"image_id"``: ``int64`` scalar (COCO: the JSON image id; VOC: see :class:`VocDetection`).

``size`` (None, an int for a square, or ``(height, width)``) resizes every image bilinearly
(antialiased, ``align_corners=False``) and scales the boxes by ``sx = W' / W`` horizontally and
``sy = H' / H`` vertically (the area by ``sx * sy``), so boxes stay on the same content;
``None`` keeps the native size. ``transform(image, target)`` runs last (e.g.
:class:`nastk.data.flips.RandomHFlip`, which mirrors the boxes too).

- :class:`CocoDetection`: ``annotations/instances_<split><year>.json`` + ``<split><year>/``
  (or ``images/<split><year>/``); category ids map to labels ``0..C-1`` in ascending id order;
- :class:`VocDetection`: ``VOC<year>/`` with ``Annotations/*.xml``, ``JPEGImages/*.jpg`` and
  ``ImageSets/Main/<split>.txt``; the 20 :data:`VOC_CLASSES`.

All annotations are read and checked when a data set is created, so problems surface before
training. Folder problems, missing or malformed annotation files, an image that the
annotations reference but that is missing, unknown class names / category ids and unreadable
image files raise a :class:`DatasetError` that names the file (and the annotation) and shows
the expected layout. Boxes (xyxy, after the VOC conversion) on a ``W x H`` image follow this
rule, with the *overshoot* ``d = max(-x1, -y1, x2 - W, y2 - H)``:

1. a coordinate that is not a finite number, or a COCO ``bbox`` that is not 4 numbers, is an
   error (a malformed file);
2. a box with zero or negative width or height is **dropped** (degenerate);
3. ``d <= 1`` (a box overshooting its image by at most one pixel, common in COCO): the box is
   **clipped** to the image silently — and dropped if clipping leaves zero width or height;
4. ``d > 1`` and the box still overlaps the image: the box is **dropped**;
5. ``d > 1`` and the box does not overlap the image at all (it lies outside by at least its
   own width or height): an **error** — such boxes come from a wrong coordinate format or a
   wrong image, not from annotation noise.

Dropped boxes are reported by ONE :class:`DatasetWarning` per data set, naming how many were
dropped, the annotation file(s) and the first offending file and annotation. An image whose
boxes were all dropped is kept with an empty target; images without annotations are kept.
:func:`load_dataset` picks a loader by name; :func:`collate_detection` batches items.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import xml.etree.ElementTree as ET
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from nastk.data.folders import DatasetError, FolderDataset, Transform, loader_named
from nastk.data.images import Size

__all__ = [
    "CLASS_NAMES",
    "DETECTION_DATASETS",
    "OVERSHOOT_TOLERANCE",
    "VOC_CLASSES",
    "CocoDetection",
    "DatasetError",
    "DatasetWarning",
    "DetectionFolder",
    "VocDetection",
    "collate_detection",
    "load_dataset",
    "voc_year_folder",
]

Target = dict[str, torch.Tensor]

#: pixels a box may overshoot its image by and still be clipped silently (rule 3)
OVERSHOOT_TOLERANCE = 1.0

#: the 20 Pascal VOC classes in the standard order (label = index)
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

#: loader name -> fixed class names (COCO's come from its annotation file: ``class_names``)
CLASS_NAMES: dict[str, tuple[str, ...]] = {"voc": VOC_CLASSES}


class DatasetWarning(UserWarning):
    """Boxes of a data set were dropped (degenerate, or outside their image)."""




def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# box verdicts of _check_boxes
_OK, _DEGENERATE, _CLIPPED_AWAY, _OUTSIDE, _FATAL = 0, 1, 2, 3, 4
_REASONS = {
    _DEGENERATE: "zero or negative width or height",
    _CLIPPED_AWAY: "zero width or height once clipped to the image",
    _OUTSIDE: f"more than {OVERSHOOT_TOLERANCE:g} px outside the image",
}


def _check_boxes(xyxy: np.ndarray, wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The module's box rule, vectorised: ``(clipped boxes [N, 4], verdicts [N])`` for boxes
    ``xyxy`` (float64 ``[N, 4]``) on images of sizes ``wh`` (``[N, 2]``: width, height)."""
    xyxy = xyxy.reshape(-1, 4).astype(np.float64)
    w, h = wh[:, 0].astype(np.float64), wh[:, 1].astype(np.float64)
    x1, y1, x2, y2 = xyxy.T
    verdict = np.full(len(xyxy), _OK, dtype=np.int64)
    degenerate = (x2 - x1 <= 0) | (y2 - y1 <= 0)
    overshoot = np.max(np.stack([-x1, -y1, x2 - w, y2 - h], axis=1), axis=1, initial=-np.inf)
    far = overshoot > OVERSHOOT_TOLERANCE
    apart = (x2 <= 0) | (x1 >= w) | (y2 <= 0) | (y1 >= h)
    clipped = np.stack([np.clip(x1, 0, w), np.clip(y1, 0, h), np.clip(x2, 0, w),
                        np.clip(y2, 0, h)], axis=1)
    empty = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    verdict[~degenerate & ~far & empty] = _CLIPPED_AWAY
    verdict[~degenerate & far & ~apart] = _OUTSIDE
    verdict[~degenerate & far & apart] = _FATAL
    verdict[degenerate] = _DEGENERATE
    return clipped, verdict


def _fmt_box(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(c):g}" for c in box) + "]"


@dataclass
class _Record:
    """One image and its (checked) annotations, coordinates at the native resolution."""

    image: Path
    image_id: int
    width: int
    height: int
    boxes: np.ndarray  # float64 [k, 4] xyxy
    labels: np.ndarray  # int64 [k]
    iscrowd: np.ndarray  # bool [k]
    difficult: np.ndarray  # bool [k]
    area: np.ndarray  # float64 [k]


@dataclass
class _Boxes:
    """Annotations of a whole data set gathered for one vectorised check."""

    record: list[int]  # the record (image) index of each box
    xyxy: list[tuple[float, float, float, float]]
    label: list[int]
    iscrowd: list[bool]
    difficult: list[bool]
    area: list[float]  # NaN: the box area (filled in after clipping)
    where: list[str]  # "annotation id 7 of image a.jpg in instances.json" (for messages)


class DetectionFolder(FolderDataset):
    """Shared logic of the detection folder loaders: the records and the box rule, the boxes
    resized with their image (reading and resizing the image and the folder errors are
    :class:`~nastk.data.folders.FolderDataset`'s).

    A subclass sets :attr:`layout` (the expected folder tree, shown in errors) and fills
    the records in :meth:`_load`, returning the records (boxes still unchecked, in a
    :class:`_Boxes`) and the annotation file named in the dropped-box warning.
    """

    splits: ClassVar[tuple[str, ...] | None] = None
    _class_names: tuple[str, ...] = ()

    def _find_items(self) -> list[_Record]:
        records, boxes, self._source = self._load()
        return self._attach(records, boxes, self._source)

    def _listing(self) -> Path:
        return self._source

    # -- to be provided by subclasses ---------------------------------------------------------
    @abstractmethod
    def _load(self) -> tuple[list[_Record], _Boxes, Path]:
        """Records (with empty box arrays), all their boxes, and the annotation source."""

    # -- public helpers -----------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        """Class name of each label ``0..num_classes - 1``."""
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self._class_names)

    def _repr_fields(self) -> dict[str, Any]:
        return {"images": len(self.items), "classes": self.num_classes}

    # -- checking -----------------------------------------------------------------------------
    def _attach(self, records: list[_Record], boxes: _Boxes, source: Path) -> list[_Record]:
        """Apply the box rule to all boxes and store the kept ones in their records; one
        warning for the dropped ones, an error for the first fatal one."""
        n = len(boxes.xyxy)
        xyxy = np.asarray(boxes.xyxy, dtype=np.float64).reshape(n, 4)
        rec = np.asarray(boxes.record, dtype=np.int64)
        wh = np.asarray([(records[i].width, records[i].height) for i in rec],
                        dtype=np.float64).reshape(n, 2)
        clipped, verdict = _check_boxes(xyxy, wh)
        fatal = np.flatnonzero(verdict == _FATAL)
        if fatal.size:
            i = int(fatal[0])
            more = f" ({fatal.size - 1} more such boxes)" if fatal.size > 1 else ""
            raise self._error(
                f"{boxes.where[i]}: the box {_fmt_box(xyxy[i])} (x1, y1, x2, y2) lies entirely "
                f"outside its {int(wh[i, 0])}x{int(wh[i, 1])} image (width x height){more} — "
                f"wrong coordinate format or wrong image? in", source)
        dropped = np.flatnonzero(verdict != _OK)
        if dropped.size:
            i = int(dropped[0])
            warnings.warn(
                f"{type(self).__name__}: dropped {dropped.size} of {n} boxes of split "
                f"{self.split!r} ({source}) that are degenerate or lie more than "
                f"{OVERSHOOT_TOLERANCE:g} px outside their image; first: {boxes.where[i]}, box "
                f"{_fmt_box(xyxy[i])} (x1, y1, x2, y2) on a {int(wh[i, 0])}x{int(wh[i, 1])} "
                f"image: {_REASONS[int(verdict[i])]}", DatasetWarning, stacklevel=5)
        keep = verdict == _OK
        area = np.asarray(boxes.area, dtype=np.float64).reshape(n)
        box_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
        area = np.where(np.isnan(area), box_area, area)
        label = np.asarray(boxes.label, dtype=np.int64).reshape(n)
        crowd = np.asarray(boxes.iscrowd, dtype=bool).reshape(n)
        difficult = np.asarray(boxes.difficult, dtype=bool).reshape(n)
        idx = np.flatnonzero(keep)
        idx = idx[np.argsort(rec[idx], kind="stable")]  # grouped by record, file order kept
        bounds = np.searchsorted(rec[idx], np.arange(len(records) + 1))
        for r, record in enumerate(records):
            sel = idx[bounds[r]:bounds[r + 1]]
            record.boxes = clipped[sel]
            record.labels = label[sel]
            record.iscrowd = crowd[sel]
            record.difficult = difficult[sel]
            record.area = area[sel]
        return records

    # -- reading ------------------------------------------------------------------------------
    @staticmethod
    def _read_wh(path: Path) -> tuple[int, int]:
        with Image.open(path) as img:
            return int(img.width), int(img.height)

    def _image_wh(self, path: Path) -> tuple[int, int]:
        """Width and height of an image file from its header (the pixels are not decoded)."""
        return self._read(self._read_wh, path, "image")

    def _item_files(self, record: _Record) -> list[Path]:
        return [record.image]

    def _sample(self, record: _Record) -> tuple[torch.Tensor, Target]:
        x = self._read_image(record.image)
        h, w = int(x.shape[1]), int(x.shape[2])
        if (w, h) != (record.width, record.height):
            raise DatasetError(f"{type(self).__name__}: image {record.image} is {w}x{h} but "
                               f"its annotation gives {record.width}x{record.height} (width x "
                               f"height), so its boxes would not match the pixels")
        boxes = record.boxes.copy()
        area = record.area.copy()
        sx = sy = 1.0
        if self.size is not None and (h, w) != self.size:
            sy, sx = self.size[0] / h, self.size[1] / w
            boxes *= np.array([sx, sy, sx, sy])
            area *= sx * sy
        target: Target = {
            "boxes": torch.from_numpy(boxes.astype(np.float32).reshape(-1, 4)),
            "labels": torch.from_numpy(record.labels.astype(np.int64)),
            "iscrowd": torch.from_numpy(record.iscrowd.astype(bool)),
            "difficult": torch.from_numpy(record.difficult.astype(bool)),
            "area": torch.from_numpy(area.astype(np.float32)),
            "orig_area": torch.from_numpy(record.area.astype(np.float32)),
            "scale": torch.tensor([sx, sy], dtype=torch.float32),
            "image_id": torch.tensor(record.image_id, dtype=torch.int64),
        }
        return self._resized(x), target


class CocoDetection(DetectionFolder):
    """MS-COCO (or any data set in the COCO instances format).

    Reads ``root/annotations/instances_<split><year>.json``. With ``year=None`` the one file
    matching ``instances_<split>*.json`` whose suffix is empty or digits (``2017``) is taken;
    several such files are an error that names them (pass ``year``). Images are read from
    ``root/<split><year>/`` or, where that folder does not exist, ``root/images/<split><year>/``
    (``file_name`` is relative to that folder). Every image listed in the JSON must exist;
    images without annotations are kept with an empty target. Category ids are mapped to
    labels ``0..C-1`` in ascending id order (:attr:`class_names` from the categories' names,
    :attr:`category_ids` for the way back); crowd annotations (``iscrowd: 1``) are kept with
    ``iscrowd=True``. ``image_id`` is the JSON image id; images are in ascending id order.
    """

    layout = """
root/
├── annotations/instances_{train,val}2017.json   (COCO JSON: images[{id, file_name, width,
│       height}], categories[{id, name}], annotations[{id, image_id, category_id,
│       bbox: [x, y, width, height], area, iscrowd}])
├── train2017/000000000009.jpg ...                (or images/train2017/...)
└── val2017/000000000139.jpg ...
"""

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 year: str | int | None = None, transform: Transform | None = None) -> None:
        if year is not None and not re.fullmatch(r"\d+", str(year)):
            raise ValueError(f"CocoDetection: year must be digits like 2017, got {year!r}")
        self.year: str | None = None if year is None else str(year)
        self.category_ids: tuple[int, ...] = ()
        self.annotation_file: Path | None = None
        self.image_dir: Path | None = None
        super().__init__(root, split, size, transform)

    def _find_json(self) -> Path:
        folder = self.root / "annotations"
        self._require_dir(folder)
        prefix = f"instances_{self.split}"
        if self.year is not None:
            path = folder / f"{prefix}{self.year}.json"
            if not path.is_file():
                raise self._error("missing annotation file:", path)
            return path
        found = sorted(p for p in folder.glob(f"{prefix}*.json")
                       if re.fullmatch(r"\d*", p.name[len(prefix):-len(".json")]))
        if not found:
            raise self._error(f"no annotation file {prefix}<year>.json for split "
                              f"{self.split!r} in", folder)
        if len(found) > 1:
            raise self._error(f"several annotation files for split {self.split!r} "
                              f"({', '.join(p.name for p in found)}); pass year= to pick one, "
                              "in", folder)
        self.year = found[0].name[len(prefix):-len(".json")]
        return found[0]

    def _load_json(self, path: Path) -> dict[str, Any]:
        try:
            with path.open("rb") as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, ValueError) as err:  # JSONDecodeError: ValueError
            raise self._error(f"malformed annotation file ({type(err).__name__}: {err}):",
                              path) from None
        if not isinstance(data, dict):
            raise self._error(f"malformed annotation file (the top level is a "
                              f"{type(data).__name__}, not an object):", path)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                problem = "has no" if key not in data else "has a non-list"
                raise self._error(f"malformed annotation file ({problem} {key!r} list):", path)
        return data

    def _load(self) -> tuple[list[_Record], _Boxes, Path]:
        path = self._find_json()
        name = f"{self.split}{self.year}"
        image_dir = self.root / name
        if not image_dir.is_dir():
            if (self.root / "images" / name).is_dir():
                image_dir = self.root / "images" / name
            else:
                raise self._error(f"missing image folder (nor {Path('images') / name} in the "
                                  "root):", image_dir)
        self.annotation_file, self.image_dir = path, image_dir
        data = self._load_json(path)

        def bad(problem: str) -> DatasetError:
            return self._error(f"malformed annotation file: {problem}; in", path)

        # categories -> contiguous labels in ascending id order
        cats: dict[int, str] = {}
        for c in data["categories"]:
            cid = c.get("id") if isinstance(c, dict) else None
            if isinstance(cid, bool) or not isinstance(cid, int):
                raise bad(f"category {c!r} has no integer 'id'")
            if cid in cats:
                raise bad(f"category id {cid} is listed twice")
            cats[cid] = str(c.get("name", cid))
        self.category_ids = tuple(sorted(cats))
        self._class_names = tuple(cats[i] for i in self.category_ids)
        label_of = {cid: k for k, cid in enumerate(self.category_ids)}

        # images, ascending id; each listed file must exist
        entries: dict[int, dict[str, Any]] = {}
        for im in data["images"]:
            iid = im.get("id") if isinstance(im, dict) else None
            if isinstance(iid, bool) or not isinstance(iid, int):
                raise bad(f"image {im!r} has no integer 'id'")
            if iid in entries:
                raise bad(f"image id {iid} is listed twice")
            if not isinstance(im.get("file_name"), str) or not im["file_name"]:
                raise bad(f"image id {iid} has no 'file_name'")
            entries[iid] = im
        records: list[_Record] = []
        index_of: dict[int, int] = {}
        missing: list[tuple[int, Path]] = []
        empty = np.zeros((0, 4))
        for iid in sorted(entries):
            im = entries[iid]
            file = image_dir / im["file_name"]
            if not file.is_file():
                missing.append((iid, file))
                continue
            w, h = im.get("width"), im.get("height")
            if w is None or h is None:
                w, h = self._image_wh(file)
            elif not (_is_number(w) and _is_number(h) and w >= 1 and h >= 1
                      and float(w).is_integer() and float(h).is_integer()):
                raise bad(f"image id {iid} ({im['file_name']}) has width/height {w!r}/{h!r}, "
                          "not positive integers")
            index_of[iid] = len(records)
            records.append(_Record(file, iid, int(w), int(h), empty, np.zeros(0, np.int64),
                                   np.zeros(0, bool), np.zeros(0, bool), np.zeros(0)))
        if missing:
            iid, file = missing[0]
            more = f" ({len(missing) - 1} more images are missing)" if len(missing) > 1 else ""
            raise self._error(f"the annotation file {path} lists image id {iid}, whose file "
                              f"is missing{more}:", file)

        # annotations
        boxes = _Boxes([], [], [], [], [], [], [])
        for n, ann in enumerate(data["annotations"]):
            if not isinstance(ann, dict):
                raise bad(f"annotation #{n} is a {type(ann).__name__}, not an object")
            aid = ann.get("id", f"#{n}")
            iid, cid, bbox = ann.get("image_id"), ann.get("category_id"), ann.get("bbox")
            if isinstance(iid, bool) or not isinstance(iid, int) or iid not in index_of:
                raise bad(f"annotation id {aid} names image id {iid!r}, which is not in "
                          "'images'")
            if isinstance(cid, bool) or not isinstance(cid, int) or cid not in label_of:
                raise bad(f"annotation id {aid} names category id {cid!r}, which is not in "
                          f"'categories' (ids {list(self.category_ids)})")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
                raise bad(f"annotation id {aid} has bbox {bbox!r}, not 4 finite numbers "
                          "[x, y, width, height]")
            area = ann.get("area")
            if area is not None and not (_is_number(area) and area >= 0):
                raise bad(f"annotation id {aid} has area {area!r}, not a number >= 0")
            crowd = ann.get("iscrowd", 0)
            if crowd not in (0, 1):
                raise bad(f"annotation id {aid} has iscrowd {crowd!r}, not 0 or 1")
            r = index_of[iid]
            x, y, bw, bh = (float(v) for v in bbox)
            boxes.record.append(r)
            boxes.xyxy.append((x, y, x + bw, y + bh))
            boxes.label.append(label_of[cid])
            boxes.iscrowd.append(bool(crowd))
            boxes.difficult.append(False)
            boxes.area.append(math.nan if area is None else float(area))
            boxes.where.append(f"annotation id {aid} of image {records[r].image.name}")
        return records, boxes, path


class VocDetection(DetectionFolder):
    """Pascal VOC detection (2007 or 2012 layout): the 20 :data:`VOC_CLASSES`.

    ``root`` is the ``VOCdevkit`` folder (then ``root/VOC<year>/`` is used; a VOCdevkit
    folder holding other years' folders but not ``VOC<year>`` is an error naming the missing
    folder) or the ``VOC<year>`` folder itself. The ids of a split are read from
    ``ImageSets/Main/<split>.txt`` (the first word of each line), each with
    ``Annotations/<id>.xml`` and ``JPEGImages/<id>.jpg``; all XML files are parsed at
    construction. Per ``<object>``: ``name`` (one of :data:`VOC_CLASSES`, else an error naming
    the file and the name), ``difficult`` (0/1, default 0) and ``bndbox/xmin..ymax``. VOC
    coordinates are 1-based inclusive integer pixel indices; they are turned into continuous
    0-based xyxy as ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax`` (so the width is
    ``xmax - xmin + 1``, the VOC "+1" convention). The image size comes from ``<size>`` (the
    image header where it is absent). ``image_id`` is the id's digits as an int (``000005``
    -> 5, ``2008_000008`` -> 2008000008) when every id of the split is digits and underscores
    (and these ints are unique), else the id's position in the split list; :attr:`ids` holds
    the string ids.
    """

    splits = ("train", "val", "trainval", "test")
    layout = """
VOCdevkit/VOC2007/   (root may be VOCdevkit/ or VOC2007/ itself; VOC2012/ beside it: the same)
├── Annotations/<id>.xml    (<annotation><size><width/><height/></size>
│       <object><name/><difficult/><bndbox><xmin/><ymin/><xmax/><ymax/></bndbox></object>
│       ...</annotation>, 1-based pixel coordinates)
├── JPEGImages/<id>.jpg
└── ImageSets/Main/{train,val,trainval,test}.txt   (one id per line)
"""

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 year: str | int = "2007", transform: Transform | None = None) -> None:
        if not re.fullmatch(r"\d+", str(year)):
            raise ValueError(f"VocDetection: year must be digits like 2007, got {year!r}")
        self.year = str(year)
        self.ids: list[str] = []
        root = Path(root).expanduser()
        if not (root / "Annotations").exists():
            if (root / f"VOC{self.year}").is_dir():
                root = root / f"VOC{self.year}"
            elif _voc_years(root):  # a VOCdevkit folder without this year
                raise _missing_year(root, self.year)
        super().__init__(root, split, size, transform)

    def _load(self) -> tuple[list[_Record], _Boxes, Path]:
        self._class_names = VOC_CLASSES
        annotations, images = self.root / "Annotations", self.root / "JPEGImages"
        self._require_dir(annotations)
        self._require_dir(images)
        listing = self.root / "ImageSets" / "Main" / f"{self.split}.txt"
        if not listing.is_file():
            raise self._error("missing split list:", listing)
        try:
            lines = listing.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise self._error(f"unreadable split list ({err}):", listing) from None
        ids = [line.split()[0] for line in lines if line.strip()]
        if not ids:
            raise self._error("the split list names no image:", listing)
        self.ids = ids
        image_ids = self._image_ids(ids)
        records: list[_Record] = []
        boxes = _Boxes([], [], [], [], [], [], [])
        label_of = {name: k for k, name in enumerate(VOC_CLASSES)}
        for r, (i, iid) in enumerate(zip(ids, image_ids, strict=True)):
            xml, jpg = annotations / f"{i}.xml", images / f"{i}.jpg"
            if not xml.is_file():
                raise self._error(f"id {i!r} of {listing} has no annotation file: missing", xml)
            if not jpg.is_file():
                raise self._error(f"id {i!r} of {listing} (annotation {xml}) has no image: "
                                  "missing", jpg)
            w, h, objects = self._parse(xml, label_of)
            if w is None or h is None:
                w, h = self._image_wh(jpg)
            records.append(_Record(jpg, iid, w, h, np.zeros((0, 4)), np.zeros(0, np.int64),
                                   np.zeros(0, bool), np.zeros(0, bool), np.zeros(0)))
            for k, (label, difficult, (xmin, ymin, xmax, ymax)) in enumerate(objects):
                boxes.record.append(r)
                boxes.xyxy.append((xmin - 1.0, ymin - 1.0, xmax, ymax))
                boxes.label.append(label)
                boxes.iscrowd.append(False)
                boxes.difficult.append(difficult)
                boxes.area.append(math.nan)  # the box area
                boxes.where.append(f"object #{k} of {xml}")
        return records, boxes, listing

    @staticmethod
    def _image_ids(ids: list[str]) -> list[int]:
        if all(re.fullmatch(r"[\d_]*\d[\d_]*", i) for i in ids):
            numbers = [int(i.replace("_", "")) for i in ids]
            if len(set(numbers)) == len(numbers):
                return numbers
        return list(range(len(ids)))

    def _parse(self, xml: Path, label_of: dict[str, int]
               ) -> tuple[int | None, int | None,
                          list[tuple[int, bool, tuple[float, float, float, float]]]]:
        """``(width, height, objects)`` of one annotation file; objects are ``(label,
        difficult, (xmin, ymin, xmax, ymax))`` in the file's 1-based coordinates."""
        try:
            root = ET.parse(xml).getroot()
        except (ET.ParseError, OSError, UnicodeDecodeError) as err:
            raise self._error(f"malformed annotation file ({err}):", xml) from None

        def number(node: ET.Element | None, what: str) -> float:
            text = None if node is None else (node.text or "").strip()
            try:
                value = float(text) if text else math.nan
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise self._error(f"malformed annotation file ({what} is {text!r}, not a "
                                  "number):", xml)
            return value

        w = h = None
        size = root.find("size")
        if size is not None and size.find("width") is not None:
            fw, fh = number(size.find("width"), "size/width"), number(size.find("height"),
                                                                        "size/height")
            if fw >= 1 and fh >= 1:  # some files hold 0 x 0: then the image header decides
                w, h = int(fw), int(fh)
        objects = []
        for k, obj in enumerate(root.iter("object")):
            name = (obj.findtext("name") or "").strip()
            if name not in label_of:
                raise self._error(f"object #{k} has the unknown class name {name!r} (VOC "
                                  f"classes: {', '.join(VOC_CLASSES)}) in", xml)
            d = obj.find("difficult")
            difficult = 0.0 if d is None or not (d.text or "").strip() else number(
                d, f"object #{k} difficult")
            if difficult not in (0.0, 1.0):
                raise self._error(f"malformed annotation file (object #{k} difficult is "
                                  f"{d.text!r}, not 0 or 1):", xml)
            bb = obj.find("bndbox")
            if bb is None:
                raise self._error(f"malformed annotation file (object #{k} {name!r} has no "
                                  "bndbox):", xml)
            coords = tuple(number(bb.find(c), f"object #{k} bndbox/{c}")
                           for c in ("xmin", "ymin", "xmax", "ymax"))
            objects.append((label_of[name], bool(difficult), coords))
        return w, h, objects


def _voc_years(folder: Path) -> list[str]:
    """The ``VOC<digits>`` folders in ``folder`` (a VOCdevkit), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir()
                  if p.is_dir() and re.fullmatch(r"VOC\d+", p.name))


def _missing_year(devkit: Path, year: str) -> DatasetError:
    found = _voc_years(devkit)
    return DatasetError(
        f"VocDetection: missing year folder (the root holds "
        f"{', '.join(found) if found else 'no VOC<year> folder'}): {devkit / f'VOC{year}'}\n"
        f"expected layout:\n{VocDetection.layout.strip(chr(10))}")


def voc_year_folder(root: str | Path, year: str | int) -> Path:
    """The ``VOC<year>`` folder of a local Pascal VOC copy: ``root/VOC<year>`` when ``root`` is
    the ``VOCdevkit`` folder, ``root`` itself when it is that year's folder, or its sibling
    when ``root`` is another year's folder (``VOCdevkit/VOC2007`` given, ``VOC2012`` wanted).
    A :class:`DatasetError` naming the missing ``root/VOC<year>`` (and the year folders found)
    otherwise; a missing ``root`` is named as such."""
    root = Path(root).expanduser()
    year = str(year)
    name = f"VOC{year}"
    if not root.is_dir():
        raise DatasetError(f"VocDetection: the data-set root does not exist: {root}\n"
                           f"expected layout:\n{VocDetection.layout.strip(chr(10))}")
    if (root / name).is_dir():
        return root / name
    if root.name == name:
        return root
    if re.fullmatch(r"VOC\d+", root.name) and (root.parent / name).is_dir():
        return root.parent / name
    devkit = root.parent if re.fullmatch(r"VOC\d+", root.name) else root
    raise _missing_year(devkit, year)


#: loader name -> class
DETECTION_DATASETS: dict[str, type[DetectionFolder]] = {
    "coco": CocoDetection,
    "voc": VocDetection,
}


def load_dataset(name: str, root: str | Path, split: str = "train", size: Size | None = None,
                 **kwargs: Any) -> DetectionFolder:
    """The data set ``name`` (``coco`` or ``voc``) read from ``root``; ``kwargs`` go to the
    loader (``year=``, ``transform=``)."""
    cls = loader_named(DETECTION_DATASETS, name, "detection")
    return cls(root, split=split, size=size, **kwargs)


def collate_detection(batch: Sequence[tuple[torch.Tensor, Target]]
                      ) -> tuple[torch.Tensor, list[Target]]:
    """Batch detection items: ``(images [B, 3, H, W], [target, ...])`` (targets differ in
    length, so they stay a list). All images must have the same size (pass ``size=``)."""
    images = [x for x, _ in batch]
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch images of different sizes {sorted(shapes)}; give the "
                         "data set a size= to resize them")
    return torch.stack(images), [t for _, t in batch]
