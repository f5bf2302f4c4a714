"""The ``backbones`` space: fixed, well-known bodies that read torchvision checkpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from nastk.core.errors import ConfigError
from nastk.core.options import options_of
from nastk.nn.layouts import KeyTable
from nastk.search_spaces.backbones.mobilenet_v2 import MobileNetV2Body
from nastk.search_spaces.backbones.resnet import ResNetBody
from nastk.search_spaces.backbones.torchvision_layout import TORCHVISION_MODELS, torchvision_table
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical
from nastk.space.search_space import SearchSpace
from nastk.space.validators import Choices

__all__ = ["BODY_PARAMS", "BackbonesSpace", "BodyName", "build_body"]

BodyName = Literal["resnet18", "resnet50", "resnet101", "mobilenet_v2"]

#: parameters of each body (no classifier; 3 input channels), measured with
#: :func:`nastk.evaluation.cost.count_params`
BODY_PARAMS: dict[str, int] = {"resnet18": 11_176_512, "resnet50": 23_508_032,
                               "resnet101": 42_500_160, "mobilenet_v2": 2_223_872}


def build_body(name: str, in_channels: int = 3, output_stride: int = 32) -> nn.Module:
    """The body ``name`` (one of :data:`~nastk.search_spaces.backbones.torchvision_layout.
    TORCHVISION_MODELS`)."""
    if name == "mobilenet_v2":
        return MobileNetV2Body(in_channels, output_stride)
    return ResNetBody(name, in_channels, output_stride)


class BackbonesSpace(SearchSpace):
    """A space of fixed, known bodies: torchvision's ResNet-18, ResNet-50, ResNet-101 (v1.5)
    and MobileNetV2 (width 1.0), in their layouts.

    One dimension, ``body``, picks one of the ``bodies`` option's list (its size is their
    number); nothing inside a body is searched. The bodies serve as fixed students, teachers
    or encoders (AICSD distils a ResNet-101 teacher into ResNet-18 students; nas-segm's
    encoder is MobileNetV2's first blocks, see ``nas_segm``), started from torchvision's
    ImageNet classification checkpoints with ``init: {from: FILE, format: torchvision}``:
    ``resnet18-f37072fd.pth``, ``resnet50-0676ba61.pth`` (IMAGENET1K_V1) or
    ``resnet50-11ad3fa6.pth`` (IMAGENET1K_V2; both versions of a model share keys and
    shapes), ``resnet101-63fe2227.pth`` / ``resnet101-cd907fc2.pth``,
    ``mobilenet_v2-b0353104.pth`` / ``mobilenet_v2-7ebf99e0.pth``. :meth:`public_layout` gives
    the key table (:mod:`nastk.search_spaces.backbones.torchvision_layout`): the body's tensors
    plus the 1000-class classifier, which becomes the classification task's ``head`` (load
    it with ``part: all`` and 1000 classes; ``part: body`` leaves it).

    Every body is a :class:`~nastk.nn.body.StagedBody` (features for dense heads):

    ============  ==========  ===============================  ==========================
    body          params      feature channels                 out_channels
    ============  ==========  ===============================  ==========================
    resnet18      11,176,512  64, 128, 256, 512 (4..32)        512
    resnet50      23,508,032  256, 512, 1024, 2048 (4..32)     2048
    resnet101     42,500,160  256, 512, 1024, 2048 (4..32)     2048
    mobilenet_v2   2,223,872  16, 24, 32, 96, 320 (2..32)      1280 (after the 1x1 conv)
    ============  ==========  ===============================  ==========================

    (parameters of the body alone with 3 input channels, measured with
    :func:`nastk.evaluation.cost.count_params`; torchvision's counts with the 1000-class
    classifier are 11,689,512 / 25,557,032 / 44,549,160 / 3,504,872.) ``output_stride`` 16
    or 8 replaces the last stride(s) by dilation (torchvision's
    ``replace_stride_with_dilation``): the feature strides become 4/8/16/16 or 4/8/8/8 for the
    ResNets, 2/4/8/16/16 or 2/4/8/8/8 for MobileNetV2, with the same weights.
    :meth:`build` takes any number of input channels (the first conv's); a torchvision
    checkpoint fits 3.
    """

    name = "backbones"
    public_formats: tuple[str, ...] = ("torchvision",)

    class Options(BaseModel):
        """Options of :class:`BackbonesSpace` (``space.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")

        bodies: Choices[BodyName] = Field(
            default_factory=lambda: list(TORCHVISION_MODELS),
            description="the bodies to choose among: resnet18, resnet50, resnet101, "
                        "mobilenet_v2 (torchvision's layouts)")
        output_stride: Literal[8, 16, 32] = Field(
            32, description="total stride of the bodies' output: 32, or 16 / 8 with the last "
                            "stride(s) replaced by dilation")

    def __init__(self, **options: Any) -> None:
        self.options = opts = options_of(self.Options, options, what=f"search space {self.name!r}")
        self.output_stride: int = opts.output_stride
        super().__init__([Categorical("body", list(opts.bodies))], name="backbones")

    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> nn.Module:
        """The body of ``arch`` (validated first), ``in_channels`` input channels."""
        arch = self.validate(arch)
        return build_body(arch["body"], in_channels, self.output_stride)

    def public_layout(self, fmt: str, arch: Architecture | None = None) -> KeyTable:
        """The key table of torchvision's checkpoint of ``arch``'s body (``fmt`` must be
        ``torchvision``)."""
        if fmt != "torchvision":
            return super().public_layout(fmt, arch)
        if arch is None:
            raise ConfigError("search space 'backbones': a torchvision checkpoint is read for one "
                              f"body; give the architecture (body: one of {self['body'].choices})")
        return torchvision_table(self.validate(arch)["body"])
