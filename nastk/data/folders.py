"""Datasets read from a user's folder of images: the common part of every real-data loader.

:class:`FolderDataset` checks the split name and the folder, lists the split's items (a
subclass's :meth:`~FolderDataset._find_items`), reads images with the file named in every
error, resizes them to ``size`` and runs ``transform(image, target)`` last. Every folder
problem raises a :class:`DatasetError` that names the path and shows the layout the loader
expects (the subclass's :attr:`~FolderDataset.layout`).

The segmentation (CamVid, Cityscapes, VOC), saliency (SALICON, MIT1003, CAT2000) and detection
(COCO, VOC) loaders subclass it; a loader of your own needs ``layout``, ``splits``,
``_find_items`` (the items of ``self.split``, in a stable order) and ``_sample`` (an item as
``(image, target)``, e.g. ``self._read_image(path)`` resized by ``self._resized``)::

    from pathlib import Path

    import torch

    from nastk.data.folders import FolderDataset
    from nastk.data.images import read_grey

    class MyMasks(FolderDataset):
        layout = "root/<split>/<name>.jpg and root/<split>/<name>.png (the mask)"
        splits = ("train", "val")

        def _image_dir(self) -> Path:
            return self.root / self.split

        def _find_items(self) -> list[Path]:
            self._require_dir(self._image_dir())
            images = sorted(self._image_dir().glob("*.jpg"))
            for image in images:
                self._require_file(image, image.with_suffix(".png"), "mask")
            return images

        def _sample(self, image: Path) -> tuple[torch.Tensor, torch.Tensor]:
            mask = torch.from_numpy(self._read(read_grey, image.with_suffix(".png"), "mask"))
            return self._resized(self._read_image(image)), mask
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from PIL import Image
from torch.utils.data import Dataset

from nastk.core.errors import RunStoppingError
from nastk.data.augment import pending_crop
from nastk.data.images import Size, check_size, pixels, read_rgb, resize_image
from nastk.data.nesting import within

__all__ = ["IMAGE_SUFFIXES", "DatasetError", "FolderDataset", "Transform", "folder_datasets",
           "loader_named"]

L = TypeVar("L", bound="type[FolderDataset]")

#: file name suffixes whose header :meth:`FolderDataset.check_files` decodes
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm",
                            ".pgm"})


def _image_header(path: Path) -> tuple[int, int]:
    """The image's size, read from its header alone (PIL decodes no pixel until asked)."""
    with Image.open(path) as img:
        return img.size


#: ``transform(image, target) -> (image, target)``, run on every sample last
Transform = Callable[[torch.Tensor, Any], tuple[torch.Tensor, Any]]


class DatasetError(RunStoppingError, ValueError):
    """A data-set folder is missing or malformed, or a file in it cannot be read as expected.
    Met while a candidate trains, it stops the search (:class:`RunStoppingError`): the file is
    at fault, not the candidate."""


class FolderDataset(Dataset, ABC):
    """A split of a data set in a user's folder: ``(image [3, H, W] in [0, 1], target)``
    samples (see the module docstring for what a subclass provides)."""

    #: the folder tree the loader expects, shown in every folder error
    layout: ClassVar[str] = ""
    #: the split names the loader knows (``None``: any name of letters, digits, ``_``, ``-``)
    splits: ClassVar[tuple[str, ...] | None] = ("train", "val")

    def __init__(self, root: str | Path, split: str = "train", size: Size | None = None,
                 transform: Transform | None = None) -> None:
        if self.splits is not None and split not in self.splits:
            raise ValueError(f"{type(self).__name__}: split must be one of {list(self.splits)}, "
                             f"got {split!r}")
        if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", split):
            raise ValueError(f"{type(self).__name__}: split must be a name like 'train', "
                             f"got {split!r}")
        self.root = Path(root).expanduser()
        self.split = split
        self.size = check_size(size)
        self.transform = transform
        self._require_dir(self.root, "the data-set root does not exist")
        self.items: list[Any] = self._find_items()
        if not self.items:
            raise self._error(f"no images found for split {split!r} in", self._listing())

    # -- to be provided by subclasses ---------------------------------------------------------
    @abstractmethod
    def _find_items(self) -> list[Any]:
        """The items of ``self.split`` (whatever :meth:`_sample` reads), in a stable order."""

    @abstractmethod
    def _sample(self, item: Any) -> tuple[torch.Tensor, Any]:
        """``(image, target)`` of one item, resized, before ``transform``."""

    def _image_dir(self) -> Path:
        """The folder of the split's images (named when the split has none)."""
        return self.root

    def _listing(self) -> Path:
        """What lists the split's images, named when it lists none: the image folder, or an
        annotation file."""
        return self._image_dir()

    def _repr_fields(self) -> dict[str, Any]:
        """What ``repr`` shows after ``root``, ``split`` and ``size``."""
        return {"items": len(self.items)}

    # -- the dataset --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        x, target = self._sample(self.items[index])
        if self.transform is not None:
            x, target = self.transform(x, target)
        return x, target

    def __repr__(self) -> str:
        fields = "".join(f", {k}={v}" for k, v in self._repr_fields().items())
        return (f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
                f"size={self.size}{fields})")

    # -- errors -------------------------------------------------------------------------------
    def _error(self, problem: str, path: Path) -> DatasetError:
        """A :class:`DatasetError`: the loader, ``problem``, ``path`` and the expected layout."""
        return DatasetError(f"{type(self).__name__}: {problem} {path}\n"
                            f"expected layout:\n{self.layout.strip(chr(10))}")

    def _require_dir(self, path: Path, problem: str = "missing folder") -> None:
        """A :meth:`_error` unless ``path`` is a folder."""
        if not path.is_dir():
            raise self._error(problem + (" (it is a file)" if path.exists() else "") + ":",
                              path)

    def _require_file(self, image: Path, path: Path, what: str) -> None:
        """A :meth:`_error` unless ``path``, the ``what`` of ``image``, is a file."""
        if not path.is_file():
            raise self._error(f"image {image.name} has no {what}: missing", path)

    # -- reading ------------------------------------------------------------------------------
    def _read(self, reader: Callable[[Path], Any], path: Path, what: str) -> Any:
        """``reader(path)``, with a truncated or unreadable file named in the error."""
        try:
            return reader(path)
        except DatasetError:
            raise
        except (OSError, ValueError, SyntaxError, EOFError) as err:  # PIL's errors for broken
            # files (UnidentifiedImageError is an OSError)
            raise DatasetError(f"{type(self).__name__}: cannot read {what} {path}: {err} "
                               "(truncated or in another format? re-copy the file or remove "
                               "it from the split)") from None

    def _read_image(self, path: Path) -> torch.Tensor:
        """The image file ``path`` as its ``uint8 [3, H, W]`` pixels, at its own size (give it
        to :meth:`_resized` for the ``float32`` image in ``[0, 1]`` at ``size``)."""
        return pixels(self._read(read_rgb, path, "image"))

    def _resized(self, image: torch.Tensor) -> torch.Tensor:
        """``image`` (pixels as read, or a float image) at ``size`` as ``float32 [3, H, W]`` in
        ``[0, 1]`` (see :func:`nastk.data.images.resize_image`); inside an augmented training
        loader, first cut to the sample's crop window at the file's own resolution
        (:func:`nastk.data.augment.pending_crop`)."""
        crop = pending_crop()
        if crop is not None and not crop.image:
            image = crop.cut(image, 0)
            crop.image = True
        return resize_image(image, self.size)

    # -- checks before a run ------------------------------------------------------------------
    def _item_files(self, item: Any) -> list[Path]:
        """The files one item is read from (default: the paths in ``item``, itself a path or a
        tuple or list of them); a loader whose items hold other things overrides it."""
        if isinstance(item, Path):
            return [item]
        if isinstance(item, (tuple, list)):
            return [p for p in item if isinstance(p, Path)]
        return []

    def check_files(self) -> int:
        """Check every file of the split: it exists, and an image's header decodes (cheap:
        no pixel is decoded). Raises a :class:`DatasetError` naming the first bad file;
        returns the number of files checked."""
        n = 0
        for item in self.items:
            for path in self._item_files(item):
                if not path.is_file():
                    raise self._error("missing file (listed for the split, not on disk):", path)
                if path.suffix.lower() in IMAGE_SUFFIXES:
                    self._read(_image_header, path, "image file")
                n += 1
        return n

    def check_sample(self, n: int = 32) -> int:
        """Read ``n`` items spread evenly over the split, whole (every file decoded, targets
        mapped); returns how many were read."""
        picks = sorted({round(i * (len(self) - 1) / max(n - 1, 1)) for i in range(n)}
                       if len(self) > n else range(len(self)))
        for i in picks:
            self[i]
        return len(picks)


def folder_datasets(dataset: Any) -> list[FolderDataset]:
    """The :class:`FolderDataset` objects a split is made of (through ``Subset`` and
    ``ConcatDataset`` and other wrappers with ``dataset`` or ``datasets``)."""
    return [d for d in within(dataset) if isinstance(d, FolderDataset)]


def loader_named(loaders: Mapping[str, L], name: str, what: str) -> L:
    """The loader class ``loaders[name]`` (any case), or a ``ValueError`` that lists the
    ``what`` data sets known (a task's ``load_dataset(name, ...)``)."""
    try:
        return loaders[name.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown {what} data set {name!r}; known: "
                         f"{', '.join(sorted(loaders))}") from None
