"""A once-for-all MobileNetV3 search space: elastic depth, expand ratio and kernel per stage.

One supernet (:class:`OFAMobileNetV3Supernet`) holds every architecture: per stage up to
``max(depths)`` MBConv blocks whose 1x1 expand conv, depthwise conv (elastic kernel with the OFA
kernel-transform matrices), squeeze-excite and 1x1 project conv are sliced from shared weights.
``extract(arch)`` hands out a plain body (:class:`OFAMobileNetV3Body`, only ``nn.Conv2d`` /
``nn.BatchNorm2d`` / activations / :class:`SqueezeExcite`) whose output equals the supernet's.

Sizes and costs (``OFAMobileNetV3Space(**options).summary(...)``, measured with
``nastk.cost``; bodies only, no classifier head unless said; FLOPs are fvcore's, one fused
multiply-add = one flop):

- default options, 3x32x32 input: 14,348,907 architectures (27 per stage, 5 stages);
  smallest body 346,976 params / 12.67 MFLOPs, largest body 2,154,376 params / 75.07 MFLOPs.
  With a 1x32x32 input and a 6-class pool + linear head (the synthetic classification task):
  smallest 348,230 params / 12.38 MFLOPs, largest 2,155,630 params / 74.78 MFLOPs.
- OFA-like options (``OFA_MBV3_OPTIONS``: stem 16 channels stride 2, widths
  [24, 40, 80, 112, 160], strides [2, 2, 2, 1, 2], SE [F, T, F, T, T], activations
  relu, relu, hswish, hswish, hswish, final 1x1 conv to 960), 3x224x224, same 14,348,907
  architectures: bodies smallest 900,528 params / 119.34 MFLOPs, largest 5,154,496 params /
  576.62 MFLOPs; with a 1000-class pool + linear head on the 960 features: smallest 1,861,528
  / 120.35 M, largest 6,115,496 / 577.63 M. Real OFA-MBv3 also has a fixed first 16-channel
  block and a 960 -> 1280 feature-mix layer before the classifier (and chooses expand and
  kernel per block, not per stage), which this space does not.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from nastk.errors import InvalidArchitectureError
from nastk.space.architecture import Architecture
from nastk.space.dimensions import StageList
from nastk.supernet.base import SupernetBody, SupernetSpace
from nastk.supernet.dynamic_conv import ElasticDynamicConv2d
from nastk.supernet.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    importance_order,
    reorder_in_channels,
    reorder_out_channels,
)

__all__ = ["OFA_MBV3_OPTIONS", "ElasticMBConv", "ElasticSqueezeExcite", "MBConvBlock",
           "OFAMobileNetV3Body", "OFAMobileNetV3Space", "OFAMobileNetV3Supernet",
           "SqueezeExcite", "make_divisible"]

#: Options close to the original OFA MobileNetV3 (ImageNet, 224x224; see the module docstring).
OFA_MBV3_OPTIONS: dict[str, Any] = {
    "stages": [24, 40, 80, 112, 160], "strides": [2, 2, 2, 1, 2], "stem_stride": 2,
    "stem_channels": 16, "se_stages": [False, True, False, True, True],
    "activations": ["relu", "relu", "hswish", "hswish", "hswish"], "final_channels": 960,
}

_MBV3_DEFAULTS = {  # for the default 5 stages
    "strides": [1, 2, 2, 2, 1],
    "se_stages": [False, False, True, False, True],
    "activations": ["relu", "relu", "relu", "hswish", "hswish"],
}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """The nearest multiple of ``divisor`` (at least ``min_value``, default ``divisor``) that
    is not more than 10% below ``value`` (the MobileNet / OFA rule)."""
    min_value = divisor if min_value is None else min_value
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return int(new)


def mid_channels(block_in: int, expand: float) -> int:
    """Expanded channels of an MBConv block: ``make_divisible(round(block_in * expand), 8)``."""
    return make_divisible(round(block_in * expand), 8)


def se_channels(mid: int) -> int:
    """Squeeze-excite bottleneck channels for ``mid`` channels."""
    return make_divisible(mid // 4, 8)


def _activation(name: str) -> nn.Module:
    return nn.Hardswish() if name == "hswish" else nn.ReLU(inplace=True)


# -- plain (extracted) modules --------------------------------------------------------------------
class SqueezeExcite(nn.Module):
    """Squeeze-excite: global mean, 1x1 reduce conv (bias) + ReLU, 1x1 expand conv (bias) +
    hard sigmoid, channel-wise scaling of the input."""

    def __init__(self, reduce: nn.Conv2d, expand: nn.Conv2d) -> None:
        super().__init__()
        self.reduce, self.expand = reduce, expand

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = F.hardsigmoid(self.expand(F.relu(self.reduce(y))))
        return x * y


class MBConvBlock(nn.Module):
    """Plain MBConv: [1x1 expand + BN + act] -> kxk depthwise + BN + act -> [SE] -> 1x1
    project + BN, plus the input when ``residual``."""

    def __init__(self, expand: nn.Module | None, depthwise: nn.Module, se: nn.Module | None,
                 project: nn.Module, residual: bool) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.se = se
        self.project = project
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.depthwise(h)
        if self.se is not None:
            h = self.se(h)
        h = self.project(h)
        return x + h if self.residual else h


class OFAMobileNetV3Body(nn.Module):
    """A plain MobileNetV3 body (what the supernet's ``extract`` returns): stem, one
    ``nn.Sequential`` of :class:`MBConvBlock` per stage, final 1x1 conv + BN + act.

    ``forward`` returns ``out_channels`` channels at ``feature_strides[-1]`` times smaller
    resolution; ``forward_features`` returns every stage's output (``feature_channels``)."""

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], final: nn.Module,
                 out_channels: int, feature_channels: Sequence[int],
                 feature_strides: Sequence[int]) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.final = final
        self.out_channels: int = int(out_channels)
        self.feature_channels: list[int] = [int(c) for c in feature_channels]
        self.feature_strides: list[int] = [int(s) for s in feature_strides]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output, first stage first."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.final(x)


# -- elastic modules ----------------------------------------------------------------------------
class ElasticSqueezeExcite(nn.Module):
    """Squeeze-excite over the first ``c`` of ``max_channels`` channels (``c`` follows the
    input); the bottleneck has ``se_channels(c)`` channels, sliced from the largest."""

    def __init__(self, max_channels: int) -> None:
        super().__init__()
        self.max_channels = max_channels
        self.max_reduced = se_channels(max_channels)
        self.reduce = ElasticConv2d(max_channels, self.max_reduced, (1,), bias=True,
                                    kernel_transform=False)
        self.expand = ElasticConv2d(self.max_reduced, max_channels, (1,), bias=True,
                                    kernel_transform=False)

    def set_active(self, channels: int) -> None:
        self.reduce.set_active(out_channels=se_channels(channels))
        self.expand.set_active(out_channels=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = F.hardsigmoid(self.expand(F.relu(self.reduce(y))))
        return x * y

    @torch.no_grad()
    def extract(self, channels: int) -> SqueezeExcite:
        self.set_active(channels)
        return SqueezeExcite(self.reduce.extract(channels),
                             self.expand.extract(se_channels(channels)))


class ElasticMBConv(nn.Module):
    """An MBConv block with elastic expand ratio (the mid channels) and depthwise kernel.

    Layers: 1x1 expand :class:`ElasticConv2d` (left out when the largest expand ratio is 1, as
    in OFA) + :class:`ElasticBatchNorm2d` + act, depthwise :class:`ElasticConv2d` (elastic
    kernel, ``stride``) + BN + act, optional :class:`ElasticSqueezeExcite`, 1x1 project conv to
    the fixed ``out_channels`` + ``nn.BatchNorm2d``; residual when stride 1 and in == out."""

    def __init__(self, in_channels: int, out_channels: int, max_expand: float,
                 kernels: Sequence[int], stride: int, activation: str, se: bool,
                 conv_types: Sequence[str] = ("static",), dynamic_kernels: int = 4) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.stride, self.activation = stride, activation
        self.has_expand = max_expand != 1
        self.max_mid = mid_channels(in_channels, max_expand) if self.has_expand else in_channels
        mid = self.max_mid
        if self.has_expand:
            self.expand_conv: ElasticConv2d | None = ElasticConv2d(
                in_channels, mid, (1,), kernel_transform=False)
            self.expand_bn: ElasticBatchNorm2d | None = ElasticBatchNorm2d(mid)
        else:
            self.expand_conv = self.expand_bn = None
        # the depthwise conv: static, attention-mixed dynamic, or both (chosen per arch); each
        # has its own BN since their output statistics differ
        self.dw = (ElasticConv2d(mid, mid, kernels, stride=stride, depthwise=True)
                   if "static" in conv_types else None)
        self.dw_bn = ElasticBatchNorm2d(mid) if "static" in conv_types else None
        self.dw_dynamic = (ElasticDynamicConv2d(mid, mid, kernels, num_kernels=dynamic_kernels,
                                                stride=stride, depthwise=True)
                           if "dynamic" in conv_types else None)
        self.dw_dynamic_bn = ElasticBatchNorm2d(mid) if "dynamic" in conv_types else None
        self.active_conv = "static" if "static" in conv_types else "dynamic"
        self.se = ElasticSqueezeExcite(mid) if se else None
        self.project = ElasticConv2d(mid, out_channels, (1,), kernel_transform=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self.act = _activation(activation)
        self.residual = stride == 1 and in_channels == out_channels
        self.active_mid = mid

    def _depthwise(self) -> tuple[nn.Module, ElasticBatchNorm2d]:
        """The active depthwise conv and its norm."""
        if self.active_conv == "dynamic":
            assert self.dw_dynamic is not None and self.dw_dynamic_bn is not None
            return self.dw_dynamic, self.dw_dynamic_bn
        assert self.dw is not None and self.dw_bn is not None
        return self.dw, self.dw_bn

    def set_active(self, expand: float, kernel: int, conv: str | None = None) -> None:
        mid = mid_channels(self.in_channels, expand) if self.has_expand else self.in_channels
        if mid > self.max_mid:
            raise ValueError(f"expand {expand} gives {mid} channels, more than the block's "
                             f"{self.max_mid}")
        if conv is not None:
            if (self.dw if conv == "static" else self.dw_dynamic) is None:
                raise ValueError(f"this block has no {conv!r} depthwise conv")
            self.active_conv = conv
        if self.expand_conv is not None:
            self.expand_conv.set_active(out_channels=mid)
        self._depthwise()[0].set_active(kernel=kernel)
        if self.se is not None:
            self.se.set_active(mid)
        self.active_mid = mid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.expand_conv is not None:
            h = self.act(self.expand_bn(self.expand_conv(h)))
        dw, dw_bn = self._depthwise()
        h = self.act(dw_bn(dw(h)))
        if self.se is not None:
            h = self.se(h)
        h = self.project_bn(self.project(h))
        return x + h if self.residual else h

    @torch.no_grad()
    def extract(self) -> MBConvBlock:
        """The plain block for the active setting (call :meth:`set_active` first)."""
        mid = self.active_mid
        expand = None
        if self.expand_conv is not None:
            assert self.expand_bn is not None
            expand = nn.Sequential(self.expand_conv.extract(self.in_channels),
                                   self.expand_bn.extract(mid), _activation(self.activation))
        dw, dw_bn = self._depthwise()
        depthwise = nn.Sequential(dw.extract(mid), dw_bn.extract(mid),
                                  _activation(self.activation))
        se = self.se.extract(mid) if self.se is not None else None
        project = nn.Sequential(self.project.extract(mid), copy.deepcopy(self.project_bn))
        return MBConvBlock(expand, depthwise, se, project, self.residual).train(self.training)

    @torch.no_grad()
    def reorganize_channels(self) -> None:
        """Sort the mid channels by the L1 norm of the project conv's input weights (largest
        first), and the SE bottleneck by its expand conv's input weights; the function of the
        full-width block is unchanged."""
        if self.expand_conv is None or self.expand_bn is None:
            return  # the mid channels are the block's input: nothing elastic to sort
        order = importance_order(self.project)
        reorder_out_channels(self.expand_conv, order)
        reorder_out_channels(self.expand_bn, order)
        for conv in (self.dw, self.dw_bn, self.dw_dynamic, self.dw_dynamic_bn):
            if conv is not None:
                reorder_out_channels(conv, order)
        if self.dw_dynamic is not None:  # its attention reads the mid channels too
            self.dw_dynamic.fc1.weight.copy_(self.dw_dynamic.fc1.weight[:, order])
        if self.se is not None:
            reorder_in_channels(self.se.reduce, order)
            reorder_out_channels(self.se.expand, order)
            se_order = importance_order(self.se.expand)
            reorder_out_channels(self.se.reduce, se_order)
            reorder_in_channels(self.se.expand, se_order)
        reorder_in_channels(self.project, order)


class OFAMobileNetV3Supernet(SupernetBody):
    """The once-for-all MobileNetV3 supernet: plain stem, per stage ``max(depths)`` elastic
    MBConv blocks (only the first ``depth`` run), plain final 1x1 conv + BN + act."""

    def __init__(self, in_channels: int, stem_channels: int, stem_stride: int,
                 widths: Sequence[int], strides: Sequence[int], se_stages: Sequence[bool],
                 activations: Sequence[str], depths: Sequence[int],
                 expands: Sequence[float], kernels: Sequence[int], final_channels: int,
                 conv_types: Sequence[str] = ("static",), dynamic_kernels: int = 4) -> None:
        super().__init__()
        self.choices: dict[str, tuple[Any, ...]] = {
            "depth": tuple(depths), "expand": tuple(expands), "kernel": tuple(kernels)}
        if len(conv_types) > 1:
            self.choices["conv"] = tuple(conv_types)
        self.default_conv = conv_types[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(stem_channels), _activation("hswish"))
        max_depth, max_expand = max(depths), max(expands)
        stages = []
        c = stem_channels
        for width, stride, se, act in zip(widths, strides, se_stages, activations, strict=True):
            blocks = []
            for i in range(max_depth):
                blocks.append(ElasticMBConv(c, width, max_expand, kernels,
                                            stride if i == 0 else 1, act, se, conv_types,
                                            dynamic_kernels))
                c = width
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.final = nn.Sequential(nn.Conv2d(c, final_channels, 1, bias=False),
                                   nn.BatchNorm2d(final_channels), _activation("hswish"))
        self.out_channels: int = int(final_channels)
        self.feature_channels: list[int] = [int(w) for w in widths]
        total, self.feature_strides = stem_stride, []
        for s in strides:
            total *= s
            self.feature_strides.append(int(total))
        self.active_depth: list[int] = [max_depth] * len(stages)
        largest = {"depth": [max_depth] * len(stages), "expand": [max_expand] * len(stages),
                   "kernel": [max(kernels)] * len(stages)}
        if "conv" in self.choices:
            largest["conv"] = [self.default_conv] * len(stages)
        self.set_active(Architecture(largest))

    # -- activation -----------------------------------------------------------------------------
    def _check(self, arch: Mapping[str, Any]) -> None:
        n = len(self.stages)
        for name, allowed in self.choices.items():
            if name not in arch:
                raise InvalidArchitectureError(
                    f"ofa_mbv3 supernet: architecture has no {name!r} (needs "
                    f"{', '.join(self.choices)})")
            value = arch[name]
            if not isinstance(value, (list, tuple)) or len(value) != n:
                raise InvalidArchitectureError(
                    f"ofa_mbv3 supernet: {name!r} needs {n} values (one per stage), got "
                    f"{value!r}")
            for i, v in enumerate(value):
                if isinstance(v, bool) or v not in allowed:
                    raise InvalidArchitectureError(
                        f"ofa_mbv3 supernet: {name!r} of stage {i} is {v!r}, not one of "
                        f"{list(allowed)}")

    def set_active(self, arch: Mapping[str, Any]) -> None:
        self._check(arch)
        convs = arch["conv"] if "conv" in self.choices else [None] * len(self.stages)
        for s, blocks in enumerate(self.stages):
            for block in blocks:
                block.set_active(arch["expand"][s], arch["kernel"][s], convs[s])
        self.active_depth = [int(d) for d in arch["depth"]]

    # -- forward --------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output for the active architecture, first stage first."""
        x = self.stem(x)
        feats = []
        for blocks, depth in zip(self.stages, self.active_depth, strict=True):
            for block in blocks[:depth]:
                x = block(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for blocks, depth in zip(self.stages, self.active_depth, strict=True):
            for block in blocks[:depth]:
                x = block(x)
        return self.final(x)

    # -- sub-networks ---------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any]) -> OFAMobileNetV3Body:
        """A plain :class:`OFAMobileNetV3Body` for ``arch`` with copies of the active weights
        (``arch`` becomes the active architecture)."""
        self.set_active(arch)
        stages = [nn.Sequential(*(block.extract() for block in blocks[:depth]))
                  for blocks, depth in zip(self.stages, self.active_depth, strict=True)]
        body = OFAMobileNetV3Body(copy.deepcopy(self.stem), stages, copy.deepcopy(self.final),
                                  self.out_channels, self.feature_channels,
                                  self.feature_strides)
        return body.to(self.stem[0].weight.device).train(self.training)

    @torch.no_grad()
    def reorganize_channels(self) -> None:
        """Sort every block's mid channels by importance (see
        :meth:`ElasticMBConv.reorganize_channels`); the largest sub-network is unchanged."""
        for blocks in self.stages:
            for block in blocks:
                block.reorganize_channels()


# -- the space ----------------------------------------------------------------------------------
class OFAMobileNetV3Space(SupernetSpace):
    """Once-for-all MobileNetV3 supernet: elastic depth, expand ratio and kernel per stage.

    Dimensions (one value per stage): ``depth`` (MBConv blocks that run, the first ones),
    ``expand`` (expansion ratio of the stage's blocks; mid channels
    ``make_divisible(round(block_in * expand), 8)``) and ``kernel`` (depthwise kernel size,
    cropped from the largest through learned transform matrices). Stage widths, strides,
    squeeze-excite and activations are fixed options; ``width_mult`` scales the stem and stage
    widths (multiples of 8). :meth:`build_supernet` returns the weight-sharing body;
    :meth:`build` an extracted plain body. Choices must be listed in ascending order so that
    :meth:`largest` / :meth:`smallest` are the extremes. Costs: see :meth:`summary` and the
    module docstring.
    """

    name = "ofa_mbv3"

    class Options(BaseModel):
        """Options of :class:`OFAMobileNetV3Space` (``space.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")

        stages: list[int] = Field(default_factory=lambda: [16, 24, 40, 80, 112],
                                  description="output channels of each stage (before width_mult)")
        width_mult: float = Field(1.0, gt=0.0, description="scales stem and stage widths "
                                  "(rounded to multiples of 8); not searched")
        strides: list[int] | None = Field(
            None, description="stride of each stage's first block; default [1, 2, 2, 2, 1] "
            "for 5 stages, else [1, 2, 2, ...]")
        stem_stride: int = Field(1, ge=1, le=4, description="stride of the stem conv (OFA: 2)")
        stem_channels: int = Field(16, ge=1, description="stem conv channels (before "
                                   "width_mult)")
        depths: list[int] = Field(default_factory=lambda: [2, 3, 4],
                                  description="choices of blocks per stage (ascending)")
        expands: list[int | float] = Field(default_factory=lambda: [3, 4, 6],
                                           description="choices of expansion ratio (ascending)")
        kernels: list[int] = Field(default_factory=lambda: [3, 5, 7],
                                   description="choices of depthwise kernel size (odd, "
                                   "ascending)")
        se_stages: list[bool] | None = Field(
            None, description="squeeze-excite per stage; default [F, F, T, F, T] for 5 stages, "
            "else none")
        activations: list[Literal["relu", "hswish"]] | None = Field(
            None, description="activation per stage; default relu for the first 3 of 5 "
            "stages, then hswish (else relu for the first half)")
        final_channels: int = Field(256, ge=1, description="channels of the final 1x1 conv "
                                    "(the body's out_channels)")
        conv_types: list[Literal["static", "dynamic"]] = Field(
            default_factory=lambda: ["static"],
            description="depthwise conv of the blocks: static, dynamic (attention-mixed K "
            "kernels), or both [static, dynamic], which adds a searched `conv` dimension")
        dynamic_kernels: int = Field(4, ge=1, description="K, kernels mixed by a dynamic conv")

        @field_validator("conv_types")
        @classmethod
        def _conv_types(cls, v: list[str]) -> list[str]:
            if v not in (["static"], ["dynamic"], ["static", "dynamic"]):
                raise ValueError(f"use [static], [dynamic] or [static, dynamic] (smallest "
                                 f"first), got {v}")
            return v

        @field_validator("stages")
        @classmethod
        def _widths(cls, v: list[int]) -> list[int]:
            if not v:
                raise ValueError("needs at least one stage")
            if any(w < 1 for w in v):
                raise ValueError(f"stage widths must be >= 1, got {v}")
            return v

        @field_validator("depths", "expands", "kernels")
        @classmethod
        def _ascending(cls, v: list[Any]) -> list[Any]:
            if not v:
                raise ValueError("needs at least one choice")
            if any(x <= 0 for x in v):
                raise ValueError(f"choices must be > 0, got {v}")
            if any(b <= a for a, b in itertools.pairwise(v)):
                raise ValueError(f"choices must be strictly ascending (smallest first, no "
                                 f"duplicates), got {v}")
            return v

        @field_validator("depths")
        @classmethod
        def _depth_ints(cls, v: list[int]) -> list[int]:
            if any(d < 1 for d in v):
                raise ValueError(f"depths must be >= 1, got {v}")
            return v

        @field_validator("kernels")
        @classmethod
        def _odd(cls, v: list[int]) -> list[int]:
            if any(k % 2 == 0 for k in v):
                raise ValueError(f"kernel sizes must be odd, got {v}")
            return v

        @model_validator(mode="after")
        def _per_stage(self) -> OFAMobileNetV3Space.Options:
            n = len(self.stages)
            mbv3 = n == 5
            if self.strides is None:
                self.strides = list(_MBV3_DEFAULTS["strides"]) if mbv3 else [1] + [2] * (n - 1)
            if self.se_stages is None:
                self.se_stages = list(_MBV3_DEFAULTS["se_stages"]) if mbv3 else [False] * n
            if self.activations is None:
                self.activations = (list(_MBV3_DEFAULTS["activations"]) if mbv3 else
                                    ["relu"] * (n // 2) + ["hswish"] * (n - n // 2))
            for name in ("strides", "se_stages", "activations"):
                value = getattr(self, name)
                if len(value) != n:
                    raise ValueError(f"{name} needs one value per stage ({n} stages: "
                                     f"{self.stages}), got {value}")
            if any(s < 1 for s in self.strides):
                raise ValueError(f"strides must be >= 1, got {self.strides}")
            return self

    def __init__(self, **options: Any) -> None:
        opts = self.Options(**options)
        self.options = opts
        self.widths = [make_divisible(w * opts.width_mult, 8) for w in opts.stages]
        self.stem_channels = make_divisible(opts.stem_channels * opts.width_mult, 8)
        self.strides: list[int] = list(opts.strides or [])
        n = len(self.widths)
        dims = [StageList("depth", opts.depths, n), StageList("expand", opts.expands, n),
                StageList("kernel", opts.kernels, n)]
        if len(opts.conv_types) > 1:
            dims.append(StageList("conv", opts.conv_types, n))
        super().__init__(dims, name="ofa_mbv3")

    def build_supernet(self, in_channels: int) -> OFAMobileNetV3Supernet:
        o = self.options
        return OFAMobileNetV3Supernet(
            in_channels, self.stem_channels, o.stem_stride, self.widths, self.strides,
            list(o.se_stages or []), list(o.activations or []), o.depths, o.expands, o.kernels,
            o.final_channels, o.conv_types, o.dynamic_kernels)

    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> nn.Module:
        """A stand-alone plain body for ``arch`` (extracted from a fresh supernet)."""
        return super().build(self.validate(arch), in_channels)

    def summary(self, input_shape: Sequence[int] = (3, 32, 32),
                num_classes: int | None = None) -> dict[str, Any]:
        """Space size and the params / FLOPs (``nastk.cost``, fvcore: one multiply-add = one
        flop) of the extracted smallest and largest bodies for inputs of ``input_shape``
        (``(C, H, W)``). With ``num_classes`` the bodies get a classification head (global
        average pooling + linear, like ``tasks.classification``) and are counted with it."""
        from nastk.cost import count_flops, count_params

        supernet = self.build_supernet(int(input_shape[0]))
        supernet.eval()
        out: dict[str, Any] = {"size": self.size(), "input_shape": list(input_shape),
                               "head": f"pool+linear({num_classes})" if num_classes else None}
        for kind, arch in (("smallest", self.smallest()), ("largest", self.largest())):
            net: nn.Module = supernet.extract(arch)
            if num_classes:
                net = nn.Sequential(net, nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                                    nn.Linear(supernet.out_channels, num_classes))
            out[kind] = {"arch": arch.as_dict(), "params": count_params(net),
                         "flops": count_flops(net, input_shape)}
        return out
