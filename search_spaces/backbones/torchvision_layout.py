"""Key tables (:mod:`nastk.nn.layouts`) of torchvision's ImageNet classification checkpoints.

One :class:`~nastk.nn.layouts.KeyTable` per model maps every tensor of torchvision's
``resnet18`` / ``resnet50`` / ``resnet101`` / ``mobilenet_v2`` state dict (weights, batch-norm
running statistics and ``num_batches_tracked`` included) onto the classification model built
from :class:`~nastk.search_spaces.backbones.BackbonesSpace`'s body: the body's tensors are
``body.*``, the classifier (``fc``, MobileNetV2's ``classifier.1``) becomes the task's linear
``head``. The rules only accept the block indices the model has, so a checkpoint of another
depth leaves its extra blocks unmatched instead of loading silently.

Torchvision's names, read from its model definitions (``torchvision/models/resnet.py``,
``mobilenetv2.py``; the test fixtures ``tests/fixtures/torchvision/*.json`` list them):

- ResNet: ``conv1``, ``bn1``, ``layer{1-4}.{block}.conv{1,2[,3]}`` / ``bn{...}``,
  ``layer{L}.0.downsample.0`` (1x1 conv) / ``.1`` (batch norm), ``fc``.
- MobileNetV2: ``features.0.0`` / ``.0.1`` (stem conv, BN), ``features.{1-17}.conv...`` (blocks:
  with expansion ``conv.0.0``/``conv.0.1`` expand conv and BN, ``conv.1.0``/``conv.1.1``
  depthwise, ``conv.2``/``conv.3`` projection; without expansion, features.1,
  ``conv.0.*`` depthwise, ``conv.1``/``conv.2`` projection), ``features.18.0`` / ``.18.1``
  (last 1x1 conv, BN), ``classifier.1`` (linear; ``classifier.0`` is dropout).

The IMAGENET1K_V1 and IMAGENET1K_V2 weights of a model (e.g. ``resnet50-0676ba61.pth`` and
``resnet50-11ad3fa6.pth``) share their keys and shapes, so one table serves both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from nastk.nn.layouts import KeyTable, Rule
from nastk.search_spaces.backbones.mobilenet_v2 import MBV2_SETTINGS, MBV2_STAGES
from nastk.search_spaces.backbones.resnet import RESNET_DEPTHS

__all__ = ["BN", "MBV2_BLOCK_PATHS", "TORCHVISION_MODELS", "mobilenet_v2_block_rules",
           "mobilenet_v2_table", "resnet_table", "torchvision_table"]

#: the tensors of a batch-norm layer, as a regex group
BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

#: the models whose tables this module has
TORCHVISION_MODELS: tuple[str, ...] = ("resnet18", "resnet50", "resnet101", "mobilenet_v2")

#: torchvision's path, inside ``features.{i}``, of each part of an inverted-residual block,
#: keyed by whether the block has an expand conv
MBV2_BLOCK_PATHS: dict[bool, dict[str, str]] = {
    True: {"expand_conv": "conv.0.0", "expand_bn": "conv.0.1", "dw_conv": "conv.1.0",
           "dw_bn": "conv.1.1", "project_conv": "conv.2", "project_bn": "conv.3"},
    False: {"dw_conv": "conv.0.0", "dw_bn": "conv.0.1", "project_conv": "conv.1",
            "project_bn": "conv.2"},
}


def _any_of(indices: Sequence[int]) -> str:
    return "(" + "|".join(str(i) for i in indices) + ")"


def _conv_bn_rules(public: str, ours: str) -> list[Rule]:
    """A conv (``public.0``) and its batch norm (``public.1``) as ``ours.0`` / ``ours.1``."""
    p = re.escape(public)
    return [Rule(rf"{p}\.0\.weight", f"{ours}.0.weight"), Rule(rf"{p}\.1\.{BN}", rf"{ours}.1.\1")]


def resnet_table(depth: str) -> KeyTable:
    """The table of torchvision's ``resnet18`` / ``resnet50`` / ``resnet101`` onto
    :class:`~nastk.search_spaces.backbones.resnet.ResNetBody` (same submodule names, under
    ``body.``) and the classification head."""
    kind, blocks = RESNET_DEPTHS[depth]
    parts = "[12]" if kind == "basic" else "[123]"
    rules = [Rule(r"conv1\.weight", "body.conv1.weight"), Rule(rf"bn1\.{BN}", r"body.bn1.\1")]
    for layer, n in enumerate(blocks, start=1):
        idx = _any_of(range(n))
        rules += [
            Rule(rf"layer{layer}\.{idx}\.(conv{parts})\.weight",
                 rf"body.layer{layer}.\1.\2.weight"),
            Rule(rf"layer{layer}\.{idx}\.(bn{parts})\.{BN}", rf"body.layer{layer}.\1.\2.\3"),
        ]
        # layer1 of a basic-block ResNet keeps 64 channels at stride 1: no projection shortcut
        if not (layer == 1 and kind == "basic"):
            rules += _conv_bn_rules(f"layer{layer}.0.downsample", f"body.layer{layer}.0.downsample")
    rules += [Rule(r"fc\.(weight|bias)", r"head.\1")]
    return KeyTable("torchvision", f"torchvision {depth}", tuple(rules))


def mobilenet_v2_block_rules(index: int, ours: str, expand: bool,
                             names: Mapping[str, str]) -> list[Rule]:
    """Rules for torchvision's ``features.{index}`` inverted-residual block onto the block at
    ``ours``; ``names`` gives, per part (the keys of :data:`MBV2_BLOCK_PATHS`), our path inside
    the block (a conv's ``weight`` or a batch norm's tensors are appended)."""
    rules = []
    for part, public in MBV2_BLOCK_PATHS[expand].items():
        p = rf"features\.{index}\.{re.escape(public)}"
        if part.endswith("_conv"):
            rules.append(Rule(rf"{p}\.weight", f"{ours}.{names[part]}.weight"))
        else:
            rules.append(Rule(rf"{p}\.{BN}", rf"{ours}.{names[part]}.\1"))
    return rules


#: our names of a block's parts in
#: :class:`~nastk.search_spaces.backbones.mobilenet_v2.MobileNetV2Block`
_MBV2_BODY_NAMES = {"expand_conv": "expand.0", "expand_bn": "expand.1", "dw_conv": "depthwise.0",
                    "dw_bn": "depthwise.1", "project_conv": "project.0", "project_bn": "project.1"}


def mobilenet_v2_table() -> KeyTable:
    """The table of torchvision's ``mobilenet_v2`` onto
    :class:`~nastk.search_spaces.backbones.mobilenet_v2.MobileNetV2Body` (``features.0`` ->
    ``body.stem``, ``features.{1-17}`` -> ``body.stages.{k}.{j}``, ``features.18`` ->
    ``body.final``) and ``classifier.1`` -> the classification head."""
    rules = _conv_bn_rules("features.0", "body.stem")
    index = 1
    for k, rows in enumerate(MBV2_STAGES):
        j = 0
        for r in rows:
            t, _, n, _ = MBV2_SETTINGS[r]
            for _ in range(n):
                rules += mobilenet_v2_block_rules(index, f"body.stages.{k}.{j}", t != 1,
                                                  _MBV2_BODY_NAMES)
                index += 1
                j += 1
    rules += _conv_bn_rules(f"features.{index}", "body.final")
    rules += [Rule(r"classifier\.1\.(weight|bias)", r"head.\1")]
    return KeyTable("torchvision", "torchvision mobilenet_v2", tuple(rules))


def torchvision_table(model: str) -> KeyTable:
    """The table of torchvision model ``model`` (one of :data:`TORCHVISION_MODELS`)."""
    if model == "mobilenet_v2":
        return mobilenet_v2_table()
    if model in RESNET_DEPTHS:
        return resnet_table(model)
    raise ValueError(f"no torchvision table for {model!r}; known: {list(TORCHVISION_MODELS)}")
