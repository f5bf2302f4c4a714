"""The ofa_mbv3 search space: dimensions, options, and the networks it builds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from nastk.core.options import options_of
from nastk.nn.supernet import SupernetSpace
from nastk.search_spaces.ofa_mbv3.latency_units import ElasticUnits, units_of
from nastk.search_spaces.ofa_mbv3.layers import make_divisible
from nastk.search_spaces.ofa_mbv3.network import OFAMobileNetV3Supernet
from nastk.space.architecture import Architecture
from nastk.space.dimensions import StageList
from nastk.space.validators import (
    AscendingChoices,
    OddSizes,
    StageInts,
    one_per_stage,
)

__all__ = ["OFA_MBV3_OPTIONS", "DepthChoices", "ExpandChoices", "KernelChoices",
           "OFAMobileNetV3Space"]

#: Options close to the original OFA MobileNetV3 (ImageNet, 224x224; see the module docstring).
OFA_MBV3_OPTIONS: dict[str, Any] = {
    "stages": [24, 40, 80, 112, 160], "strides": [2, 2, 2, 1, 2], "stem_stride": 2,
    "stem_channels": 16, "se_stages": [False, True, False, True, True],
    "activations": ["relu", "relu", "hswish", "hswish", "hswish"], "final_channels": 960,
}

#: the searched choices of an elastic MBConv stage (this space's and salnas'), smallest first
DepthChoices = Annotated[AscendingChoices[int],
                         Field(description="choices of blocks per stage (ascending)")]
ExpandChoices = Annotated[AscendingChoices[int | float],
                          Field(description="choices of expansion ratio (ascending)")]
KernelChoices = Annotated[AscendingChoices[int], OddSizes,
                          Field(description="choices of depthwise kernel size (odd, ascending)")]

_MBV3_DEFAULTS = {  # for the default 5 stages
    "strides": [1, 2, 2, 2, 1],
    "se_stages": [False, False, True, False, True],
    "activations": ["relu", "relu", "relu", "hswish", "hswish"],
}


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

        stages: StageInts = Field(default_factory=lambda: [16, 24, 40, 80, 112],
                                     description="output channels of each stage (before "
                                     "width_mult)")
        width_mult: float = Field(1.0, gt=0.0, description="scales stem and stage widths "
                                  "(rounded to multiples of 8); not searched")
        strides: StageInts | None = Field(
            None, description="stride of each stage's first block; default [1, 2, 2, 2, 1] "
            "for 5 stages, else [1, 2, 2, ...]")
        stem_stride: int = Field(1, ge=1, le=4, description="stride of the stem conv (OFA: 2)")
        stem_channels: int = Field(16, ge=1, description="stem conv channels (before "
                                   "width_mult)")
        depths: DepthChoices = Field(default_factory=lambda: [2, 3, 4])
        expands: ExpandChoices = Field(default_factory=lambda: [3, 4, 6])
        kernels: KernelChoices = Field(default_factory=lambda: [3, 5, 7])
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
            one_per_stage(self, ("strides", "se_stages", "activations"), n,
                          f"{n} stages: {self.stages}")
            return self

    def __init__(self, **options: Any) -> None:
        opts = options_of(self.Options, options, what=f"search space {self.name!r}")
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
        """Space size and the params / FLOPs (``nastk.evaluation.cost``, fvcore: one multiply-add =
        one flop) of the extracted smallest and largest bodies for inputs of ``input_shape``
        (``(C, H, W)``). With ``num_classes`` the bodies get a classification head (global
        average pooling + linear, like ``nastk.tasks.classification``) and are counted with it."""
        from nastk.evaluation.cost import count_flops, count_params

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

    def latency_units(self, input_shape: Sequence[int]) -> ElasticUnits:
        """This space's networks at ``input_shape`` as latency units (stem, one MBConv block per
        position and choice at its input size, final conv), for ``nastk latency profile`` and
        predicted latency: :func:`~nastk.search_spaces.ofa_mbv3.latency_units.units_of`."""
        return units_of(self, input_shape, per_block=False, resolutions=None)
