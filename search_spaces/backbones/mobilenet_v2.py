"""MobileNetV2 (width 1.0) body with torchvision's block settings.

Sandler et al.'s MobileNetV2 as torchvision builds it: a 3x3 stride-2 stem conv to 32 channels,
then inverted-residual blocks given by rows ``(t, c, n, s)`` (expansion ratio, output channels,
blocks, stride of the row's first block):

    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
    (6, 160, 3, 2), (6, 320, 1, 1)

and a last 1x1 conv to 1280 channels. A block is a 1x1 expand conv (absent when ``t == 1``), a
3x3 depthwise conv (carrying the stride), each followed by batch norm and ReLU6, and a 1x1
linear projection plus batch norm; the input is added when stride is 1 and the channels do not
change. Convolutions have no bias.

The 17 blocks (torchvision's ``features.1`` .. ``features.17``; ``features.0`` is the stem and
``features.18`` the last conv) are grouped into five stages at the points where the stride
changes:

=====  ==================  =========  ========  ==============================
stage  torchvision blocks  channels   stride    rows
=====  ==================  =========  ========  ==============================
0      features.1          16         2         (1, 16, 1, 1)
1      features.2-3        24         4         (6, 24, 2, 2)
2      features.4-6        32         8         (6, 32, 3, 2)
3      features.7-13       96         16        (6, 64, 4, 2), (6, 96, 3, 1)
4      features.14-17      320        32        (6, 160, 3, 2), (6, 320, 1, 1)
=====  ==================  =========  ========  ==============================

``forward_features`` returns the five stages' outputs; ``forward`` the last stage's output
through the 1x1 conv to 1280 channels (``out_channels``), as the other staged bodies with a
``final`` conv do (``ofa_mbv3``).

``output_stride`` 16 (8) trades the stride of the last (two last) stride-2 rows, (6, 160, 3, 2)
(and (6, 64, 4, 2)), for dilation as DeepLab does for MobileNetV2 and torchvision's
``replace_stride_with_dilation`` for ResNets: the row's first block runs at stride 1 with the
dilation so far, its later blocks (and later rows) with the dilation doubled. Feature strides are
then 2/4/8/16/16 (2/4/8/8/8). Weight shapes do not depend on it.
"""

from __future__ import annotations

import torch
from torch import nn

from nastk.nn.body import StemStagesBody
from nastk.search_spaces.backbones.resnet import dilations_for

__all__ = ["MBV2_SETTINGS", "MBV2_STAGES", "MobileNetV2Block", "MobileNetV2Body"]

#: torchvision's inverted-residual rows (t, c, n, s) for width 1.0
MBV2_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
    (6, 160, 3, 2), (6, 320, 1, 1),
)
#: the rows of each of the body's five stages
MBV2_STAGES: tuple[tuple[int, ...], ...] = ((0,), (1,), (2,), (3, 4), (5, 6))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1,
             groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=(kernel - 1) // 2 * dilation,
                  dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class MobileNetV2Block(nn.Module):
    """Inverted residual: ``expand`` (1x1 conv-BN-ReLU6, ``None`` when ``expand_ratio`` is 1),
    ``depthwise`` (3x3 conv-BN-ReLU6 with the stride and dilation), ``project`` (1x1 conv-BN)."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int,
                 dilation: int = 1) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.expand = _conv_bn(cin, hidden, 1) if expand_ratio != 1 else None
        self.depthwise = _conv_bn(hidden, hidden, 3, stride, dilation, groups=hidden)
        self.project = _conv_bn(hidden, cout, 1, act=False)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.project(self.depthwise(out))
        return x + out if self.use_residual else out


class MobileNetV2Body(StemStagesBody):
    """torchvision's MobileNetV2 (width 1.0) without its classifier; see the module docstring.

    ``stem`` (3x3/2 conv-BN-ReLU6 to 32), ``stages[k][j]`` (:class:`MobileNetV2Block`),
    ``final`` (1x1 conv-BN-ReLU6 to 1280)."""

    def __init__(self, in_channels: int = 3, output_stride: int = 32) -> None:
        super().__init__()
        self.output_stride = output_stride
        self.stem = _conv_bn(in_channels, 32, 3, stride=2)
        strided = [i for i, row in enumerate(MBV2_SETTINGS) if row[3] == 2]
        dilate = dict(zip(strided, dilations_for(output_stride, len(strided)), strict=True))
        cin, stride_so_far, dilation = 32, 2, 1
        stages, self.feature_channels, self.feature_strides = [], [], []
        for rows in MBV2_STAGES:
            blocks = []
            for r in rows:
                t, c, n, s = MBV2_SETTINGS[r]
                first_dilation = dilation
                if dilate.get(r, False):
                    dilation *= s
                    s = 1
                stride_so_far *= s
                for b in range(n):
                    blocks.append(MobileNetV2Block(cin, c, s if b == 0 else 1, t,
                                                   first_dilation if b == 0 else dilation))
                    cin = c
            stages.append(nn.Sequential(*blocks))
            self.feature_channels.append(cin)
            self.feature_strides.append(stride_so_far)
        self.stages = nn.ModuleList(stages)
        self.final = _conv_bn(cin, 1280, 1)
        self.out_channels: int = 1280
