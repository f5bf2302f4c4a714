"""The building blocks of the salnas space.

- :class:`WidthElasticMBConv`: the ofa_mbv3 :class:`~nastk.search_spaces.ofa_mbv3.ElasticMBConv`
  (elastic expand ratio and depthwise kernel) with an elastic *output width* as well: the
  project conv keeps its first ``k`` filters and its batch norm the first ``k`` channels, and
  the mid channels follow the *active* input width (``make_divisible(in * expand, 8)``, as in
  OFA's width-elastic blocks). Extraction gives the ofa_mbv3 plain :class:`MBConvBlock`.
- :class:`ElasticConcatConv`: a decoder conv (3x3 conv + BN + activation) over the channel
  concatenation of several elastic inputs (the upsampled coarser level and an encoder skip),
  static (:class:`~nastk.nn.elastic.ElasticConv2d`) or attention-mixed dynamic
  (:class:`~nastk.nn.dynamic_conv.ElasticDynamicConv2d`); elastic output channels.
  Its plain form is :class:`ConcatConv`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nastk.nn.dynamic_conv import DynamicConv2d, ElasticDynamicConv2d
from nastk.nn.elastic import ElasticBatchNorm2d, ElasticConv2d
from nastk.search_spaces.ofa_mbv3.layers import ElasticMBConv, MBConvBlock

__all__ = ["ConcatConv", "DropConnect", "ElasticConcatConv", "WidthElasticMBConv", "activation",
           "drop_connect"]


def activation(name: str) -> nn.Module:
    """``relu``, ``hswish`` or ``swish`` (SiLU) as a module."""
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish()
    if name == "swish":
        return nn.SiLU()
    raise ValueError(f"unknown activation {name!r}; use relu, hswish or swish")


def drop_connect(x: torch.Tensor, p: float) -> torch.Tensor:
    """AttentiveNAS's drop-connect of a residual branch: every sample's ``x`` is zeroed with
    probability ``p`` and the kept ones scaled by ``1 / (1 - p)``."""
    keep = 1.0 - p
    mask = torch.floor(keep + torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device))
    return x / keep * mask


class DropConnect(nn.Module):
    """:func:`drop_connect` with rate ``p`` in training mode (identity otherwise, or at
    ``p = 0``). ``stochastic_regularizer`` marks it for Self-KD's train-mode teacher, which
    switches it off like dropout."""

    stochastic_regularizer = True

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def active(self) -> bool:
        return self.training and self.p > 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_connect(x, self.p) if self.active() else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


# -- encoder --------------------------------------------------------------------------------------
class WidthElasticMBConv(ElasticMBConv):
    """An :class:`ElasticMBConv` whose input and output widths are elastic too.

    Built at the largest widths (``in_channels``, ``out_channels``); :meth:`set_width_active`
    chooses the active input width (what the previous block outputs), output width, expand
    ratio and kernel. After it, ``in_channels`` holds the *active* input width (the mid
    channels and the extracted expand conv follow it) and ``max_in_channels`` the largest.
    The project conv's batch norm is elastic. ``residual=False`` switches the skip connection
    off (the first block of every stage: its input comes from the previous stage); otherwise
    there is one when the stride is 1 and the active input and output widths are equal.
    ``activation`` may be ``swish`` too. ``drop_connect`` (a :class:`DropConnect`, rate 0
    unless the supernet sets it) drops the residual branch of a block with a skip connection
    in training.
    """

    def __init__(self, in_channels: int, out_channels: int, max_expand: float,
                 kernels: Sequence[int], stride: int, activation: str, se: bool,
                 residual: bool = True) -> None:
        super().__init__(in_channels, out_channels, max_expand, kernels, stride, activation, se)
        self.max_in_channels, self.max_out_channels = in_channels, out_channels
        self.project_bn = ElasticBatchNorm2d(out_channels)
        self.allow_residual = bool(residual) and stride == 1
        self.residual = self.allow_residual and in_channels == out_channels
        self.active_out = out_channels
        if activation == "swish":  # the ofa_mbv3 parent knows relu and hswish only
            self.act = nn.SiLU()
        self.drop_connect = DropConnect(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.residual and self.drop_connect.active()):
            return super().forward(x)
        self.residual = False  # the branch alone, then the skip
        try:
            h = super().forward(x)
        finally:
            self.residual = True
        return x + self.drop_connect(h)

    def set_width_active(self, in_channels: int, out_channels: int, expand: float,
                         kernel: int) -> None:
        """Activate input width ``in_channels``, output width ``out_channels``, ``expand`` and
        ``kernel``."""
        if not 1 <= in_channels <= self.max_in_channels:
            raise ValueError(f"input width {in_channels} not in 1..{self.max_in_channels}")
        if not 1 <= out_channels <= self.max_out_channels:
            raise ValueError(f"output width {out_channels} not in 1..{self.max_out_channels}")
        self.in_channels = in_channels  # the parent's mid-channel rule reads it
        self.set_active(expand, kernel)
        self.project.set_active(out_channels=out_channels)
        self.active_out = out_channels
        self.residual = self.allow_residual and in_channels == out_channels

    @torch.no_grad()
    def extract(self) -> MBConvBlock:
        """The plain block for the active setting (call :meth:`set_width_active` first)."""
        block = super().extract()
        block.project[1] = self.project_bn.extract(self.active_out)
        if self.activation == "swish":
            for seq in (block.expand, block.depthwise):
                if seq is not None:
                    seq[2] = activation("swish")
        return block.train(self.training)


# -- decoder --------------------------------------------------------------------------------------
def _layout(max_parts: Sequence[int], parts: Sequence[int]) -> list[int]:
    """Indices, in the largest concatenation, of the channels an active concatenation uses:
    the first ``parts[i]`` channels of every part ``i``."""
    if len(parts) != len(max_parts):
        raise ValueError(f"expected {len(max_parts)} inputs, got {len(parts)}")
    idx: list[int] = []
    offset = 0
    for c, top in zip(parts, max_parts, strict=True):
        if not 1 <= c <= top:
            raise ValueError(f"an input has {c} channels, expected 1..{top}")
        idx.extend(range(offset, offset + c))
        offset += top
    return idx


class ConcatConv(nn.Module):
    """Plain decoder conv: concatenate the inputs (channel axis), conv, BN, activation."""

    def __init__(self, conv: nn.Module, bn: nn.BatchNorm2d, act: nn.Module) -> None:
        super().__init__()
        self.conv, self.bn, self.act = conv, bn, act

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        x = parts[0] if len(parts) == 1 else torch.cat(list(parts), dim=1)
        return self.act(self.bn(self.conv(x)))


class ElasticConcatConv(nn.Module):
    """A ``kernel x kernel`` conv + BN + activation over the concatenation of elastic inputs.

    ``max_parts`` are the largest channel counts of the inputs, concatenated in that order;
    the shared weight has ``sum(max_parts)`` input channels. Active inputs carry the *first*
    channels of each part, so the weight columns of an active concatenation are the first
    ``c_i`` columns of every part's block, not a prefix: the forward pass places each input at
    its part's offset in the largest layout (zeros in the inactive channels, which is exactly
    slicing those columns, for the static conv and for the dynamic conv's attention), and
    :meth:`extract` copies just those columns. Output channels: the first ``active_out``
    (:meth:`set_active`). ``conv`` is ``"static"`` or ``"dynamic"`` (``num_kernels``
    attention-mixed kernels).
    """

    def __init__(self, max_parts: Sequence[int], max_out: int, conv: str = "static",
                 act: str = "relu", kernel: int = 3, num_kernels: int = 4) -> None:
        super().__init__()
        if conv not in ("static", "dynamic"):
            raise ValueError(f"conv must be static or dynamic, got {conv!r}")
        self.max_parts = tuple(int(c) for c in max_parts)
        self.max_in, self.max_out = sum(self.max_parts), int(max_out)
        self.kind, self.act_name = conv, act
        if conv == "static":
            self.conv: nn.Module = ElasticConv2d(self.max_in, max_out, (kernel,),
                                                 kernel_transform=False)
        else:
            self.conv = ElasticDynamicConv2d(self.max_in, max_out, (kernel,),
                                             num_kernels=num_kernels, kernel_transform=False)
        self.bn = ElasticBatchNorm2d(max_out)
        self.act = activation(act)
        self.active_out = self.max_out

    def set_active(self, out_channels: int) -> None:
        self.conv.set_active(out_channels=out_channels)
        self.active_out = out_channels

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        chans = [p.size(1) for p in parts]
        _layout(self.max_parts, chans)  # checks the counts
        if len(parts) == 1:
            x = parts[0]  # a single part: its active channels are a prefix already
        else:
            x = torch.cat([p if c == top else F.pad(p, (0, 0, 0, 0, 0, top - c))
                           for p, c, top in zip(parts, chans, self.max_parts, strict=True)],
                          dim=1)
        return self.act(self.bn(self.conv(x)))

    @torch.no_grad()
    def extract(self, parts: Sequence[int]) -> ConcatConv:
        """The plain :class:`ConcatConv` for inputs of ``parts`` channels (and the active
        output channels): an ``nn.Conv2d`` or a :class:`DynamicConv2d` holding the used
        weight columns, an ``nn.BatchNorm2d``, the activation."""
        idx = torch.tensor(_layout(self.max_parts, parts), device=self.bn.weight.device)
        full = self.conv.extract(self.max_in)
        n_in, out = len(idx), self.active_out
        if isinstance(full, nn.Conv2d):
            conv: nn.Module = nn.Conv2d(n_in, out, full.kernel_size, full.stride, full.padding,
                                        full.dilation, bias=full.bias is not None)
            conv.weight.copy_(full.weight[:, idx])
            if full.bias is not None:
                conv.bias.copy_(full.bias)
        else:
            assert isinstance(full, DynamicConv2d)
            conv = DynamicConv2d(n_in, out, full.kernel_size, full.num_kernels, full.stride,
                                 full.dilation, bias=full.bias is not None,
                                 hidden=full.fc1.out_features, temperature=full.temperature)
            conv.weight.copy_(full.weight[:, :, idx])
            if full.bias is not None:
                conv.bias.copy_(full.bias)
            conv.fc1.weight.copy_(full.fc1.weight[:, idx])
            conv.fc1.bias.copy_(full.fc1.bias)
            conv.fc2.load_state_dict(full.fc2.state_dict())
        conv = conv.to(device=self.bn.weight.device, dtype=self.bn.weight.dtype)
        return ConcatConv(conv, self.bn.extract(out), activation(self.act_name)).train(
            self.training)

    def extra_repr(self) -> str:
        return (f"parts={list(self.max_parts)}, max_out={self.max_out}, conv={self.kind}, "
                f"act={self.act_name}, active_out={self.active_out}")
