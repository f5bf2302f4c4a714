"""The networks of the full once-for-all MobileNetV3 space (``ofa_mbv3_full``): the weight-sharing
supernet, laid out as once-for-all's ``OFAMobileNetV3`` (kernel and expand ratio per block, depth
per stage, elastic input resolution), and the plain body its ``extract`` hands out.

Layout, top to bottom (``W`` = ``make_divisible(width * width_mult, 8)``):

- ``stem``: 3x3 conv, stride 2, to ``W(16)`` + BN + h-swish;
- ``first_block``: a fixed MBConv (expand 1, 3x3 depthwise, ReLU, no squeeze-excite) to
  ``W(16)``, residual when its input and output widths agree;
- ``stages``: five stages of up to four elastic MBConv blocks (widths ``W(24, 40, 80, 112,
  160)``, first-block strides 2, 2, 2, 1, 2, activations ReLU, ReLU, h-swish, h-swish, h-swish,
  squeeze-excite in stages 2, 4 and 5), each block with its own kernel {3, 5, 7} (a centre crop
  of the 7x7 kernel through the learned 7to5 and 5to3 transform matrices) and expand ratio
  {3, 4, 6};
- ``final``: 1x1 conv to ``W(960)`` + BN + h-swish: the body's output.

Once-for-all's classifier (global pooling, a 1x1 conv to ``W(1280)`` + h-swish, dropout, linear)
is the classification task's head with ``head_hidden: 1280``. When the architecture has a
``resolution``, the body first resizes its input so that the shorter side is that many pixels
(bilinear, antialiased when shrinking); an input already at that size passes untouched.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nastk.core.errors import InvalidArchitectureError
from nastk.nn.body import StagedBody, StemStagesBody
from nastk.nn.supernet import SupernetBody
from nastk.search_spaces.ofa_mbv3.layers import ElasticMBConv, _activation
from nastk.search_spaces.ofa_mbv3.stages import ElasticStages, elastic_stages

__all__ = ["OFAFullBody", "OFAFullSupernet", "resize_input"]


def resize_input(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """``x`` resized so that its shorter side is ``resolution`` pixels, the aspect ratio kept
    (bilinear, antialiased when shrinking); unchanged when it already is, or without a
    resolution."""
    if resolution is None:
        return x
    h, w = (int(s) for s in x.shape[-2:])  # ints, also while traced (fvcore's count)
    short = min(h, w)
    if short == resolution:
        return x
    size = (resolution, max(1, round(w * resolution / h))) if h <= w else \
        (max(1, round(h * resolution / w)), resolution)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                         antialias=resolution < short)


class OFAFullBody(StemStagesBody):
    """A plain once-for-all MobileNetV3 body (what :meth:`OFAFullSupernet.extract` returns):
    ``stem`` (the stem conv, then the first block), one ``nn.Sequential`` of
    :class:`MBConvBlock` per stage, ``final``; the input is resized to ``resolution`` first
    (when set). ``forward_features`` returns every stage's output."""

    def __init__(self, stem: nn.Module, first_block: nn.Module, stages: Sequence[nn.Module],
                 final: nn.Module, out_channels: int, feature_channels: Sequence[int],
                 feature_strides: Sequence[int], resolution: int | None) -> None:
        super().__init__()
        self.stem = nn.Sequential(stem, first_block)
        self.stages = nn.ModuleList(stages)
        self.final = final
        self.resolution = resolution
        self.resizes_input = resolution is not None
        self.out_channels: int = int(out_channels)
        self.feature_channels: list[int] = [int(c) for c in feature_channels]
        self.feature_strides: list[int] = [int(s) for s in feature_strides]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return super().forward_features(resize_input(x, self.resolution))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(resize_input(x, self.resolution))


class OFAFullSupernet(ElasticStages, SupernetBody, StagedBody):
    """The once-for-all MobileNetV3 supernet (see the module docstring). An architecture is
    ``{"depth": 5 values, "kernel": 5 * max_depth values, "expand": 5 * max_depth values}``
    (block ``j`` of stage ``s`` at ``s * max_depth + j``; blocks beyond a stage's depth do not
    run), plus ``resolution`` when the space searches it."""

    def __init__(self, in_channels: int, stem_channels: int, first_channels: int,
                 widths: Sequence[int], strides: Sequence[int], se_stages: Sequence[bool],
                 activations: Sequence[str], depths: Sequence[int], expands: Sequence[float],
                 kernels: Sequence[int], final_channels: int,
                 resolutions: Sequence[int] | None = None) -> None:
        super().__init__()
        self.choices: dict[str, tuple[Any, ...]] = {
            "depth": tuple(depths), "expand": tuple(expands), "kernel": tuple(kernels)}
        self.resolutions = tuple(resolutions) if resolutions else None
        self.resizes_input = self.resolutions is not None
        self.max_depth = max(depths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(stem_channels), _activation("hswish"))
        self.first_block = ElasticMBConv(stem_channels, first_channels, 1, (3,), 1, "relu",
                                         False)
        self.stages, c = elastic_stages(first_channels, widths, strides, se_stages,
                                        activations, self.max_depth, max(expands), kernels)
        self.final = nn.Sequential(nn.Conv2d(c, final_channels, 1, bias=False),
                                   nn.BatchNorm2d(final_channels), _activation("hswish"))
        self.out_channels: int = int(final_channels)
        self.feature_channels: list[int] = [int(w) for w in widths]
        total, self.feature_strides = 2, []
        for s in strides:
            total *= s
            self.feature_strides.append(int(total))
        n_blocks = len(widths) * self.max_depth
        largest: dict[str, Any] = {"depth": [self.max_depth] * len(widths),
                                   "expand": [max(expands)] * n_blocks,
                                   "kernel": [max(kernels)] * n_blocks}
        if self.resolutions:
            largest["resolution"] = max(self.resolutions)
        self.active_depth: list[int] = list(largest["depth"])
        self.active_resolution: int | None = None
        self.set_active(largest)

    # -- activation -----------------------------------------------------------------------------
    def _check(self, arch: Mapping[str, Any]) -> None:
        n = len(self.stages)
        sizes = {"depth": n, "expand": n * self.max_depth, "kernel": n * self.max_depth}
        for name, allowed in self.choices.items():
            value = arch.get(name)
            if not isinstance(value, (list, tuple)) or len(value) != sizes[name]:
                raise InvalidArchitectureError(
                    f"ofa_mbv3_full supernet: {name!r} needs {sizes[name]} values, got {value!r}")
            for i, v in enumerate(value):
                if isinstance(v, bool) or v not in allowed:
                    raise InvalidArchitectureError(
                        f"ofa_mbv3_full supernet: {name!r}[{i}] is {v!r}, not one of "
                        f"{list(allowed)}")
        if self.resolutions and arch.get("resolution") not in self.resolutions:
            raise InvalidArchitectureError(
                f"ofa_mbv3_full supernet: resolution {arch.get('resolution')!r} is not one of "
                f"{list(self.resolutions)}")

    def set_active(self, arch: Mapping[str, Any]) -> None:
        self._check(arch)
        for s, blocks in enumerate(self.stages):
            for j, block in enumerate(blocks):
                i = s * self.max_depth + j
                block.set_active(arch["expand"][i], arch["kernel"][i])
        self.active_depth = [int(d) for d in arch["depth"]]
        self.active_resolution = int(arch["resolution"]) if self.resolutions else None

    # -- forward --------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output for the active architecture, first stage first."""
        return self.run_stages(self.first_block(self.stem(resize_input(
            x, self.active_resolution))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.forward_features(x)[-1])

    # -- sub-networks ---------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any]) -> OFAFullBody:
        """A plain :class:`OFAFullBody` for ``arch`` with copies of the active weights (``arch``
        becomes the active architecture)."""
        self.set_active(arch)
        body = OFAFullBody(copy.deepcopy(self.stem), self.first_block.extract(),
                           self.extract_stages(), copy.deepcopy(self.final),
                           self.out_channels, self.feature_channels, self.feature_strides,
                           self.active_resolution)
        return body.to(self.stem[0].weight.device).train(self.training)
