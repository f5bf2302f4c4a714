"""A once-for-all MobileNetV3 search space: elastic depth, expand ratio and kernel per stage.

One supernet (:class:`OFAMobileNetV3Supernet`) holds every architecture: per stage up to
``max(depths)`` MBConv blocks whose 1x1 expand conv, depthwise conv (elastic kernel with the OFA
kernel-transform matrices), squeeze-excite and 1x1 project conv are sliced from shared weights.
``extract(arch)`` hands out a plain body (:class:`OFAMobileNetV3Body`, only ``nn.Conv2d`` /
``nn.BatchNorm2d`` / activations / :class:`SqueezeExcite`) whose output equals the supernet's.

Sizes and costs (``OFAMobileNetV3Space(**options).summary(...)``, measured with
``nastk.evaluation.cost``; bodies only, no classifier head unless said; FLOPs are fvcore's, one
fused multiply-add = one flop):

- default options, 3x32x32 input: 14,348,907 architectures (27 per stage, 5 stages);
  smallest body 346,976 params / 12.67 MFLOPs, largest body 2,154,376 params / 75.07 MFLOPs.
  With a 1x32x32 input and a 6-class pool + linear head (the synthetic classification task):
  smallest 348,230 params / 12.38 MFLOPs, largest 2,155,630 params / 74.78 MFLOPs.
- OFA-like options (``OFA_MBV3_OPTIONS``: stem 16 channels stride 2, widths
  [24, 40, 80, 112, 160], strides [2, 2, 2, 1, 2], SE [F, T, F, T, T], activations
  relu, relu, hswish, hswish, hswish, final 1x1 conv to 960), 3x224x224, same 14,348,907
  architectures: bodies smallest 900,528 params / 119.34 MFLOPs, largest 5,154,496 params /
  576.62 MFLOPs; with a 1000-class pool + linear head on the 960 features: smallest 1,861,528
  / 120.35 M, largest 6,115,496 / 577.63 M. Real OFA-MBv3 also has a fixed first 16-channel
  block and a 960 -> 1280 feature-mix layer before the classifier (and chooses expand and
  kernel per block, not per stage), which this space does not: ``ofa_mbv3_full``
  (:mod:`~nastk.search_spaces.ofa_mbv3.full_space`) is once-for-all's space exactly, 2.2e19
  architectures, and loads its checkpoints.
"""


from nastk.search_spaces.ofa_mbv3.full_network import OFAFullBody, OFAFullSupernet
from nastk.search_spaces.ofa_mbv3.full_space import OFAMobileNetV3FullSpace
from nastk.search_spaces.ofa_mbv3.layers import (
    ElasticMBConv,
    ElasticSqueezeExcite,
    MBConvBlock,
    SqueezeExcite,
    make_divisible,
)
from nastk.search_spaces.ofa_mbv3.network import OFAMobileNetV3Body, OFAMobileNetV3Supernet
from nastk.search_spaces.ofa_mbv3.space import OFA_MBV3_OPTIONS, OFAMobileNetV3Space

__all__ = ["OFA_MBV3_OPTIONS", "ElasticMBConv", "ElasticSqueezeExcite", "MBConvBlock",
           "OFAFullBody", "OFAFullSupernet", "OFAMobileNetV3Body", "OFAMobileNetV3FullSpace",
           "OFAMobileNetV3Space", "OFAMobileNetV3Supernet", "SqueezeExcite", "make_divisible"]
