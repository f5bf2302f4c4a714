"""ResNet-18 / 50 / 101 bodies with torchvision's layout (ResNet v1.5).

The network is He et al.'s ResNet as torchvision builds it: a 7x7 stride-2 stem convolution to
64 channels, batch norm, ReLU and a 3x3 stride-2 max pool, then four layers of residual blocks
(64, 128, 256, 512 planes; the last three start with a stride-2 block), every convolution
without bias and followed by batch norm. ResNet-18 stacks [2, 2, 2, 2] basic blocks (two 3x3
convs), ResNet-50 [3, 4, 6, 3] and ResNet-101 [3, 4, 23, 3] bottleneck blocks (1x1 reduce,
3x3, 1x1 expand by 4) with the stride on the 3x3 conv ("v1.5"). A block's shortcut is a
1x1 conv plus batch norm (``downsample``) where the block changes the stride or the channels.

Submodules are named as in torchvision's state dicts (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ...); the key table in
:mod:`nastk.search_spaces.backbones.torchvision_layout` maps a torchvision checkpoint onto them.

``output_stride`` 16 or 8 replaces the stride of ``layer4`` (and ``layer3``) by dilation, as
torchvision's ``replace_stride_with_dilation=[False, False, True]`` (``[False, True, True]``)
does: the layer's first block runs its 3x3 conv (and its shortcut) at stride 1 with the dilation
so far, its later blocks with the dilation doubled. Torchvision refuses dilation in basic blocks;
here both 3x3 convs of a basic block take the block's dilation. The weights' shapes do not
depend on ``output_stride``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from nastk.nn.body import StagedBody

__all__ = ["RESNET_DEPTHS", "BasicBlock", "Bottleneck", "ResNetBody", "dilations_for"]

#: blocks per layer and block kind of each ResNet
RESNET_DEPTHS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def dilations_for(output_stride: int, n_strided: int) -> list[bool]:
    """Which of the last ``n_strided`` stride-2 stages trade their stride for dilation so that
    a body of total stride 32 runs at ``output_stride`` (32, 16 or 8): ``[False, False, True]``
    for 16 with three strided stages, as torchvision's ``replace_stride_with_dilation``."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    n_dilated = {32: 0, 16: 1, 8: 2}[output_stride]
    return [i >= n_strided - n_dilated for i in range(n_strided)]


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation,
                     bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN (ReLU between them), shortcut added before the final ReLU."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(cin, planes, stride, dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying stride and dilation), 1x1 expand by 4, each conv-BN (ReLU after
    the first two); shortcut added before the final ReLU."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNetBody(StagedBody):
    """A torchvision-layout ResNet without its classifier (see the module docstring).

    ``forward`` returns ``layer4``'s map (``out_channels``: 512 for ResNet-18, 2048 for 50/101);
    ``forward_features`` returns the outputs of ``layer1`` .. ``layer4`` (``feature_channels``
    64/128/256/512 or 256/512/1024/2048, ``feature_strides`` 4/8/16/32 at ``output_stride``
    32, 4/8/16/16 at 16, 4/8/8/8 at 8)."""

    def __init__(self, depth: str = "resnet50", in_channels: int = 3,
                 output_stride: int = 32) -> None:
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"unknown ResNet {depth!r}; use one of {sorted(RESNET_DEPTHS)}")
        kind, blocks = RESNET_DEPTHS[depth]
        block: type[BasicBlock] | type[Bottleneck] = (BasicBlock if kind == "basic"
                                                      else Bottleneck)
        self.depth = depth
        self.output_stride = output_stride
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        dilate = [False, *dilations_for(output_stride, 3)]
        self._cin, self._dilation, stride_so_far = 64, 1, 4
        self.feature_channels: list[int] = []
        self.feature_strides: list[int] = []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), blocks, strict=True)):
            stride = 1 if i == 0 else 2
            layer = self._make_layer(block, planes, n, stride, dilate[i])
            self.add_module(f"layer{i + 1}", layer)
            if not dilate[i]:
                stride_so_far *= stride
            self.feature_channels.append(planes * block.expansion)
            self.feature_strides.append(stride_so_far)
        self.out_channels: int = self.feature_channels[-1]
        del self._cin, self._dilation  # build-time state only

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, n: int,
                    stride: int, dilate: bool) -> nn.Sequential:
        first_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        cout = planes * block.expansion
        downsample = None
        if stride != 1 or self._cin != cout:
            downsample = nn.Sequential(nn.Conv2d(self._cin, cout, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(cout))
        layers = [block(self._cin, planes, stride, first_dilation, downsample)]
        layers += [block(cout, planes, 1, self._dilation) for _ in range(1, n)]
        self._cin = cout
        return nn.Sequential(*layers)

    @property
    def layers(self) -> Sequence[nn.Module]:
        """``layer1`` .. ``layer4``."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """Conv 7x7 / 2, batch norm, ReLU, max pool 3x3 / 2: stride 4."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[-1]
