"""The elastic stages both once-for-all supernets are made of (``ofa_mbv3``'s and
``ofa_mbv3_full``'s): per stage up to ``max_depth`` elastic MBConv blocks of which the first
``depth`` run, built, run, extracted and channel-sorted the same way."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nastk.search_spaces.ofa_mbv3.layers import ElasticMBConv

__all__ = ["ElasticStages", "elastic_stages"]


def elastic_stages(in_channels: int, widths: Sequence[int], strides: Sequence[int],
                   se_stages: Sequence[bool], activations: Sequence[str], max_depth: int,
                   max_expand: float, kernels: Sequence[int],
                   conv_types: Sequence[str] = ("static",), dynamic_kernels: int = 4
                   ) -> tuple[nn.ModuleList, int]:
    """One ``nn.ModuleList`` of ``max_depth`` :class:`ElasticMBConv` per stage (the stride on
    each stage's first block) and the channels of the last stage's output."""
    stages, c = [], in_channels
    for width, stride, se, act in zip(widths, strides, se_stages, activations, strict=True):
        blocks = []
        for i in range(max_depth):
            blocks.append(ElasticMBConv(c, width, max_expand, kernels, stride if i == 0 else 1,
                                        act, se, conv_types, dynamic_kernels))
            c = width
        stages.append(nn.ModuleList(blocks))
    return nn.ModuleList(stages), c


class ElasticStages:
    """Mixin of a supernet with ``stages`` (from :func:`elastic_stages`) and ``active_depth``
    (blocks that run per stage)."""

    stages: nn.ModuleList
    active_depth: list[int]

    def run_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output for the active architecture, first stage first."""
        feats = []
        for blocks, depth in zip(self.stages, self.active_depth, strict=True):
            for block in blocks[:depth]:
                x = block(x)
            feats.append(x)
        return feats

    def extract_stages(self) -> list[nn.Sequential]:
        """The plain stages of the active architecture (call ``set_active`` first)."""
        return [nn.Sequential(*(block.extract() for block in blocks[:depth]))
                for blocks, depth in zip(self.stages, self.active_depth, strict=True)]

    @torch.no_grad()
    def reorganize_channels(self) -> None:
        """Sort every block's mid channels by importance (see
        :meth:`ElasticMBConv.reorganize_channels`); the largest sub-network is unchanged."""
        for blocks in self.stages:
            for block in blocks:
                block.reorganize_channels()
