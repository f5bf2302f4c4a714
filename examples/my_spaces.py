# my_spaces.py
import torch.nn as nn

from nastk import Categorical, IntRange, SearchSpace
from nastk.core.registry import SEARCH_SPACES


class PlainCNN(nn.Sequential):
    """conv-BN-ReLU layers; `out_channels` tells the task's head what it receives."""

    def __init__(self, in_channels: int, depth: int, width: int, kernel: int) -> None:
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(in_channels if i == 0 else width, width, kernel,
                                 padding=kernel // 2, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU()]
        super().__init__(*layers)
        self.out_channels = width


@SEARCH_SPACES.register("plain_cnn")
class PlainCNNSpace(SearchSpace):
    """A plain CNN: number of layers, width and kernel size."""

    def __init__(self, max_depth: int = 4) -> None:
        super().__init__([IntRange("depth", 1, max_depth),
                          Categorical("width", [8, 16, 32]),
                          Categorical("kernel", [3, 5])], name="plain_cnn")

    def build(self, arch, in_channels):
        return PlainCNN(in_channels, arch["depth"], arch["width"], arch["kernel"])
