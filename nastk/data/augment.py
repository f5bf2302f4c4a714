"""Training augmentation that keeps every target right: random scale-and-crop or random resized
crop, horizontal flip and colour jitter, applied to an image together with its mask, density
maps, fixation points or boxes.

A task turns it on for its training split only: :class:`Augment` (the ``augment:`` option of
the built-in tasks) says what to draw, :class:`TargetLayout` says where the targets of the
task's samples are, and :class:`Augmented` wraps the training dataset. Evaluation splits are
never wrapped, and an :class:`Augmented` dataset read outside a training loader (a plain
integer index: checks, drawings, baselines) returns its samples unchanged.

Every draw comes from a ``torch.Generator`` seeded per sample by the loader
(:func:`nastk.data.loaders.make_loader`): the seed is made from the sample's index and the state
of the loader's shuffling generator at the start of the pass, so a loader with worker processes
yields exactly the batches of one without, and every epoch draws anew.

Geometry. A crop is a window of the image, as shares of its height and width: random
scale-and-crop scales the image by ``s`` and cuts the working size out of it (a window of
``size / s``, padded where it leaves the image: images with 0, masks with the ignore label,
maps with 0); random resized crop picks a window of a share of the area and an aspect ratio
inside the image (drawn at the working ``size``). The window is resized back to each target's
own resolution (a density map may be finer than the image), so:

- images are resized bilinearly with antialiasing (in ``uint8`` when they are a file's levels,
  as :func:`nastk.data.images.resize_image` does);
- masks by nearest neighbour: every label value out is a value in (or the ignore label of the
  padding); no value is ever interpolated;
- density maps bilinearly (antialiased, kept non-negative);
- fixation points ``(row, col)`` move with their pixel's centre and are dropped when the crop
  leaves them out;
- boxes ``(x0, y0, x1, y1)`` move, are clipped to the image, and are dropped when a side is
  shorter than ``min_box`` pixels; the per-box fields (labels, crowd and difficult flags,
  areas) stay aligned; ``area`` (in the image's pixels) is scaled by the zoom and the share of
  the box left visible, ``orig_area`` (in the file's pixels) by that share alone.

A folder data set's sample (:class:`~nastk.data.folders.FolderDataset`, resized to one
``size``) is cut from its files at their own resolution: the window is drawn before the sample
is read and is pending while the folder reads it (:func:`pending_crop`), so the image (and a
segmentation label) is cropped from the file and resized once, and zooming in (``s > 1``)
reads the file's finer pixels. Other data sets (generated scenes held in memory) are cropped
at the size they come in.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.utils.data import Dataset

from nastk.data.geometry import Geometry, Window, cut, resize_map, resize_mask
from nastk.data.images import from_levels, kept_levels, resample
from nastk.data.nesting import inner_datasets, within

__all__ = ["Augment", "AugmentOption", "Augmented", "FileCrop", "Jitter", "TargetLayout",
           "augment_field", "augmented_in", "pending_crop", "resolve_augment", "sample_seed"]


class Jitter(BaseModel):
    """Colour jitter: each factor is drawn uniformly in ``[1 - x, 1 + x]`` (0: off)."""

    model_config = ConfigDict(extra="forbid")

    brightness: float = Field(0.0, ge=0.0, lt=1.0, description="scales every channel")
    contrast: float = Field(0.0, ge=0.0, lt=1.0, description="scales the distance to the "
                            "image's mean grey level")
    saturation: float = Field(0.0, ge=0.0, lt=1.0, description="scales the distance of each "
                              "pixel to its own grey level")

    @property
    def active(self) -> bool:
        return bool(self.brightness or self.contrast or self.saturation)


class Augment(BaseModel):
    """What a training split draws for every sample (the ``augment:`` option of a task).

    ``flip``: probability of a horizontal flip. ``scale: [lo, hi]``: random scale-and-crop by
    a factor drawn uniformly in ``[lo, hi]`` (segmentation, detection). ``resized_crop:
    [lo, hi]``: random resized crop of a share of the image's area drawn in ``[lo, hi]``, with an
    aspect ratio drawn log-uniformly in ``ratio`` (classification). ``jitter``: colour
    jitter. ``min_box``: boxes with a side shorter than this many pixels after the crop are
    dropped.
    """

    model_config = ConfigDict(extra="forbid")

    flip: float = Field(0.5, ge=0.0, le=1.0, description="probability of a horizontal flip")
    scale: tuple[float, float] | None = Field(None, description="random scale-and-crop: "
                                              "[lo, hi] factors, 0 < lo <= hi")
    resized_crop: tuple[float, float] | None = Field(
        None, description="random resized crop: [lo, hi] shares of the area, 0 < lo <= hi <= 1")
    ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="resized_crop: aspect "
                                       "ratio range (width / height)")
    jitter: Jitter = Field(default_factory=Jitter)
    min_box: float = Field(2.0, ge=0.0, description="detection: shortest box side kept, in "
                           "pixels after the crop")

    @model_validator(mode="after")
    def _check(self) -> Augment:
        if self.scale is not None:
            lo, hi = self.scale
            if not (0 < lo <= hi and math.isfinite(hi)):
                raise ValueError(f"augment.scale must be [lo, hi] with 0 < lo <= hi, got "
                                 f"{list(self.scale)}")
        if self.resized_crop is not None:
            lo, hi = self.resized_crop
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"augment.resized_crop must be [lo, hi] shares of the area "
                                 f"with 0 < lo <= hi <= 1, got {list(self.resized_crop)}")
            if self.scale is not None:
                raise ValueError("augment: give scale (random scale-and-crop) or resized_crop "
                                 "(random resized crop), not both")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"augment.ratio must be [lo, hi] with 0 < lo <= hi, got "
                             f"{list(self.ratio)}")
        return self

    @property
    def active(self) -> bool:
        return bool(self.flip or self.scale or self.resized_crop or self.jitter.active)


#: a task's ``augment:`` option: ``default`` (the data set's default: off for generated data,
#: the task's preset for a real data set), ``off``, or the draws themselves
AugmentOption = Literal["default", "off"] | Augment


def augment_field() -> Any:
    """The ``augment`` field of a task's options."""
    return Field("default", description="training augmentation: default (off for generated "
                 "data, the task's preset for a real data set), off, or {flip, scale, "
                 "resized_crop, ratio, jitter: {brightness, contrast, saturation}, min_box}")


def resolve_augment(option: AugmentOption, real_data: bool, preset: Augment) -> Augment | None:
    """The augmentation a training split of a real data set (``real_data``) or of generated
    data gets: ``None`` when off."""
    if option == "off" or (option == "default" and not real_data):
        return None
    chosen = preset if option == "default" else option
    assert isinstance(chosen, Augment)
    return chosen if chosen.active else None


@dataclass(frozen=True)
class TargetLayout:
    """Where a task's targets are, for :class:`Augmented`.

    ``mask``: the target is an integer ``[H, W]`` mask at the image's resolution (padded with
    ``ignore_index``). Otherwise the target is a dict (or nothing moves: a class label):
    ``maps`` are keys of float ``[H, W]`` maps (at any resolution), ``points`` keys of
    ``[K, 2]`` integer ``(row, col)`` points on the grid of the map ``points_on``, ``boxes`` the
    key of ``[N, 4]`` ``(x0, y0, x1, y1)`` boxes in the image's pixels, ``per_box`` the keys
    of the fields aligned with them (``area`` is scaled with the box).
    """

    mask: bool = False
    ignore_index: int = 255
    maps: tuple[str, ...] = ()
    points: tuple[str, ...] = ()
    points_on: str | None = None
    boxes: str | None = None
    per_box: tuple[str, ...] = ()


# -- the crop a folder data set takes from the file ------------------------------------------------
@dataclass
class FileCrop:
    """The window an :class:`Augmented` folder sample is cut to, pending while the folder data
    set reads it: the data set crops the image (and a mask at the image's resolution) from the
    file before resizing and says so (``image``, ``mask``); what it does not crop, the
    augmentation crops after (boxes, density maps, points: at their own resolution)."""

    window: Window
    image: bool = False
    mask: bool = False

    def cut(self, x: torch.Tensor, fill: float) -> torch.Tensor:
        """``x`` (``[..., H, W]``, any resolution) cut to the window, padded with ``fill``."""
        h, w = x.shape[-2:]
        return cut(x, self.window.pixels(h, w), fill).contiguous()


_crop: list[FileCrop | None] = [None]


@contextlib.contextmanager
def _pending(crop: FileCrop | None) -> Iterator[None]:
    previous = _crop[0]
    _crop[0] = crop
    try:
        yield
    finally:
        _crop[0] = previous


def pending_crop() -> FileCrop | None:
    """The crop an :class:`Augmented` wrapper asks of the folder sample being read (``None``
    outside one, or when it draws no crop)."""
    return _crop[0]


# -- the seed of the sample being read ------------------------------------------------------------
_seed: list[int | None] = [None]


@contextlib.contextmanager
def sample_seed(seed: int | None) -> Iterator[None]:
    """Within it, an :class:`Augmented` dataset draws from a generator seeded by ``seed`` (set by
    the loader around each sample it reads); outside, it does not augment."""
    previous = _seed[0]
    _seed[0] = seed
    try:
        yield
    finally:
        _seed[0] = previous


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))


def _crop_window(image_hw: tuple[int, int], a: Augment, gen: torch.Generator) -> Window | None:
    h, w = image_hw
    if a.scale is not None:
        s = _uniform(gen, *a.scale)
        side = 1.0 / s
        # the window of size/s slides over the image (or, when larger, the image inside it)
        return Window((1.0 - side) * _uniform(gen, 0, 1), (1.0 - side) * _uniform(gen, 0, 1),
                      side, side)
    if a.resized_crop is not None:
        lo, hi = a.resized_crop
        log_lo, log_hi = math.log(a.ratio[0]), math.log(a.ratio[1])
        for _ in range(10):  # a window of that area and ratio that fits, as commonly done
            area = _uniform(gen, lo, hi) * h * w
            ratio = math.exp(_uniform(gen, log_lo, log_hi))
            cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
            if cw <= w and ch <= h:
                top, left = _uniform(gen, 0, h - ch), _uniform(gen, 0, w - cw)
                return Window(top / h, left / w, ch / h, cw / w)
        ratio = min(max(w / h, a.ratio[0]), a.ratio[1])  # the largest centred window
        cw, ch = (w, w / ratio) if w / h < ratio else (h * ratio, h)
        return Window((h - ch) / 2 / h, (w - cw) / 2 / w, ch / h, cw / w)
    return None


def _grey(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of a ``[3, H, W]`` image, ``[1, H, W]``."""
    return (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]


def _jitter(x: torch.Tensor, j: Jitter, gen: torch.Generator) -> torch.Tensor:
    """Brightness ``b`` (``x b``), then contrast ``c`` (the distance to the mean grey level
    scaled), then saturation ``s`` (each pixel's distance to its grey level scaled), clamped to
    ``[0, 1]`` once at the end. The three are linear, so they are applied in one pass:
    ``x' = s c b x + (1 - s) c b g + (1 - c) b mean(g)``, ``g`` the grey levels of ``x``."""
    b = _uniform(gen, 1 - j.brightness, 1 + j.brightness) if j.brightness else 1.0
    c = _uniform(gen, 1 - j.contrast, 1 + j.contrast) if j.contrast else 1.0
    colour = x.shape[0] == 3
    s = (_uniform(gen, 1 - j.saturation, 1 + j.saturation)
         if j.saturation and colour else 1.0)
    grey = _grey(x) if colour else x
    out = x.mul(s * c * b)
    if s != 1.0:
        out.add_(grey, alpha=(1 - s) * c * b)
    if c != 1.0:
        out.add_((1 - c) * b * float(grey.mean()))
    return out.clamp_(0.0, 1.0)


class Augmented(Dataset):
    """``dataset`` (samples ``(image [C, H, W], target)``) augmented by ``augment`` with targets
    laid out as ``layout``: inside a training loader (:func:`sample_seed` set) every sample is
    drawn anew; read with a plain index outside one, it is ``dataset``'s sample unchanged."""

    def __init__(self, dataset: Dataset, augment: Augment, layout: TargetLayout) -> None:
        self.dataset, self.augment, self.layout = dataset, augment, layout

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        seed = _seed[0]
        if seed is None:
            return self.dataset[index]
        gen = torch.Generator().manual_seed(seed)
        hw = self._folder_size()
        if hw is None:
            x, target = self.dataset[index]
            return self.apply(x, target, gen)
        # a folder's images (and masks) are cut from the file at its own resolution: the
        # window is drawn first and the folder dataset crops before it resizes
        geo = self._draw(hw, gen)
        crop = FileCrop(geo.window) if geo.window is not None else None
        with _pending(crop):
            x, target = self.dataset[index]
        return self._finish(x, target, geo, gen, crop)

    def __repr__(self) -> str:
        return f"Augmented({self.dataset!r}, {self.augment!r})"

    def apply(self, x: torch.Tensor, target: Any, gen: torch.Generator
              ) -> tuple[torch.Tensor, Any]:
        """``(x, target)`` augmented with the draws of ``gen`` (the crop taken from ``x``)."""
        geo = self._draw((int(x.shape[-2]), int(x.shape[-1])), gen)
        return self._finish(x, target, geo, gen, None)

    def _folder_size(self) -> tuple[int, int] | None:
        """The size every image of the wrapped folder data sets is resized to (``None`` when
        they are not folders, or not resized to one size)."""
        if not hasattr(self, "_size"):
            leaves = [d for d in within(self.dataset) if not inner_datasets(d)]
            # folder data sets (nastk.data.folders.FolderDataset) crop a pending window
            sizes = {getattr(d, "size", None) if hasattr(d, "_resized") else None
                     for d in leaves}
            self._size = sizes.pop() if len(sizes) == 1 else None
        return self._size

    def _draw(self, hw: tuple[int, int], gen: torch.Generator) -> Geometry:
        a = self.augment
        return Geometry(_crop_window(hw, a, gen), bool(a.flip) and _uniform(gen, 0, 1) < a.flip)

    def _finish(self, x: torch.Tensor, target: Any, geo: Geometry, gen: torch.Generator,
                crop: FileCrop | None) -> tuple[torch.Tensor, Any]:
        """The sample with ``geo`` applied to what the folder did not crop already (``crop``),
        then the colour jitter."""
        a = self.augment
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        on_image = Geometry(None, geo.flip) if crop is not None and crop.image else geo
        # a file image's uint8 levels (kept by resize_image) are cropped and resized as
        # levels; unless a colour jitter changes them, a worker then sends those
        levels = kept_levels(x)
        if levels is not None:  # cropped and resized in uint8: much faster on one core
            x = from_levels(on_image.grid(levels, 0, resample).contiguous())
        else:
            x = on_image.grid(x, 0.0, resample)
        if a.jitter.active:
            x = _jitter(x.float(), a.jitter, gen)
        on_mask = Geometry(None, geo.flip) if crop is not None and crop.mask else geo
        return x, self._target(target, geo, hw, on_mask)

    def _target(self, target: Any, geo: Geometry, hw: tuple[int, int],
                on_mask: Geometry) -> Any:
        lay = self.layout
        if lay.mask:
            return on_mask.grid(target, float(lay.ignore_index), resize_mask)
        if not isinstance(target, Mapping):
            return target
        out = dict(target)
        for key in lay.maps:
            levels = kept_levels(target[key])
            if levels is not None and geo.window is None:  # a flip keeps a map's file levels
                out[key] = from_levels(levels.flip(-1) if geo.flip else levels)
            else:
                out[key] = geo.grid(target[key], 0.0, resize_map)
        for key in lay.points:
            on = target[lay.points_on] if lay.points_on else None
            grid = hw if on is None else (int(on.shape[-2]), int(on.shape[-1]))
            out[key] = geo.points(torch.as_tensor(target[key]), grid)
        if lay.boxes is not None:
            boxes = torch.as_tensor(target[lay.boxes])
            moved, keep, share, zoom = geo.boxes(boxes, hw, self.augment.min_box)
            out[lay.boxes] = moved.to(boxes.dtype if boxes.is_floating_point()
                                      else torch.float32)
            for key in lay.per_box:
                if key in target and target[key] is not None:
                    v = torch.as_tensor(target[key])
                    v = v[keep]
                    if key == "area":  # in the image's pixels: zoomed, less what is cut
                        v = (v.to(torch.float64) * share * zoom).to(v.dtype)
                    elif key == "orig_area":  # in the file's pixels: less what is cut
                        v = (v.to(torch.float64) * share).to(v.dtype)
                    out[key] = v
        return out


def augmented_in(dataset: Any) -> bool:
    """Whether ``dataset`` is, or wraps, an :class:`Augmented` data set."""
    return any(isinstance(d, Augmented) for d in within(dataset))
