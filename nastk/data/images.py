"""Images of a task: the image-size option, reading image files, and the tensors a network sees.

Every built-in image task (classification, segmentation, saliency, detection) and its folder
loaders (:class:`nastk.data.folders.FolderDataset`) use these, and so can a task of yours:

- :class:`ImageSizeOptions`: a mixin of a task's pydantic ``Options`` adding ``size`` (one int
  for a square, or ``(height, width)``; at least :attr:`~ImageSizeOptions.min_side` pixels a
  side), with :attr:`~ImageSizeOptions.image_size` as ``(height, width)``, and
  :class:`ImageInput`, the mixin of the task itself that reads its ``image_size`` and
  ``input_shape`` from them (``class MyTask(ImageInput, Task)``);
- :func:`check_size`: the same size as a plain argument (``None`` allowed), for loaders;
- :func:`read_rgb` / :func:`read_grey`: an image file as a ``uint8`` array;
- :func:`image_tensor` and :func:`resize_image`: ``[3, H, W]`` float tensors in ``[0, 1]``,
  resized bilinearly with antialiasing (``align_corners=False``), the convention of every
  loader; :func:`pixels` keeps a file's ``uint8`` pixels as a tensor, which
  :func:`resize_image` resizes in ``uint8`` before making them float.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, Field, field_validator

__all__ = ["ImageInput", "ImageSizeOptions", "Size", "check_size", "from_levels", "image_tensor",
           "kept_levels", "pixels", "read_grey", "read_rgb", "resample", "resize_image",
           "size_field"]

#: an image size: one int for a square, or ``(height, width)``
Size = int | tuple[int, int]


def check_size(size: Size | Sequence[int] | None, name: str = "size"
               ) -> tuple[int, int] | None:
    """``size`` (``None``, an int for a square, or a ``(height, width)`` pair of ints) as a
    ``(height, width)`` pair, or a ``ValueError`` naming ``name`` and the bad value."""
    if size is None:
        return None

    def is_int(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if is_int(size):
        pair: tuple[int, ...] = (int(size), int(size))  # type: ignore[arg-type]
    elif isinstance(size, Sequence) and len(size) == 2 and all(is_int(s) for s in size):
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"{name} must be None, an int or a (height, width) pair of ints, "
                         f"got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {size!r}")
    return pair[0], pair[1]


def size_field(default: Size) -> Any:
    """The ``size`` field of an :class:`ImageSizeOptions` with the task's own ``default``
    (``size: int | tuple[int, int] = size_field(64)`` in the task's ``Options``)."""
    return Field(default, description="image side, or (height, width): generated images are "
                                      "drawn at this size, real ones resized to it")


class ImageSizeOptions(BaseModel):
    """Mixin of a task's ``Options``: the ``size`` images are generated at or resized to.

    A task sets the smallest side it supports in :attr:`min_side` and, for its own default,
    redefines ``size`` with :func:`size_field` (the check stays).
    """

    #: the smallest image side the task supports, in pixels
    min_side: ClassVar[int] = 8

    size: int | tuple[int, int] = size_field(32)

    @field_validator("size")
    @classmethod
    def _size(cls, v: int | tuple[int, int]) -> int | tuple[int, int]:
        sides = (v,) if isinstance(v, int) else v
        if any(s < cls.min_side for s in sides):
            raise ValueError(f"size {v} is too small; use at least {cls.min_side} pixels a side")
        return v

    @property
    def image_size(self) -> tuple[int, int]:
        """``size`` as ``(height, width)``."""
        s = self.size
        return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def square_side(self, what: str = "synthetic scenes") -> int:
        """The side of square images, or a ``ValueError`` saying that ``what`` are square when
        ``size`` is not."""
        height, width = self.image_size
        if height != width:
            raise ValueError(f"{what} are square; got size {self.size}")
        return height


class ImageInput:
    """Mixin of a task whose inputs are RGB images of its options' ``size`` (its ``options``
    are :class:`ImageSizeOptions`)."""

    options: ImageSizeOptions

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the images the network sees."""
        return self.options.image_size

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(3, height, width)``."""
        return (3, *self.image_size)


def read_rgb(path: Path) -> np.ndarray:
    """The image file ``path`` as ``uint8 [H, W, 3]`` RGB (any mode is converted)."""
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def read_grey(path: Path) -> np.ndarray:
    """The image file ``path`` as ``uint8 [H, W]`` grey levels (any mode is converted)."""
    with Image.open(path) as img:
        return np.array(img.convert("L"))


def image_tensor(rgb: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` pixels as a ``float32 [3, H, W]`` tensor in ``[0, 1]``."""
    return torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255.0)


def resize_image(image: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
    """``image`` resized to ``size = (height, width)`` as ``float32 [C, H, W]`` in ``[0, 1]``:
    bilinear, antialiased, ``align_corners=False``; unchanged in size when ``size`` is
    ``None`` or already its size.

    ``image`` is either ``float [C, H, W]`` in ``[0, 1]`` (resized in float, clamped) or the
    ``uint8 [C, H, W]`` pixels of a file as read (:func:`pixels`): those are resized in
    ``uint8`` by torch's vectorised path, much faster than in float on one core, and
    converted after, which rounds each resized value to one of the 256 levels a file holds
    (within one level, 1/255, of the float result). The float image keeps its ``uint8``
    levels beside it (attribute ``_nastk_levels``, with the tensor's version counter: valid
    until the image is changed in place), so that a loader worker can send a quarter of the
    bytes (:mod:`nastk.data.loaders`)."""
    if size is not None:
        image = resample(image, size)
    return from_levels(image) if image.dtype == torch.uint8 else image


def resample(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``image`` (``[C, H, W]``, ``uint8`` levels or float in ``[0, 1]``) resized to ``size``
    in its own dtype: bilinear, antialiased, ``align_corners=False`` (float clamped to
    ``[0, 1]``); itself when it already has that size."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                        antialias=True)[0]
    return out if image.dtype == torch.uint8 else out.clamp_(0.0, 1.0)


def from_levels(levels: torch.Tensor) -> torch.Tensor:
    """``uint8`` levels (an image, a grey map: any shape) as ``float32`` in ``[0, 1]``
    (``levels / 255``), keeping the levels beside the result with its version counter
    (attribute ``_nastk_levels``): valid until the result is changed in place, they let a
    loader worker send a quarter of the bytes (:mod:`nastk.data.loaders`)."""
    out = levels.float().div_(255.0)
    out._nastk_levels = (levels, out._version)  # type: ignore[attr-defined]
    return out


def kept_levels(tensor: torch.Tensor) -> torch.Tensor | None:
    """The ``uint8`` levels :func:`from_levels` made ``tensor`` from, unless it was changed in
    place since (or was not made so)."""
    kept = getattr(tensor, "_nastk_levels", None)
    if kept is None or kept[1] != tensor._version:
        return None
    return kept[0]


def pixels(rgb: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` pixels as a ``uint8 [3, H, W]`` tensor viewing them (channels last
    in memory, the layout torch's fast ``uint8`` resize takes); :func:`resize_image` makes it
    a float image."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
