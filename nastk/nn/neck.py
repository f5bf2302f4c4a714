"""The feature-pyramid neck every dense task uses: a staged body's multi-scale features merged
top-down into maps of one width.

Each scale is projected to ``channels`` by a 1x1 convolution (its *lateral*); from the coarsest
scale down, the running map is upsampled (bilinear) to the next finer scale and added to its
lateral. With ``smooth`` a 3x3 convolution then cleans each merged map (the usual FPN output
convolution; detection heads read every level). Segmentation and saliency read the finest
merged map; detection reads them all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nastk.nn.body import feature_info

__all__ = ["FeaturePyramidNeck"]


class FeaturePyramidNeck(nn.Module):
    """Top-down feature pyramid over ``in_channels`` scales (finest first); ``forward``
    returns one ``channels``-wide map per scale, finest first."""

    def __init__(self, in_channels: Sequence[int], channels: int, *, smooth: bool = False
                 ) -> None:
        super().__init__()
        if not in_channels:
            raise ValueError("FeaturePyramidNeck needs at least one input scale")
        self.in_channels = [int(c) for c in in_channels]
        self.channels = int(channels)
        self.laterals = nn.ModuleList(nn.Conv2d(c, self.channels, 1) for c in self.in_channels)
        self.smooth = (nn.ModuleList(nn.Conv2d(self.channels, self.channels, 3, padding=1)
                                     for _ in self.in_channels) if smooth else None)

    @classmethod
    def for_body(cls, body: nn.Module, channels: int, *, smooth: bool = False
                 ) -> FeaturePyramidNeck:
        """A neck sized for a staged body's declared features."""
        return cls([f.channels for f in feature_info(body)], channels, smooth=smooth)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.laterals):
            raise ValueError(f"FeaturePyramidNeck: got {len(features)} feature maps, built for "
                             f"{len(self.laterals)}")
        y = self.laterals[-1](features[-1])
        merged = [y]
        for lateral, f in zip(reversed(self.laterals[:-1]), reversed(features[:-1]),
                              strict=True):
            y = lateral(f) + F.interpolate(y, size=f.shape[-2:], mode="bilinear",
                                           align_corners=False)
            merged.append(y)
        merged.reverse()
        if self.smooth is not None:
            merged = [conv(m) for conv, m in zip(self.smooth, merged, strict=True)]
        return merged
