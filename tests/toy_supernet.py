"""A tiny weight-sharing space for tests: per stage depth, kernel and width."""

from __future__ import annotations

import torch
from torch import nn

from nastk import Architecture, StageList
from nastk.nn.elastic import ElasticBatchNorm2d, ElasticConv2d
from nastk.nn.supernet import SupernetBody, SupernetSpace

WIDTH = 16


class _Block(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.conv = ElasticConv2d(WIDTH, WIDTH, (3, 5), stride=stride)
        self.bn = ElasticBatchNorm2d(WIDTH)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class ToySupernet(SupernetBody):
    def __init__(self, in_channels: int, stages: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, WIDTH, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(WIDTH), nn.ReLU())
        self.stages = nn.ModuleList(
            nn.ModuleList(_Block(2 if (s and i == 0) else 1) for i in range(2))
            for s in range(stages))
        self.final = ElasticConv2d(WIDTH, WIDTH, (1,))
        self.out_channels = WIDTH
        self.depth = [2] * stages

    def set_active(self, arch: Architecture) -> None:
        self.depth = list(arch["depth"])
        for s, blocks in enumerate(self.stages):
            for b in blocks:
                b.conv.set_active(out_channels=arch["width"][s], kernel=arch["kernel"][s])

    def forward(self, x):
        x = self.stem(x)
        for s, blocks in enumerate(self.stages):
            for b in blocks[: self.depth[s]]:
                x = b(x)
        return self.final(x)

    def extract(self, arch: Architecture) -> nn.Module:
        self.set_active(arch)
        layers: list[nn.Module] = [self.stem[0], self.stem[1], nn.ReLU()]
        layers = [self._copy(m) for m in layers]
        c = WIDTH
        for s, blocks in enumerate(self.stages):
            for b in blocks[: arch["depth"][s]]:
                layers += [b.conv.extract(c), b.bn.extract(b.conv.active_out), nn.ReLU()]
                c = b.conv.active_out
        layers.append(self.final.extract(c))
        body = nn.Sequential(*layers)
        body.out_channels = WIDTH
        return body

    @staticmethod
    def _copy(m: nn.Module) -> nn.Module:
        import copy

        return copy.deepcopy(m)


class ToySupernetSpace(SupernetSpace):
    """A tiny elastic space (depth, kernel, width per stage) for tests."""

    def __init__(self, stages: int = 2) -> None:
        super().__init__([StageList("depth", [1, 2], stages), StageList("kernel", [3, 5], stages),
                          StageList("width", [8, 16], stages)], name="toy_supernet")
        self.stages = stages

    def build_supernet(self, in_channels: int) -> ToySupernet:
        return ToySupernet(in_channels, self.stages)


from nastk.core.registry import SEARCH_SPACES  # noqa: E402

if "toy_supernet" not in SEARCH_SPACES:
    SEARCH_SPACES.register("toy_supernet", ToySupernetSpace)
