"""The ofa_mbv3 networks: the weight-sharing supernet body (elastic depth, expand ratio and
kernel per stage) and the plain body that ``extract`` hands out for one architecture. Both are
staged bodies (:class:`nastk.nn.body.StagedBody`): every stage's output is a feature scale."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nastk.core.errors import InvalidArchitectureError
from nastk.nn.body import StagedBody, StemStagesBody
from nastk.nn.supernet import SupernetBody
from nastk.search_spaces.ofa_mbv3.layers import _activation
from nastk.search_spaces.ofa_mbv3.stages import ElasticStages, elastic_stages
from nastk.space.architecture import Architecture

__all__ = ["OFAMobileNetV3Body", "OFAMobileNetV3Supernet"]


class OFAMobileNetV3Body(StemStagesBody):
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



class OFAMobileNetV3Supernet(ElasticStages, SupernetBody, StagedBody):
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
        max_depth = max(depths)
        self.stages, c = elastic_stages(stem_channels, widths, strides, se_stages, activations,
                                        max_depth, max(expands), kernels, conv_types,
                                        dynamic_kernels)
        self.final = nn.Sequential(nn.Conv2d(c, final_channels, 1, bias=False),
                                   nn.BatchNorm2d(final_channels), _activation("hswish"))
        self.out_channels: int = int(final_channels)
        self.feature_channels: list[int] = [int(w) for w in widths]
        total, self.feature_strides = stem_stride, []
        for s in strides:
            total *= s
            self.feature_strides.append(int(total))
        n = len(self.stages)
        self.active_depth: list[int] = [max_depth] * n
        largest = {"depth": [max_depth] * n, "expand": [max(expands)] * n,
                   "kernel": [max(kernels)] * n}
        if "conv" in self.choices:
            largest["conv"] = [self.default_conv] * n
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
        return self.run_stages(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.run_stages(self.stem(x))[-1])

    # -- sub-networks ---------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Mapping[str, Any]) -> OFAMobileNetV3Body:
        """A plain :class:`OFAMobileNetV3Body` for ``arch`` with copies of the active weights
        (``arch`` becomes the active architecture)."""
        self.set_active(arch)
        body = OFAMobileNetV3Body(copy.deepcopy(self.stem), self.extract_stages(),
                                  copy.deepcopy(self.final), self.out_channels,
                                  self.feature_channels, self.feature_strides)
        return body.to(self.stem[0].weight.device).train(self.training)
