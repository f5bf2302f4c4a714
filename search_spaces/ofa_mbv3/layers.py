"""The building blocks of the ofa_mbv3 space: plain MBConv blocks and squeeze-excite (what a
sub-network is made of) and their elastic, weight-sharing counterparts (what the supernet is made
of), with the channel arithmetic both share."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nastk.nn.dynamic_conv import ElasticDynamicConv2d
from nastk.nn.elastic import (
    ElasticBatchNorm2d,
    ElasticConv2d,
    importance_order,
    reorder_in_channels,
    reorder_out_channels,
)

__all__ = ["ElasticMBConv", "ElasticSqueezeExcite", "MBConvBlock", "SqueezeExcite",
           "make_divisible", "mid_channels", "se_channels"]


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
