"""The salnas networks: the weight-sharing encoder-decoder supernet and the plain body that
``extract`` hands out for one architecture.

Both run the same U-Net: a stem, the encoder stages (MBConv blocks), then the decoder over the
*skips* -- the last feature map at each distinct stride (the stem's output counts; a stride-1
stage replaces the feature before it). From the coarsest skip to the finest, each decoder level
is a 3x3 conv-BN-activation whose output has the active width of its skip, a bilinear resize to
the next finer skip's size (2x for input sizes divisible by the total stride) and a
concatenation with that skip. The finest level's conv projects to the fixed ``out_channels``
instead, and its output is resized bilinearly to the input's size: the body's output has
``out_channels`` channels at the input's resolution, whatever the architecture.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nastk.core.errors import InvalidArchitectureError
from nastk.nn.supernet import SupernetBody
from nastk.search_spaces.salnas.layers import ElasticConcatConv, WidthElasticMBConv, activation

__all__ = ["SalNASBody", "SalNASSupernet", "skip_plan"]

STEM = -1  # the feature index of the stem's output in a skip plan


def skip_plan(stem_stride: int, strides: Sequence[int]) -> tuple[list[int], list[int]]:
    """The decoder's skips, finest first: the feature index of each (``-1`` the stem, ``i``
    stage ``i``: the last feature at every distinct stride) and its stride."""
    feats = [(STEM, stem_stride)]
    total = stem_stride
    for i, s in enumerate(strides):
        total *= s
        if s == 1:
            feats[-1] = (i, total)
        else:
            feats.append((i, total))
    return [f for f, _ in feats], [s for _, s in feats]


class _UNet(nn.Module, ABC):
    """The forward pass both networks share. Subclasses set ``stem``, ``decoder`` (a
    ``nn.ModuleList``, coarsest level first), ``skips`` (:func:`skip_plan`'s indices) and
    implement :meth:`stage_outputs`."""

    stem: nn.Module
    decoder: nn.ModuleList
    skips: list[int]
    out_channels: int

    @abstractmethod
    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every encoder stage's output for the stem's output ``x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(x)
        outs = self.stage_outputs(stem)
        skips = [stem if i == STEM else outs[i] for i in self.skips]  # finest first
        d = self.decoder[0]([skips[-1]])
        for level, skip in zip(self.decoder[1:], reversed(skips[:-1]), strict=True):
            d = F.interpolate(d, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            d = level([d, skip])
        return F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)


class SalNASBody(_UNet):
    """A plain salnas body (what the supernet's ``extract`` returns): stem, one
    ``nn.Sequential`` of MBConv blocks per stage, decoder levels of
    :class:`~nastk.search_spaces.salnas.layers.ConcatConv`. Output: ``out_channels`` channels at the
    input's resolution."""

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], decoder: Sequence[nn.Module],
                 skips: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.decoder = nn.ModuleList(decoder)
        self.skips = [int(i) for i in skips]
        self.out_channels: int = int(out_channels)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class SalNASSupernet(SupernetBody, _UNet):
    """The salnas supernet: plain stem; per stage ``max(depths)`` width-elastic MBConv blocks
    (the first ``depth`` run) at the stage's largest width; elastic decoder levels whose
    widths follow the active encoder widths; a final decoder conv to the fixed
    ``out_channels``. See the module docstring for the data flow."""

    def __init__(self, in_channels: int, stem_channels: int, stem_stride: int,
                 widths: Sequence[Sequence[int]], strides: Sequence[int],
                 se_stages: Sequence[bool], activations: Sequence[str], depths: Sequence[int],
                 expands: Sequence[float], kernels: Sequence[int], per_block: bool,
                 decoder_convs: Sequence[str], decoder_activation: str, out_channels: int,
                 dynamic_kernels: int = 4) -> None:
        super().__init__()
        n = len(widths)
        self.widths = [tuple(int(w) for w in ws) for ws in widths]
        self.depths, self.expands = tuple(depths), tuple(expands)
        self.kernels, self.per_block = tuple(kernels), bool(per_block)
        self.max_depth = max(depths)
        self.stem_channels = int(stem_channels)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(stem_channels), activation("hswish"))
        stages = []
        c = stem_channels
        for ws, stride, se, act in zip(self.widths, strides, se_stages, activations,
                                       strict=True):
            blocks = []
            for i in range(self.max_depth):
                blocks.append(WidthElasticMBConv(c, max(ws), max(expands), kernels,
                                                 stride if i == 0 else 1, act, se,
                                                 residual=i > 0))
                c = max(ws)
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.skips, self.skip_strides = skip_plan(stem_stride, strides)
        if len(decoder_convs) != len(self.skips):
            raise ValueError(f"decoder_convs needs {len(self.skips)} entries (one per decoder "
                             f"level), got {list(decoder_convs)}")
        # decoder levels, coarsest first: level j reads [upsampled previous level, its skip]
        max_skip = [self._skip_width(i, largest=True) for i in self.skips]
        levels = []
        for j, (skip, conv) in enumerate(zip(reversed(max_skip), decoder_convs, strict=True)):
            parts = [skip] if j == 0 else [levels[-1].max_out, skip]
            last = j == len(max_skip) - 1
            levels.append(ElasticConcatConv(parts, out_channels if last else skip, conv,
                                            decoder_activation, 3, dynamic_kernels))
        self.decoder = nn.ModuleList(levels)
        self.out_channels: int = int(out_channels)
        self.active_widths = [max(ws) for ws in self.widths]
        self.active_depth = [self.max_depth] * n

    # -- activation -----------------------------------------------------------------------------
    def _skip_width(self, index: int, largest: bool = False) -> int:
        if index == STEM:
            return self.stem_channels
        return max(self.widths[index]) if largest else self.active_widths[index]

    def _per_block_values(self, arch: Mapping[str, Any], name: str) -> list[list[Any]]:
        """``arch[name]`` as one list per stage of one value per block."""
        n = len(self.stages)
        value = arch[name]
        per = self.max_depth if self.per_block else 1
        if not isinstance(value, (list, tuple)) or len(value) != n * per:
            what = f"{n} stages x {per} blocks" if self.per_block else f"{n} stages"
            raise InvalidArchitectureError(
                f"salnas supernet: {name!r} needs {n * per} values ({what}), got {value!r}")
        if self.per_block:
            return [list(value[s * per:(s + 1) * per]) for s in range(n)]
        return [[v] * self.max_depth for v in value]

    def _check(self, arch: Mapping[str, Any]) -> None:
        n = len(self.stages)
        needed = [f"width_{i}" for i in range(n)] + ["depth", "expand", "kernel"]
        missing = [k for k in needed if k not in arch]
        if missing:
            raise InvalidArchitectureError(f"salnas supernet: architecture has no {missing}")
        for i, ws in enumerate(self.widths):
            if arch[f"width_{i}"] not in ws:
                raise InvalidArchitectureError(
                    f"salnas supernet: 'width_{i}' is {arch[f'width_{i}']!r}, not one of "
                    f"{list(ws)}")
        depth = arch["depth"]
        if not isinstance(depth, (list, tuple)) or len(depth) != n:
            raise InvalidArchitectureError(
                f"salnas supernet: 'depth' needs {n} values, got {depth!r}")
        checks = (("depth", [list(depth)], self.depths),
                  ("expand", self._per_block_values(arch, "expand"), self.expands),
                  ("kernel", self._per_block_values(arch, "kernel"), self.kernels))
        for name, rows, allowed in checks:
            for row in rows:
                for v in row:
                    if isinstance(v, bool) or v not in allowed:
                        raise InvalidArchitectureError(
                            f"salnas supernet: {name!r} value {v!r} not one of {list(allowed)}")

    def set_active(self, arch: Mapping[str, Any]) -> None:
        self._check(arch)
        expands = self._per_block_values(arch, "expand")
        kernels = self._per_block_values(arch, "kernel")
        self.active_widths = [int(arch[f"width_{i}"]) for i in range(len(self.stages))]
        self.active_depth = [int(d) for d in arch["depth"]]
        c = self.stem_channels
        for s, blocks in enumerate(self.stages):
            w = self.active_widths[s]
            for b, block in enumerate(blocks):
                block.set_width_active(c if b == 0 else w, w, expands[s][b], kernels[s][b])
            c = w
        widths = [self._skip_width(i) for i in reversed(self.skips)]  # coarsest first
        for j, level in enumerate(self.decoder):
            level.set_active(self.out_channels if j == len(self.decoder) - 1 else widths[j])

    # -- forward --------------------------------------------------------------------------------
    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for blocks, depth in zip(self.stages, self.active_depth, strict=True):
            for block in blocks[:depth]:
                x = block(x)
            outs.append(x)
        return outs

    # -- sub-networks ---------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any]) -> SalNASBody:
        """A plain :class:`SalNASBody` for ``arch`` with copies of the active weights (``arch``
        becomes the active architecture)."""
        self.set_active(arch)
        stages = [nn.Sequential(*(block.extract() for block in blocks[:depth]))
                  for blocks, depth in zip(self.stages, self.active_depth, strict=True)]
        widths = [self._skip_width(i) for i in reversed(self.skips)]  # coarsest first
        decoder = []
        for j, level in enumerate(self.decoder):
            parts = [widths[0]] if j == 0 else [decoder[-1].bn.num_features, widths[j]]
            decoder.append(level.extract(parts))
        body = SalNASBody(copy.deepcopy(self.stem), stages, decoder, self.skips,
                          self.out_channels)
        return body.to(self.stem[0].weight.device).train(self.training)

    @torch.no_grad()
    def reorganize_channels(self) -> None:
        """Sort every encoder block's mid (expanded) channels by importance (the ofa_mbv3
        rule, :meth:`ElasticMBConv.reorganize_channels`); the largest sub-network's function
        is unchanged. The stage output widths are *not* sorted: a stage's output channels feed
        the next stage, every block's residual sum, and two decoder levels (as a skip and as
        the width of a level's output), all of which would have to be permuted together, so
        narrow widths keep the first channels as trained."""
        for blocks in self.stages:
            for block in blocks:
                block.reorganize_channels()
