"""A small MobileNetV2-style CNN search space for image tasks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nastk.core.options import options_of
from nastk.nn.body import StemStagesBody
from nastk.space.architecture import Architecture
from nastk.space.dimensions import StageList
from nastk.space.search_space import SearchSpace
from nastk.space.validators import Choices, OddSizes, StageInts, one_per_stage

__all__ = ["BlockChoices", "InvertedResidual", "SmallCNNBody", "SmallCNNSpace"]


def _activation(name: str) -> nn.Module:
    return nn.ReLU6(inplace=True) if name == "relu6" else nn.ReLU(inplace=True)


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when ``expand == 1``) -> kxk depthwise -> 1x1 linear projection,
    each followed by batch norm; a residual connection when input and output shapes match."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int,
                 expand: int, activation: str = "relu6") -> None:
        super().__init__()
        hidden = in_channels * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden),
                       _activation(activation)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden,
                      bias=False),
            nn.BatchNorm2d(hidden), _activation(activation),
            nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels),
        ]
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class SmallCNNBody(StemStagesBody):
    """Stem conv-BN-act, then one sequence of inverted-residual blocks per stage.

    ``forward`` returns the last stage's feature map (``out_channels`` channels);
    ``forward_features`` returns every stage's output (``feature_channels`` channels each, at
    ``feature_strides`` times smaller resolution than the input) for dense-prediction heads.
    """

    def __init__(self, in_channels: int, stem_width: int, depths: list[int], widths: list[int],
                 kernels: list[int], expansions: list[int], strides: list[int],
                 activation: str = "relu6") -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem_width), _activation(activation))
        stages = []
        channels = stem_width
        for depth, width, kernel, expand, stride in zip(depths, widths, kernels, expansions,
                                                         strides, strict=True):
            blocks = []
            for i in range(depth):
                blocks.append(InvertedResidual(channels, width, kernel, stride if i == 0 else 1,
                                               expand, activation))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.final = nn.Identity()
        self.out_channels: int = int(widths[-1])
        self.feature_channels: list[int] = [int(w) for w in widths]
        total, self.feature_strides = 1, []
        for s in strides:
            total *= s
            self.feature_strides.append(total)


class BlockChoices(BaseModel):
    """The choices of an inverted-residual block that the small CNN spaces share (``small_cnn``
    per stage, ``small_cnn_flex`` per block), and their stem and activation."""

    model_config = ConfigDict(extra="forbid")

    widths: Choices[int] = Field(default_factory=lambda: [8, 16, 24, 32],
                                 description="choices of output channels (of each stage's "
                                 "blocks in small_cnn, of each block in small_cnn_flex)")
    kernels: Annotated[Choices[int], OddSizes] = Field(
        default_factory=lambda: [3, 5], description="choices of depthwise kernel size (odd)")
    expansions: Choices[int] = Field(default_factory=lambda: [1, 2, 4],
                                     description="choices of expansion ratio")
    stem_width: int = Field(16, ge=1, description="channels of the stem convolution")
    activation: Literal["relu", "relu6"] = "relu6"


class SmallCNNSpace(SearchSpace):
    """Small inverted-residual CNN: depth, width, kernel and expansion chosen per stage.

    Dimensions (one value per stage): ``depth`` (blocks in the stage), ``width`` (output
    channels), ``kernel`` (depthwise kernel size) and ``expand`` (expansion ratio of the
    inverted-residual blocks). :meth:`build` returns the network body (stem plus stages); a task
    adds its head.
    """

    name = "small_cnn"

    class Options(BlockChoices):
        """Options of :class:`SmallCNNSpace` (``space.options`` in a config)."""

        stages: int = Field(3, ge=1, le=8, description="number of stages")
        depths: Choices[int] = Field(default_factory=lambda: [1, 2, 3],
                                     description="choices of blocks per stage")
        strides: StageInts | None = Field(
            None, description="stride of each stage's first block; default [1, 2, 2, ...]")

        @model_validator(mode="after")
        def _strides(self) -> SmallCNNSpace.Options:
            if self.strides is None:
                self.strides = [1] + [2] * (self.stages - 1)
            one_per_stage(self, ["strides"], self.stages, f"{self.stages} stages")
            return self

    def __init__(self, **options: Any) -> None:
        self.options = opts = options_of(self.Options, options, what=f"search space {self.name!r}")
        self.stages, self.stem_width, self.activation = (opts.stages, opts.stem_width,
                                                         opts.activation)
        self.strides: list[int] = list(opts.strides or [])
        super().__init__([
            StageList("depth", opts.depths, opts.stages),
            StageList("width", opts.widths, opts.stages),
            StageList("kernel", opts.kernels, opts.stages),
            StageList("expand", opts.expansions, opts.stages),
        ], name="small_cnn")

    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> SmallCNNBody:
        """The body for ``arch`` (validated first): a module whose forward maps
        ``(N, in_channels, H, W)`` to ``(N, out_channels, H / prod(strides), W / ...)``."""
        arch = self.validate(arch)
        return SmallCNNBody(in_channels, self.stem_width, list(arch["depth"]),
                            list(arch["width"]), list(arch["kernel"]), list(arch["expand"]),
                            self.strides, self.activation)
