"""The salnas search space: dimensions, options, and the networks it builds."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from nastk.core.options import options_of
from nastk.nn.supernet import SupernetSpace
from nastk.search_spaces.ofa_mbv3.space import DepthChoices, ExpandChoices, KernelChoices
from nastk.search_spaces.salnas.network import SalNASSupernet, skip_plan
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical, StageList
from nastk.space.validators import AscendingChoices, StageInts, one_per_stage

__all__ = ["SalNASSpace"]

ConvKind = Literal["static", "dynamic"]


class SalNASSpace(SupernetSpace):
    """SalNAS-style encoder-decoder supernet for saliency: an elastic MobileNetV3 encoder
    (width, depth, expand ratio, kernel) and a U-Net decoder whose widths follow the encoder's.

    Dimensions: ``width_<i>`` for every stage ``i`` (the stage's output channels, one of that
    stage's width choices: the first channels of the stage's largest width); ``depth`` (blocks
    per stage that run, the first ones); ``expand`` and ``kernel`` (the MBConv expansion ratio
    -- mid channels ``make_divisible(block_in * expand, 8)`` with ``block_in`` the active input
    width -- and depthwise kernel: one value per stage, or with ``per_block`` one per block,
    ``max(depths)`` per stage in stage order, where values of blocks beyond the stage's depth
    are ignored). Stem, strides, squeeze-excite, activations and the decoder's conv kind are
    fixed options. The body's output has the fixed ``out_channels`` at the input's
    resolution. Choices must be ascending so that :meth:`largest` / :meth:`smallest` are the
    extremes. Costs: :meth:`summary` and the package docstring.
    """

    name = "salnas"

    class Options(BaseModel):
        """Options of :class:`SalNASSpace` (``space.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")

        stages: StageInts = Field(
            default_factory=lambda: [16, 24, 40, 64],
            description="base (smallest) output width of each stage; their number is the "
            "stage count. A stage's width choices are its base plus each of `width_offsets`")
        width_offsets: list[int] = Field(
            default_factory=lambda: [0, 8],
            description="added to every stage's base width to give its width choices "
            "(ascending, from 0; SalNAS steps by 8)")
        widths: list[AscendingChoices[int]] | None = Field(
            None, min_length=1, description="explicit width choices per stage (ascending), "
            "instead of `stages` + `width_offsets`; their number is the stage count")
        strides: StageInts | None = Field(
            None, description="stride of each stage's first block; default 2 for every stage "
            "(the stem's output is then the finest decoder skip)")
        stem_stride: int = Field(2, ge=1, le=4, description="stride of the stem conv")
        stem_channels: int = Field(16, ge=1, description="stem conv channels (fixed)")
        depths: DepthChoices = Field(default_factory=lambda: [1, 2, 3])
        expands: ExpandChoices = Field(default_factory=lambda: [3, 4, 6])
        kernels: KernelChoices = Field(default_factory=lambda: [3, 5])
        per_block: bool = Field(False, description="choose expand and kernel per block "
                                "(max(depths) values per stage) instead of per stage")
        se_stages: list[bool] | None = Field(
            None, description="squeeze-excite per stage; default on in the second half")
        activations: list[Literal["relu", "hswish"]] | None = Field(
            None, description="encoder activation per stage; default relu in the first half, "
            "hswish in the second")
        decoder_conv: ConvKind | list[ConvKind] = Field(
            "static", description="conv of the decoder levels: static, dynamic "
            "(attention-mixed `dynamic_kernels` kernels), or a list with one per level, "
            "coarsest first (the last is the projection to out_channels)")
        decoder_activation: Literal["relu", "hswish", "swish"] = Field(
            "swish", description="activation of the decoder convs")
        dynamic_kernels: int = Field(4, ge=1, description="K, kernels mixed by a dynamic conv")
        out_channels: int = Field(16, ge=1, description="channels of the body's output (the "
                                  "last decoder conv), the same for every architecture")

        @field_validator("width_offsets")
        @classmethod
        def _offsets(cls, v: list[int]) -> list[int]:
            if not v or v[0] < 0 or any(b <= a for a, b in itertools.pairwise(v)):
                raise ValueError(f"width_offsets must be strictly ascending and >= 0, got {v}")
            return v

        @model_validator(mode="after")
        def _per_stage(self) -> SalNASSpace.Options:
            if self.widths is not None and self.model_fields_set & {"stages", "width_offsets"}:
                raise ValueError("give either `widths` or `stages` / `width_offsets`, not both")
            n = len(self.stage_widths())
            if self.strides is None:
                self.strides = [2] * n
            if self.se_stages is None:
                self.se_stages = [i >= n // 2 for i in range(n)]
            if self.activations is None:
                self.activations = ["relu"] * (n // 2) + ["hswish"] * (n - n // 2)
            one_per_stage(self, ("strides", "se_stages", "activations"), n, f"{n} stages")
            levels = len(skip_plan(self.stem_stride, self.strides)[0])
            if isinstance(self.decoder_conv, list) and len(self.decoder_conv) != levels:
                raise ValueError(f"decoder_conv needs one entry per decoder level ({levels} "
                                 f"for stem stride {self.stem_stride} and strides "
                                 f"{self.strides}), got {self.decoder_conv}")
            return self

        def stage_widths(self) -> list[list[int]]:
            """The width choices of every stage, ascending."""
            if self.widths is not None:
                return [list(ws) for ws in self.widths]
            return [[w + d for d in self.width_offsets] for w in self.stages]

    def __init__(self, **options: Any) -> None:
        opts = options_of(self.Options, options, what=f"search space {self.name!r}")
        self.options = opts
        self.widths = opts.stage_widths()
        self.strides: list[int] = list(opts.strides or [])
        self.skips, self.skip_strides = skip_plan(opts.stem_stride, self.strides)
        conv = opts.decoder_conv
        self.decoder_convs: list[str] = (list(conv) if isinstance(conv, list)
                                         else [conv] * len(self.skips))
        n = len(self.widths)
        per = max(opts.depths) if opts.per_block else 1
        dims = [Categorical(f"width_{i}", ws, ordinal=True) for i, ws in enumerate(self.widths)]
        dims += [StageList("depth", opts.depths, n), StageList("expand", opts.expands, n * per),
                 StageList("kernel", opts.kernels, n * per)]
        super().__init__(dims, name="salnas")

    def build_supernet(self, in_channels: int) -> SalNASSupernet:
        o = self.options
        return SalNASSupernet(
            in_channels, o.stem_channels, o.stem_stride, self.widths, self.strides,
            list(o.se_stages or []), list(o.activations or []), o.depths, o.expands,
            o.kernels, o.per_block, self.decoder_convs, o.decoder_activation, o.out_channels,
            o.dynamic_kernels)

    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> nn.Module:
        """A stand-alone plain body for ``arch`` (extracted from a fresh supernet)."""
        return super().build(self.validate(arch), in_channels)

    def render(self, arch: Architecture) -> str:
        """``w24-32-48-64 d3-3-3-3 e6-6-6-6 k5-5-5-5`` (per block: stages split by ``|``)."""
        n = len(self.widths)

        def join(values: Sequence[Any]) -> str:
            text = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
            if len(values) == n:
                return "-".join(text)
            per = len(values) // n
            return "|".join("-".join(text[s * per:(s + 1) * per]) for s in range(n))

        widths = [arch[f"width_{i}"] for i in range(n)]
        return (f"w{join(widths)} d{join(arch['depth'])} e{join(arch['expand'])} "
                f"k{join(arch['kernel'])}")

    def distinct_networks(self) -> int:
        """How many different networks the space holds: :meth:`size` except that with
        ``per_block`` the values of blocks beyond a stage's depth do not count."""
        o = self.options
        if not o.per_block:
            return self.size()
        per_block = len(o.expands) * len(o.kernels)
        stage = sum(per_block ** d for d in o.depths)
        return math.prod(len(ws) * stage for ws in self.widths)

    def summary(self, input_shape: Sequence[int] = (3, 64, 64)) -> dict[str, Any]:
        """Space size and the params / FLOPs (``nastk.evaluation.cost``, fvcore: one multiply-add =
        one flop) of the extracted smallest and largest bodies for inputs of ``input_shape``
        (``(C, H, W)``); bodies only, no task head."""
        from nastk.evaluation.cost import count_flops, count_params

        supernet = self.build_supernet(int(input_shape[0]))
        supernet.eval()
        out: dict[str, Any] = {"size": self.size(), "distinct": self.distinct_networks(),
                               "input_shape": list(input_shape)}
        for kind, arch in (("smallest", self.smallest()), ("largest", self.largest())):
            net = supernet.extract(arch)
            out[kind] = {"arch": arch.as_dict(), "params": count_params(net),
                         "flops": count_flops(net, input_shape)}
        return out
