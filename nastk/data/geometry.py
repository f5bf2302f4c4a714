"""Crop windows and flips, applied alike to each kind of target a sample carries: an image, an
integer mask, a float map, ``(row, col)`` points on a map's grid, and boxes
(:mod:`nastk.data.augment` draws them).

A :class:`Window` is a crop as shares of the image's height and width, so that one window cuts
an image, its label file and a finer density map at each one's own resolution;
:class:`Geometry` is one sample's window and flip.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Geometry", "Window", "cut", "resize_map", "resize_mask"]


@dataclass(frozen=True)
class Window:
    """A crop as shares of the image: ``top``, ``left``, ``height``, ``width`` (may reach
    outside ``[0, 1]``: padding)."""

    top: float
    left: float
    height: float
    width: float

    def pixels(self, h: int, w: int) -> tuple[int, int, int, int]:
        """``(y0, x0, y1, x1)`` on a grid of ``h x w`` (at least one pixel each way)."""
        y0, x0 = round(self.top * h), round(self.left * w)
        y1 = max(y0 + 1, round((self.top + self.height) * h))
        x1 = max(x0 + 1, round((self.left + self.width) * w))
        return y0, x0, y1, x1


def cut(x: torch.Tensor, box: tuple[int, int, int, int], fill: float) -> torch.Tensor:
    """``x[..., y0:y1, x0:x1]``, padded with ``fill`` where the window leaves ``x``."""
    y0, x0, y1, x1 = box
    h, w = x.shape[-2:]
    pads = (max(0, -x0), max(0, x1 - w), max(0, -y0), max(0, y1 - h))
    if any(pads):
        x = F.pad(x, pads, value=fill)
        y0, y1, x0, x1 = y0 + pads[2], y1 + pads[2], x0 + pads[0], x1 + pads[0]
    return x[..., y0:y1, x0:x1]


def resize_mask(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An integer mask ``[H, W]`` resized by nearest neighbour."""
    if tuple(m.shape[-2:]) == size:
        return m.contiguous()
    # nearest neighbour picks a value of the mask for every pixel: no label is invented
    # (float32 holds every integer label exactly)
    out = F.interpolate(m[None, None].to(torch.float32), size=size, mode="nearest-exact")
    return out[0, 0].round_().to(m.dtype)


def resize_map(d: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A float map ``[H, W]`` resized bilinearly (antialiased), kept non-negative."""
    if tuple(d.shape[-2:]) == size:
        return d.contiguous()
    return F.interpolate(d[None, None].float(), size=size, mode="bilinear", align_corners=False,
                         antialias=True)[0, 0].clamp_(min=0.0).to(d.dtype)


class Geometry:
    """One sample's crop window and flip, applied to every part of it."""

    def __init__(self, window: Window | None, flip: bool) -> None:
        self.window, self.flip = window, flip

    def grid(self, x: torch.Tensor, fill: float,
             resize: Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]) -> torch.Tensor:
        """A tensor ``[..., H, W]`` cropped to the window, resized back to ``H x W``, flipped."""
        h, w = x.shape[-2:]
        if self.window is not None:
            x = resize(cut(x, self.window.pixels(h, w), fill), (h, w)).contiguous()
        return x.flip(-1) if self.flip else x

    def points(self, p: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """``[K, 2]`` ``(row, col)`` points on a grid of ``hw``: moved with their pixel's
        centre, the ones cropped out dropped."""
        h, w = hw
        if p.numel() == 0:
            return p
        rows, cols = p[:, 0].to(torch.float64), p[:, 1].to(torch.float64)
        if self.window is not None:
            y0, x0, y1, x1 = self.window.pixels(h, w)
            rows = torch.floor((rows + 0.5 - y0) * h / (y1 - y0))
            cols = torch.floor((cols + 0.5 - x0) * w / (x1 - x0))
        keep = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        if self.flip:
            cols = (w - 1) - cols
        return torch.stack([rows, cols], 1)[keep].to(p.dtype)

    def boxes(self, b: torch.Tensor, hw: tuple[int, int], min_box: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
        """``(boxes, kept, visible share of each kept box, zoom of areas)`` for ``[N, 4]`` boxes
        on an image of ``hw``."""
        h, w = hw
        b = b.to(torch.float64).reshape(-1, 4)
        sx = sy = 1.0
        if self.window is not None:
            y0, x0, y1, x1 = self.window.pixels(h, w)
            sx, sy = w / (x1 - x0), h / (y1 - y0)
            b = torch.stack([(b[:, 0] - x0) * sx, (b[:, 1] - y0) * sy,
                             (b[:, 2] - x0) * sx, (b[:, 3] - y0) * sy], 1)
        whole = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
        c = torch.stack([b[:, 0].clamp(0, w), b[:, 1].clamp(0, h), b[:, 2].clamp(0, w),
                         b[:, 3].clamp(0, h)], 1)
        bw, bh = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
        keep = (bw >= max(min_box, 1e-6)) & (bh >= max(min_box, 1e-6))
        share = torch.where(whole > 0, bw * bh / whole.clamp(min=1e-12), torch.ones_like(whole))
        if self.flip:
            c = torch.stack([w - c[:, 2], c[:, 1], w - c[:, 0], c[:, 3]], 1)
        return c[keep], keep, share[keep], sx * sy
