"""DeepLabV3+ (Chen et al., ECCV 2018) as a segmentation head over any staged body.

Written from the paper and the layout of the public PyTorch re-implementations (the one AICSD
uses, ``pytorch-deeplab-xception``); no code is copied.

- **ASPP** on the body's last (coarsest) feature: a 1x1 branch, three 3x3 atrous branches with
  rates 6 / 12 / 18 at output stride 16 (12 / 24 / 36 at 8; in general ``r * 16 / stride``),
  and an image-pooling branch (global average pool, 1x1 conv, upsampled back); every branch is
  conv-BN-ReLU to ``channels`` (256 in the paper). The five maps are concatenated and
  projected by a 1x1 conv-BN (:attr:`ASPP.project`: the *ASPP output before ReLU*, the feature
  AICSD's pairwise distillation reads), then ReLU and dropout 0.5.
- **Decoder**: the stride-4 feature (ResNet ``layer1``, MobileNetV2's 24-channel stage) is
  projected to 48 channels (1x1 conv-BN-ReLU); the ASPP output is bilinearly upsampled to its
  size and concatenated; two 3x3 conv-BN-ReLU to ``channels`` (dropout 0.5 and 0.1 after
  them). :class:`~nastk.tasks.segmentation.task.SegmentationModel` adds the 1x1 classifier and
  the bilinear upsampling to the input size.

:func:`~nastk.tasks.segmentation.deeplab_model.deeplabv3plus` builds the whole model over a
``backbones`` body (ResNet-18 / 50 / 101, MobileNetV2, torchvision layouts) for use as a
distillation teacher by ``module:factory``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nastk.nn.body import feature_info, require_staged

__all__ = ["ASPP", "DeepLabV3PlusDecoder", "aspp_rates"]

#: the atrous rates at output stride 16
RATES_AT_16: tuple[int, int, int] = (6, 12, 18)


def aspp_rates(stride: int) -> tuple[int, ...]:
    """The three atrous rates for a feature at ``stride``: (6, 12, 18) at 16, (12, 24, 36) at
    8, scaled as ``r * 16 / stride`` (at least 1) otherwise."""
    return tuple(max(1, round(r * 16 / stride)) for r in RATES_AT_16)


def _cbr(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    pad = (kernel - 1) // 2 * dilation
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad, dilation=dilation,
                                   bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (see the module docstring). ``branches`` are the 1x1 and
    the atrous conv-BN-ReLU branches, ``pool`` the image-pooling branch, ``project`` the 1x1
    conv-BN over their concatenation (its output is the pre-ReLU ASPP feature)."""

    def __init__(self, cin: int, channels: int = 256, rates: tuple[int, ...] = RATES_AT_16,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.rates = tuple(rates)
        self.branches = nn.ModuleList([_cbr(cin, channels, 1)]
                                      + [_cbr(cin, channels, 3, r) for r in self.rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), _cbr(cin, channels, 1))
        n = len(self.branches) + 1
        self.project = nn.Sequential(nn.Conv2d(n * channels, channels, 1, bias=False),
                                     nn.BatchNorm2d(channels))
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        outs = [b(x) for b in self.branches]
        outs.append(F.interpolate(self.pool(x), size=size, mode="bilinear",
                                  align_corners=False))
        return self.dropout(self.relu(self.project(torch.cat(outs, 1))))


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on the last feature plus the decoder on the stride-4 feature of a staged body:
    ``forward(features)`` maps the body's ``forward_features`` to a ``channels``-channel map at
    the low-level feature's resolution."""

    def __init__(self, body: nn.Module, channels: int = 256, low_channels: int = 48) -> None:
        super().__init__()
        info = feature_info(require_staged(body, "head 'deeplabv3plus'"))
        fours = [i for i, f in enumerate(info) if f.stride == 4]
        #: index of the low-level feature: the last at stride 4, else the finest
        self.low_index = fours[-1] if fours else 0
        last = info[-1]
        self.aspp = ASPP(last.channels, channels, aspp_rates(last.stride))
        self.low = _cbr(info[self.low_index].channels, low_channels, 1)
        self.fuse = nn.Sequential(_cbr(channels + low_channels, channels, 3), nn.Dropout(0.5),
                                  _cbr(channels, channels, 3), nn.Dropout(0.1))
        self.out_channels = channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        low = self.low(features[self.low_index])
        high = F.interpolate(self.aspp(features[-1]), size=low.shape[-2:], mode="bilinear",
                             align_corners=False)
        return self.fuse(torch.cat([high, low], 1))
