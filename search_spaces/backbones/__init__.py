"""Fixed, well-known bodies in torchvision's layouts: ResNet-18 / 50 / 101 and MobileNetV2.

:class:`BackbonesSpace` (registered as ``backbones``) offers them as one categorical choice;
:mod:`~nastk.search_spaces.backbones.torchvision_layout` holds the key table of each model's
torchvision ImageNet checkpoint (``init: {from: FILE, format: torchvision}``). The bodies are
written here from torchvision's published architecture; no torchvision code is used and
torchvision need not be installed.
"""

from nastk.search_spaces.backbones.mobilenet_v2 import MobileNetV2Block, MobileNetV2Body
from nastk.search_spaces.backbones.resnet import BasicBlock, Bottleneck, ResNetBody
from nastk.search_spaces.backbones.space import BODY_PARAMS, BackbonesSpace, build_body
from nastk.search_spaces.backbones.torchvision_layout import TORCHVISION_MODELS, torchvision_table

__all__ = ["BODY_PARAMS", "TORCHVISION_MODELS", "BackbonesSpace", "BasicBlock", "Bottleneck",
           "MobileNetV2Block", "MobileNetV2Body", "ResNetBody", "build_body",
           "torchvision_table"]
