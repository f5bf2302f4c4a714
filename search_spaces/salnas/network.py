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

With a searched ``resolution``, both first resize their input (bicubic, as SalNAS) to that
width, the height keeping the aspect ratio (SalNAS's 4:3 SALICON inputs: 192x256 or 288x384);
the output is still at the input's own size. The supernet regularises its largest sub-network
alone, in training, as SalNAS's sandwich does: dropout (``dropout``) on the decoder's output and
drop-connect on the residual branches of the last ``drop_connect_stages`` stages (rate
``drop_connect * i / blocks`` for the ``i``-th of all the supernet's ``blocks``).
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
from nastk.nn.elastic import ElasticBatchNorm2d, ElasticConv2d
from nastk.nn.supernet import SupernetBody
from nastk.search_spaces.salnas.layers import ElasticConcatConv, WidthElasticMBConv, activation

__all__ = ["SalNASBody", "SalNASSupernet", "resize_to_width", "skip_plan"]

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


def resize_to_width(x: torch.Tensor, resolution: int | None) -> torch.Tensor:
    """``x`` resized (bicubic, SalNAS's mode) to ``resolution`` pixels wide, the height
    ``round(H * resolution / W)``; unchanged when it is that wide already or without a
    resolution (SalNAS checks the width only)."""
    if resolution is None:
        return x
    h, w = (int(v) for v in x.shape[-2:])
    if w == resolution:
        return x
    size = (max(1, round(h * resolution / w)), int(resolution))
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


class _UNet(nn.Module, ABC):
    """The forward pass both networks share. Subclasses set ``stem``, ``decoder`` (a
    ``nn.ModuleList``, coarsest level first), ``skips`` (:func:`skip_plan`'s indices) and
    implement :meth:`stage_outputs`."""

    stem: nn.Module
    decoder: nn.ModuleList
    skips: list[int]
    out_channels: int
    #: the width the input is resized to first (None: no resize)
    active_resolution: int | None = None
    #: dropout on the decoder's output in training (the supernet's largest subnet only)
    output_dropout: nn.Module | None

    @abstractmethod
    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every encoder stage's output for the stem's output ``x``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stem = self.stem(resize_to_width(x, self.active_resolution))
        outs = self.stage_outputs(stem)
        skips = [stem if i == STEM else outs[i] for i in self.skips]  # finest first
        d = self.decoder[0]([skips[-1]])
        for level, skip in zip(self.decoder[1:], reversed(skips[:-1]), strict=True):
            d = F.interpolate(d, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            d = level([d, skip])
        if self.output_dropout is not None:
            d = self.output_dropout(d)
        return F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)


class SalNASBody(_UNet):
    """A plain salnas body (what the supernet's ``extract`` returns): stem, one
    ``nn.Sequential`` of MBConv blocks per stage, decoder levels of
    :class:`~nastk.search_spaces.salnas.layers.ConcatConv`. Output: ``out_channels`` channels at the
    input's resolution; the input is resized to ``resolution`` pixels wide first (when
    set)."""

    def __init__(self, stem: nn.Module, stages: Sequence[nn.Module], decoder: Sequence[nn.Module],
                 skips: Sequence[int], out_channels: int,
                 resolution: int | None = None) -> None:
        super().__init__()
        self.active_resolution = None if resolution is None else int(resolution)
        self.resizes_input = resolution is not None
        self.output_dropout = None
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
    ``out_channels``. See the module docstring for the data flow.

    ``stage_depths`` / ``stage_expands`` / ``stage_kernels`` give each stage its own value set
    (default: ``depths`` / ``expands`` / ``kernels`` for every stage); a stage holds
    ``max`` of its depths blocks. ``stem_widths`` makes the stem's width elastic (an
    architecture's ``stem_width``; default the fixed ``stem_channels``), ``resolutions`` adds
    the input width (``resolution``). ``dropout`` / ``drop_connect`` regularise the largest
    sub-network in training (module docstring)."""

    def __init__(self, in_channels: int, stem_channels: int, stem_stride: int,
                 widths: Sequence[Sequence[int]], strides: Sequence[int],
                 se_stages: Sequence[bool], activations: Sequence[str], depths: Sequence[int],
                 expands: Sequence[float], kernels: Sequence[int], per_block: bool,
                 decoder_convs: Sequence[str], decoder_activation: str, out_channels: int,
                 dynamic_kernels: int = 4, *,
                 stage_depths: Sequence[Sequence[int]] | None = None,
                 stage_expands: Sequence[Sequence[float]] | None = None,
                 stage_kernels: Sequence[Sequence[int]] | None = None,
                 stem_widths: Sequence[int] | None = None, stem_activation: str = "hswish",
                 resolutions: Sequence[int] | None = None, dropout: float = 0.0,
                 drop_connect: float = 0.0, drop_connect_stages: int | None = None) -> None:
        super().__init__()
        n = len(widths)
        self.widths = [tuple(int(w) for w in ws) for ws in widths]
        self.depths, self.expands = tuple(depths), tuple(expands)
        self.kernels, self.per_block = tuple(kernels), bool(per_block)
        self.stage_depths = [tuple(d) for d in (stage_depths or [depths] * n)]
        self.stage_expands = [tuple(e) for e in (stage_expands or [expands] * n)]
        self.stage_kernels = [tuple(k) for k in (stage_kernels or [kernels] * n)]
        self.max_depth = max(max(d) for d in self.stage_depths)
        self.stem_widths = None if stem_widths is None else tuple(int(w) for w in stem_widths)
        self.stem_channels = int(max(self.stem_widths) if self.stem_widths else stem_channels)
        self.active_stem = self.stem_channels
        self.stem_activation = stem_activation
        if self.stem_widths:  # elastic: the first output channels and their norm
            self.stem: nn.Module = nn.Sequential(
                ElasticConv2d(in_channels, self.stem_channels, (3,), stride=stem_stride,
                              kernel_transform=False),
                ElasticBatchNorm2d(self.stem_channels), activation(stem_activation))
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, stem_channels, 3, stem_stride, 1, bias=False),
                nn.BatchNorm2d(stem_channels), activation(stem_activation))
        self.resolutions = tuple(int(r) for r in resolutions) if resolutions else None
        self.resizes_input = self.resolutions is not None
        stages = []
        c = self.stem_channels
        for ws, stride, se, act, ds, es, ks in zip(
                self.widths, strides, se_stages, activations, self.stage_depths,
                self.stage_expands, self.stage_kernels, strict=True):
            blocks = []
            for i in range(max(ds)):
                blocks.append(WidthElasticMBConv(c, max(ws), max(es), ks,
                                                 stride if i == 0 else 1, act, se,
                                                 residual=i > 0))
                c = max(ws)
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        self.dropout, self.drop_connect = float(dropout), float(drop_connect)
        self.drop_connect_stages = drop_connect_stages
        self.output_dropout = nn.Dropout(0.0) if dropout > 0 else None
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
        self.active_depth = [max(d) for d in self.stage_depths]
        self.active_resolution = max(self.resolutions) if self.resolutions else None

    # -- activation -----------------------------------------------------------------------------
    def _skip_width(self, index: int, largest: bool = False) -> int:
        if index == STEM:
            return self.stem_channels if largest else self.active_stem
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
        needed += ["stem_width"] * bool(self.stem_widths) + ["resolution"] * bool(
            self.resolutions)
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
        for name, allowed in (("stem_width", self.stem_widths),
                              ("resolution", self.resolutions)):
            if allowed and (isinstance(arch[name], bool) or arch[name] not in allowed):
                raise InvalidArchitectureError(
                    f"salnas supernet: {name!r} is {arch[name]!r}, not one of {list(allowed)}")
        checks = (("depth", [[d] for d in depth], self.stage_depths),
                  ("expand", self._per_block_values(arch, "expand"), self.stage_expands),
                  ("kernel", self._per_block_values(arch, "kernel"), self.stage_kernels))
        for name, rows, sets in checks:
            for s, (row, allowed) in enumerate(zip(rows, sets, strict=True)):
                for v in row[:len(self.stages[s])]:  # per block: the stage's blocks only
                    if isinstance(v, bool) or v not in allowed:
                        where = f" of stage {s}" if len(set(sets)) > 1 else ""
                        raise InvalidArchitectureError(
                            f"salnas supernet: {name!r} value {v!r}{where} not one of "
                            f"{list(allowed)}")

    def is_largest(self, arch: Mapping[str, Any]) -> bool:
        """Whether ``arch`` (checked) is the largest sub-network: every value its maximum."""
        expands = self._per_block_values(arch, "expand")
        kernels = self._per_block_values(arch, "kernel")
        n = len(self.stages)
        return (all(arch[f"width_{i}"] == max(self.widths[i]) for i in range(n))
                and all(d == max(ds) for d, ds in zip(arch["depth"], self.stage_depths,
                                                      strict=True))
                and all(v == max(self.stage_expands[s]) for s in range(n)
                        for v in expands[s][:len(self.stages[s])])
                and all(v == max(self.stage_kernels[s]) for s in range(n)
                        for v in kernels[s][:len(self.stages[s])])
                and (not self.stem_widths or arch["stem_width"] == max(self.stem_widths))
                and (not self.resolutions or arch["resolution"] == max(self.resolutions)))

    def _set_regularization(self, on: bool) -> None:
        """Dropout and drop-connect rates of the largest sub-network (``on``), else zero."""
        if self.output_dropout is not None:
            self.output_dropout.p = self.dropout if on else 0.0
        blocks = [b for blocks in self.stages for b in blocks]
        last = len(self.stages) - (self.drop_connect_stages if self.drop_connect_stages
                                   is not None else len(self.stages))
        k = 0
        for s, stage in enumerate(self.stages):
            for block in stage:
                rate = self.drop_connect * k / len(blocks) if on and s >= last else 0.0
                block.drop_connect.p = rate
                k += 1

    def set_active(self, arch: Mapping[str, Any]) -> None:
        self._check(arch)
        expands = self._per_block_values(arch, "expand")
        kernels = self._per_block_values(arch, "kernel")
        self.active_widths = [int(arch[f"width_{i}"]) for i in range(len(self.stages))]
        self.active_depth = [int(d) for d in arch["depth"]]
        if self.stem_widths:
            self.active_stem = int(arch["stem_width"])
            self.stem[0].set_active(out_channels=self.active_stem)
        self.active_resolution = int(arch["resolution"]) if self.resolutions else None
        if self.dropout > 0 or self.drop_connect > 0:
            self._set_regularization(self.is_largest(arch))
        c = self.active_stem
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
        if self.stem_widths:
            conv, bn, _ = self.stem
            stem = nn.Sequential(conv.extract(conv.max_in), bn.extract(self.active_stem),
                                 activation(self.stem_activation))
        else:
            stem = copy.deepcopy(self.stem)
        body = SalNASBody(stem, stages, decoder, self.skips, self.out_channels,
                          self.active_resolution)
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
