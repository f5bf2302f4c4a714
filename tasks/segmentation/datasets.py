"""Loaders for local copies of real semantic-segmentation data sets (nothing is downloaded).

Every loader is a :class:`~nastk.data.folders.FolderDataset` of ``(image, mask)`` pairs:
``image`` a ``float32`` tensor ``[3, H, W]`` scaled to [0, 1], ``mask`` an ``int64`` tensor
``[H, W]`` of train ids ``0..num_classes - 1`` with :data:`IGNORE_INDEX` (255) for void /
unlabelled pixels.
``size`` (an int for a square, or ``(height, width)``) resizes every pair — the image
bilinearly (antialiased), the mask by nearest neighbour — and ``None`` keeps the native size.

- :class:`CamVid`: the SegNet layout (``train/``, ``trainannot/``, ...), 11 classes;
- :class:`Cityscapes`: ``leftImg8bit/`` + ``gtFine/`` ``*_labelIds.png``, 19 train ids;
- :class:`PascalVOC`: ``VOC2012/`` with ``JPEGImages``, ``SegmentationClass`` (palette PNGs)
  and ``ImageSets/Segmentation/<split>.txt``, 21 classes.

The folder structure is checked when a data set is created (a :class:`DatasetError` names the
wrong path and shows the expected layout); label values are checked as each item is read (a
:class:`DatasetError` names the file and the bad value). :func:`load_dataset` picks a loader by
name.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from nastk.data.augment import pending_crop
from nastk.data.folders import DatasetError, FolderDataset, Transform, loader_named
from nastk.data.images import Size

__all__ = [
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "CLASS_NAMES",
    "DATASETS",
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "CamVid",
    "Cityscapes",
    "DatasetError",
    "PascalVOC",
    "SegmentationFolder",
    "load_dataset",
    "num_classes_of",
]

#: mask value of void / unlabelled pixels, skipped by the loss and the metrics
IGNORE_INDEX = 255

CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
)

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
    "sofa", "train", "tvmonitor",
)

#: Cityscapes labelId -> train id (the official table); every other id in 0..33 is void
_CITYSCAPES_TRAIN_IDS: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def _lookup(pairs: dict[int, int], length: int = 256) -> np.ndarray:
    """A lookup table raw label value -> train id, ``-1`` marking malformed values."""
    lut = np.full(length, -1, dtype=np.int64)
    for raw, train_id in pairs.items():
        lut[raw] = train_id
    return lut




class SegmentationFolder(FolderDataset):
    """Shared logic of the segmentation folder loaders: ``(image, label)`` file pairs, label
    mapping, checking and resizing (reading, resizing the image and the folder errors are
    :class:`~nastk.data.folders.FolderDataset`'s).

    A subclass sets :attr:`classes`, :attr:`layout` (the expected folder tree, shown in errors)
    and :attr:`splits`, returns the pairs from :meth:`_find_items`, and provides a lookup table
    ``_lut`` from raw label values to train ids (``-1`` = malformed), or overrides
    :meth:`_read_label`.
    """

    classes: ClassVar[tuple[str, ...]] = ()
    splits: ClassVar[tuple[str, ...] | None] = ("train", "val", "test")
    _lut: ClassVar[np.ndarray] = np.full(256, -1, dtype=np.int64)
    #: the mask value of pixels that are not scored
    ignore_index: ClassVar[int] = IGNORE_INDEX

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None, label_own_size: bool = False) -> None:
        #: labels kept at their file's own resolution (scoring at label resolution), not
        #: resized to ``size`` with the image
        self.label_own_size = label_own_size
        super().__init__(root, split, size, transform)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_labels_at_own_size(self) -> SegmentationFolder:
        """The same split (the same listing, not read again) with its labels kept at their
        files' resolution."""
        twin = copy.copy(self)
        twin.label_own_size = True
        return twin

    def _require_labels(self, pairs: list[tuple[Path, Path]]) -> list[tuple[Path, Path]]:
        for image, label in pairs:
            self._require_file(image, label, "label file")
        return pairs

    # -- reading ------------------------------------------------------------------------------
    def _read_label(self, path: Path) -> np.ndarray:
        """The raw label values of ``path`` as a 2-D integer array."""
        with Image.open(path) as img:
            raw = np.asarray(img)
        if raw.ndim != 2:
            raise DatasetError(f"{type(self).__name__}: label file {path} must be a "
                               f"single-channel image of class ids, got shape {raw.shape}")
        return raw

    def _map_label(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Raw values -> train ids through ``_lut``; a value outside the table or marked
        ``-1`` raises a DatasetError naming ``path`` and the value."""
        raw = raw.astype(np.int64, copy=False)
        lut = self._lut
        lo, hi = int(raw.min()), int(raw.max())
        if lo < 0 or hi >= len(lut):
            bad = lo if lo < 0 else hi
        else:
            mapped = lut[raw]
            if (mapped >= 0).all():
                return mapped
            bad = int(raw[mapped < 0].min())
        valid = np.flatnonzero(lut >= 0)
        raise DatasetError(f"{type(self).__name__}: label file {path} holds the value {bad}, "
                           f"which is neither a class id nor the void/ignore value (valid "
                           f"values: {_ranges(valid)})")

    def _sample(self, item: tuple[Path, Path]) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = item
        x = self._read_image(image_path)
        label = self._map_label(self._read(self._read_label, label_path, "label file"),
                                label_path)
        if tuple(x.shape[1:]) != label.shape:
            raise DatasetError(f"{type(self).__name__}: image {image_path} is "
                               f"{x.shape[2]}x{x.shape[1]} but its label {label_path} "
                               f"is {label.shape[1]}x{label.shape[0]} (width x height)")
        y = torch.from_numpy(label)
        crop = pending_crop()  # an augmented training sample: cut like the image, from the file
        if crop is not None and not crop.mask and not self.label_own_size:
            y = crop.cut(y, float(self.ignore_index))
            crop.mask = True
        if self.size is not None and tuple(y.shape) != self.size and not self.label_own_size:
            y = F.interpolate(y[None, None].float(), size=self.size, mode="nearest")[0, 0].long()
        return self._resized(x), y


def _ranges(values: np.ndarray) -> str:
    """``[0..10, 255]``-style summary of sorted integers."""
    parts: list[str] = []
    start = prev = None
    for v in (int(x) for x in values):
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            parts.append(f"{start}" if start == prev else f"{start}..{prev}")
            start = prev = v
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}..{prev}")
    return ", ".join(parts)


class CamVid(SegmentationFolder):
    """CamVid in the SegNet layout: 11 classes (:data:`CAMVID_CLASSES`), label 11 (void) -> 255.

    ``root/<split>/*.png`` with the label of each image at ``root/<split>annot/<same name>``;
    label values 0..10 are the classes, 11 is void (255 is accepted as void as well).
    """

    classes = CAMVID_CLASSES
    layout = """
root/
├── train/        0001TP_006690.png ...
├── trainannot/   0001TP_006690.png ...  (one label PNG per image, values 0..10, 11 = void)
├── val/   valannot/
└── test/  testannot/
"""
    _lut = _lookup({**{i: i for i in range(11)}, 11: IGNORE_INDEX, 255: IGNORE_INDEX})

    def _image_dir(self) -> Path:
        return self.root / self.split

    def _find_items(self) -> list[tuple[Path, Path]]:
        images, labels = self.root / self.split, self.root / f"{self.split}annot"
        self._require_dir(images)
        self._require_dir(labels)
        return self._require_labels([(p, labels / p.name) for p in sorted(images.glob("*.png"))])


class Cityscapes(SegmentationFolder):
    """Cityscapes fine annotations: 19 train ids (:data:`CITYSCAPES_CLASSES`).

    ``root/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` with labels at
    ``root/gtFine/<split>/<city>/<name>_gtFine_labelIds.png``; labelIds are mapped with the
    official table, every other id in 0..33 (and -1, stored as 255) becomes 255.
    """

    classes = CITYSCAPES_CLASSES
    layout = """
root/
├── leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
└── gtFine/<split>/<city>/<name>_gtFine_labelIds.png   (labelIds 0..33)
    e.g. leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png
         gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png
"""
    _lut = _lookup({**dict.fromkeys(range(34), IGNORE_INDEX), **_CITYSCAPES_TRAIN_IDS,
                    255: IGNORE_INDEX})
    _suffix = "_leftImg8bit.png"

    def _image_dir(self) -> Path:
        return self.root / "leftImg8bit" / self.split

    def _find_items(self) -> list[tuple[Path, Path]]:
        images, labels = self._image_dir(), self.root / "gtFine" / self.split
        self._require_dir(images)
        self._require_dir(labels)
        pairs = []
        for p in sorted(images.glob(f"*/*{self._suffix}")):
            name = p.name[: -len(self._suffix)]
            pairs.append((p, labels / p.parent.name / f"{name}_gtFine_labelIds.png"))
        return self._require_labels(pairs)


class PascalVOC(SegmentationFolder):
    """PASCAL VOC 2012 segmentation: 21 classes (:data:`VOC_CLASSES`), 255 = border/ignore.

    ``root`` is the ``VOC2012`` folder (a ``VOCdevkit`` folder holding ``VOC2012`` works too).
    The ids of a split are read from ``ImageSets/Segmentation/<split>.txt``; labels must be the
    original palette-mode (``P``) PNGs, whose indices are the class ids — a colour-rendered RGB
    mask is rejected.
    """

    classes = VOC_CLASSES
    splits = ("train", "val", "trainval")
    layout = """
VOC2012/   (or VOCdevkit/VOC2012/)
├── JPEGImages/<id>.jpg
├── SegmentationClass/<id>.png   (palette-mode PNG, indices 0..20, 255 = border)
└── ImageSets/Segmentation/{train,val,trainval}.txt   (one id per line)
"""
    _lut = _lookup({**{i: i for i in range(21)}, 255: IGNORE_INDEX})

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None, label_own_size: bool = False) -> None:
        root = Path(root).expanduser()
        if not (root / "JPEGImages").exists() and (root / "VOC2012").is_dir():
            root = root / "VOC2012"
        super().__init__(root, split, size, transform, label_own_size)

    def _image_dir(self) -> Path:
        return self.root / "JPEGImages"

    def _find_items(self) -> list[tuple[Path, Path]]:
        images, labels = self._image_dir(), self.root / "SegmentationClass"
        self._require_dir(images)
        self._require_dir(labels)
        listing = self.root / "ImageSets" / "Segmentation" / f"{self.split}.txt"
        if not listing.is_file():
            raise self._error("missing split list:", listing)
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if not ids:
            raise self._error("the split list names no image:", listing)
        pairs = []
        for i in ids:
            image = images / f"{i}.jpg"
            if not image.is_file():
                raise self._error(f"id {i!r} of {listing.name} has no image: missing", image)
            pairs.append((image, labels / f"{i}.png"))
        return self._require_labels(pairs)

    def _read_label(self, path: Path) -> np.ndarray:
        with Image.open(path) as img:
            if img.mode != "P":
                raise DatasetError(
                    f"PascalVOC: label file {path} is a mode {img.mode!r} image, but VOC labels "
                    f"must be palette-mode ('P') PNGs whose indices are the class ids (the "
                    f"original SegmentationClass files); a colour-rendered mask cannot be read "
                    f"as class ids")
            return np.asarray(img)


#: loader name -> class
DATASETS: dict[str, type[SegmentationFolder]] = {
    "camvid": CamVid,
    "cityscapes": Cityscapes,
    "voc": PascalVOC,
}


#: loader name -> class names (index = train id)
CLASS_NAMES: dict[str, tuple[str, ...]] = {name: cls.classes for name, cls in DATASETS.items()}


def load_dataset(name: str, root: str | Path, split: str = "train",
                 size: Size | None = None, label_own_size: bool = False) -> SegmentationFolder:
    """The data set ``name`` (``camvid``, ``cityscapes`` or ``voc``) read from ``root``;
    ``label_own_size``: labels at their file's resolution (images are still resized to
    ``size``)."""
    return loader_named(DATASETS, name, "segmentation")(root, split=split, size=size,
                                                        label_own_size=label_own_size)


def num_classes_of(name: str) -> int:
    """Number of classes (train ids) of the data set ``name``; 255 is the ignore label."""
    return len(loader_named(DATASETS, name, "segmentation").classes)
