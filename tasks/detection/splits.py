"""Named splits of the real detection data sets, for the benchmarks' protocols.

The detection task's ``train_split`` (one name or several, concatenated) and ``test_split``
name official splits of a local copy (:class:`~nastk.tasks.detection.task.DetectionTask`):

- **VOC**: ``voc<year>/<split>``, ``<split>`` one of ``train``, ``val``, ``trainval``,
  ``test``: ``ImageSets/Main/<split>.txt`` of the ``VOC<year>/`` folder under the ``root``
  (the ``VOCdevkit`` folder; see :func:`~nastk.tasks.detection.datasets.voc_year_folder`). The
  VOC07+12 protocol trains on ``[voc2007/trainval, voc2012/trainval]`` and tests on
  ``voc2007/test``. A bare split name (``trainval``) takes the task's ``year`` (2007 when
  unset). ``VOC2007/trainval`` is read as ``voc2007/trainval``.
- **COCO**: ``<split><year>`` as in the file names: ``train2017`` is
  ``annotations/instances_train2017.json`` with the images of ``train2017/``; the COCO 2017
  protocol trains on ``train2017`` and tests on ``val2017``. A bare split name (``train``)
  takes the task's ``year`` (or, without one, the one annotation file of that split).

:func:`parse_split` checks a name (a ``ValueError`` that names the allowed forms),
:func:`overlapping` tells two splits that share images (a test split inside the training
data), :func:`load_split` reads one split.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nastk.data.images import Size
from nastk.tasks.detection.datasets import (
    CocoDetection,
    DetectionFolder,
    VocDetection,
    voc_year_folder,
)

__all__ = ["VOC_SPLITS", "SplitName", "load_split", "overlapping", "parse_split"]

#: the image sets of a VOC year folder (``ImageSets/Main/<split>.txt``)
VOC_SPLITS: tuple[str, ...] = ("train", "val", "trainval", "test")

_VOC_NAME = re.compile(r"(?:voc(?P<year>\d+)/)?(?P<split>[a-z]+)", re.IGNORECASE)
_COCO_NAME = re.compile(r"(?P<split>[A-Za-z][A-Za-z_\-]*?)(?P<year>\d*)")

VOC_FORMS = ("voc<year>/<split> with <split> one of " + ", ".join(VOC_SPLITS)
             + " (e.g. voc2007/trainval, voc2012/trainval, voc2007/test), or a bare split name "
             "for the year of `year` (2007 when unset)")
COCO_FORMS = ("<split><year> as in annotations/instances_<split><year>.json (e.g. train2017, "
              "val2017), or a bare split name (e.g. train) for the year of `year`")


@dataclass(frozen=True)
class SplitName:
    """One official split: the data set (``voc`` or ``coco``), the split and its year (COCO:
    ``None`` for the one annotation file of the split, whatever its year)."""

    dataset: str
    split: str
    year: str | None

    def __str__(self) -> str:
        if self.dataset == "voc":
            return f"voc{self.year}/{self.split}"
        return f"{self.split}{self.year or ''}"


def parse_split(dataset: str, name: str, year: str | None = None) -> SplitName:
    """The split ``name`` of ``dataset`` (``voc`` or ``coco``; see the module docstring); a
    bare name takes ``year``. A ``ValueError`` naming the allowed forms otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"{name!r} is not a split name")
    if dataset == "voc":
        m = _VOC_NAME.fullmatch(name.strip())
        if m is None or m["split"].lower() not in VOC_SPLITS:
            raise ValueError(f"{name!r} is not a VOC split; use {VOC_FORMS}")
        return SplitName("voc", m["split"].lower(), m["year"] or (str(year) if year else "2007"))
    if dataset == "coco":
        m = _COCO_NAME.fullmatch(name.strip())
        if m is None:
            raise ValueError(f"{name!r} is not a COCO split; use {COCO_FORMS}")
        return SplitName("coco", m["split"], m["year"] or (str(year) if year else None))
    raise ValueError(f"named splits are for the datasets coco and voc, not {dataset!r}")


def overlapping(a: SplitName, b: SplitName) -> bool:
    """Whether the splits ``a`` and ``b`` may share images: the same split, or for VOC one of
    the same year's ``trainval`` and its ``train`` or ``val`` (``test`` is disjoint from the
    others, and years from each other); a COCO split without a year matches any year."""
    if a.dataset != b.dataset:
        return False
    if a.dataset == "coco":
        return a.split == b.split and (a.year is None or b.year is None or a.year == b.year)
    if a.year != b.year:
        return False
    pair = {a.split, b.split}
    return a.split == b.split or ("trainval" in pair and "test" not in pair)


def load_split(root: str | Path, name: SplitName, size: Size | None) -> DetectionFolder:
    """The data set of one official split, read from ``root`` (VOC: the ``VOCdevkit``
    folder, or one year's folder beside the others)."""
    if name.dataset == "voc":
        assert name.year is not None
        return VocDetection(voc_year_folder(root, name.year), name.split, size, year=name.year)
    return CocoDetection(root, name.split, size, year=name.year)
