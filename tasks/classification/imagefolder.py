"""Image classification from a folder of class folders: the ImageNet layout.

::

    root/train/<class>/<image>.JPEG     one folder per class
    root/val/<class>/<image>.JPEG       optional: the same class folder names (or some of them)

The classes are the sorted names of ``root/train``'s subfolders (hidden ones, starting with
``.``, left out) and a class's label is its position among them, in both splits; ``root/val``
may hold no class that ``root/train`` lacks. A class folder's image files (a suffix of
:data:`~nastk.data.folders.IMAGE_SUFFIXES`, any case) are read, sorted by name; its subfolders
and other files are ignored. Samples are ``(image [C, H, W] in [0, 1], label)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nastk.data.folders import IMAGE_SUFFIXES, FolderDataset, Transform
from nastk.data.images import Size, read_grey

__all__ = ["ImageFolder", "class_folders"]

_SUFFIXES = " ".join(sorted(IMAGE_SUFFIXES))


def class_folders(folder: Path) -> list[str]:
    """The sorted names of ``folder``'s subfolders, hidden ones left out."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _has_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES and e.is_file()
                   for e in entries)


class ImageFolder(FolderDataset):
    """One split (``train`` or ``val``) of an ImageNet-style folder: ``(image, label)`` samples.

    ``classes`` fixes the class names (and so the labels) instead of reading them from
    ``root/train``; every class folder of the split must be one of them. ``channels`` 3 reads
    RGB, 1 grey levels. :attr:`items` are ``(path, label)`` pairs (the path a ``str``, which
    keeps a listing of millions of files small), in class order, then by file name.
    """

    layout = f"""\
root/train/<class>/<image>.JPEG   one folder per class: the classes are the sorted folder names
root/val/<class>/<image>.JPEG     optional; only class folder names that root/train has
image files: {_SUFFIXES} (any case)"""
    splits = ("train", "val")

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None, classes: Sequence[str] | None = None,
                 channels: int = 3) -> None:
        if channels not in (1, 3):
            raise ValueError(f"ImageFolder: channels must be 1 or 3, got {channels!r}")
        self.channels = channels
        #: the class names; a label is an index into them
        self.classes: list[str] = list(classes) if classes is not None else []
        self._classes_given = classes is not None
        super().__init__(root, split, size, transform)

    # -- listing ------------------------------------------------------------------------------
    def _image_dir(self) -> Path:
        return self.root / self.split

    def _find_items(self) -> list[tuple[str, int]]:
        train = self.root / "train"
        self._require_dir(train, "missing folder (the training split, one subfolder per "
                                 "class)")
        if not self._classes_given:
            self.classes = class_folders(train)
            if not self.classes:
                raise self._error("no class folders (one subfolder per class) in", train)
        folder = self._image_dir()
        self._require_dir(folder)
        index = {name: i for i, name in enumerate(self.classes)}
        items: list[tuple[str, int]] = []
        for name in class_folders(folder):
            if name not in index:
                raise self._error(f"class folder {name!r} of split {self.split!r} is not one "
                                  f"of the {len(self.classes)} classes of root/train:",
                                  folder / name)
            with os.scandir(folder / name) as entries:
                files = sorted(e.name for e in entries
                               if os.path.splitext(e.name)[1].lower() in IMAGE_SUFFIXES
                               and e.is_file())
            if not files:
                raise self._error(f"class folder {name!r} holds no image file ({_SUFFIXES}):",
                                  folder / name)
            base = str(folder / name)
            items += [(os.path.join(base, f), index[name]) for f in files]
        if not items and _has_images(folder):
            raise self._error(f"split {self.split!r} holds its images directly, not in class "
                              "folders (sort them into <class>/ folders, e.g. with ImageNet's "
                              "valprep.sh; or move the folder away to hold out a share of "
                              "root/train instead):", folder)
        return items

    @property
    def labels(self) -> np.ndarray:
        """Every item's label, in item order (``int64``), read from the listing alone."""
        return np.fromiter((label for _, label in self.items), dtype=np.int64,
                           count=len(self.items))

    def _repr_fields(self) -> dict[str, Any]:
        return {"items": len(self.items), "classes": len(self.classes)}

    # -- reading ------------------------------------------------------------------------------
    def _item_files(self, item: tuple[str, int]) -> list[Path]:
        return [Path(item[0])]

    def _sample(self, item: tuple[str, int]) -> tuple[torch.Tensor, int]:
        path = Path(item[0])
        if self.channels == 3:
            image = self._read_image(path)
        else:
            image = torch.from_numpy(self._read(read_grey, path, "image"))[None]
        return self._resized(image), item[1]
