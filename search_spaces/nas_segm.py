"""Template-based encoder-decoder segmentation space after nas-segm (Nekrasov et al., WACV'20).

A fixed, small MobileNetV2-style encoder (not searched) gives two feature maps, at output
strides 4 and 8. The searched decoder is built from ``n_templates`` *templates* and
``n_layers`` *layers*:

- a template is ``(op1, op2, agg)``: two operations from ``ops`` and an aggregation from
  ``aggregations``: ``sum`` (add the two branch outputs), ``cat`` (concatenate, then 1x1
  conv-BN-ReLU back to ``decoder_channels``) or ``psum`` (nas-segm's learned per-channel
  ``alpha * a + beta * b``, ``alpha`` and ``beta`` starting at one); ``sum`` and ``cat`` by
  default;
- a layer is ``(in1, in2, template, repeats, stride)``. ``in1`` and ``in2`` index a growing pool
  of feature maps: positions 0 and 1 are the encoder outputs (strides 4 and 8), position
  ``2 + i`` is the output of layer ``i``, so layer ``i`` picks among ``2 + i`` positions. Each
  input is adapted to ``decoder_channels`` by a 1x1 conv-BN-ReLU when its channel count differs;
  if the two inputs differ in resolution, the smaller one is resized (bilinear,
  ``align_corners=False``) to the larger. Branch 1 then applies ``op1`` ``repeats`` times in
  sequence, branch 2 applies ``op2`` ``repeats`` times, and the template's aggregation merges
  them. Only the first ``n_stride_layers`` layers choose a ``stride`` (1 or 2; 2 halves the
  resolution, applied by the first op of each branch); later layers have no stride dimension and
  always use stride 1.
- the output: every *loose end*, i.e. every pool entry no layer consumed - encoder outputs
  included, and always the last layer's output - is resized to the stride-4 encoder feature's
  size, the loose ends are concatenated and a 1x1 conv-BN-ReLU maps them to ``agg_channels``.
  The body returns that ``[B, agg_channels, ceil(H/4), ceil(W/4)]`` map (any input size).

Operations: ``conv1x1``, ``conv3x3`` (conv-BN-ReLU), ``sep3x3``, ``sep5x5`` (depthwise kxk-BN-ReLU
then pointwise 1x1-BN-ReLU), ``dil3x3`` (the same, depthwise 3x3 with dilation ``dilation``),
``gap`` (global average pool -> 1x1 conv with bias -> ReLU, broadcast back to the spatial size;
no batch norm, so it trains with batch size 1), ``skip`` (identity; with stride 2 a parameter-free
3x3 average pool of stride 2) and ``zero`` (zeros of the output shape; it contributes nothing, so
a ``sum`` template with one zero op is the other branch alone and a template ``[zero, zero, *]``
yields a cell whose output is all zeros - valid, and it still builds and trains); and, not
searched unless ``ops`` names them, nas-segm's ``maxpool3x3`` (1x1 conv-BN, then 3x3 max pooling
with padding 1) and ``sep5x5_dil6`` (the separable 5x5 with dilation 6, padding 12). Every op
maps a ``H x W`` map to ``ceil(H / stride) x ceil(W / stride)``.

``ops: paper`` is nas-segm's WACV'20 operation set, :data:`PAPER_OPS` (sep3x3, sep5x5, gap,
maxpool3x3, sep5x5_dil6, skip), and makes the aggregations default to :data:`PAPER_AGGREGATIONS`
(psum, cat). Our separable convolutions put BN-ReLU after the depthwise conv as well, our ``gap``
has no batch norm and our ``cat`` is conv-BN-ReLU where the paper's is BN-ReLU-conv.

Every dimension is a :class:`~nastk.space.dimensions.Categorical` (``repeats`` an
:class:`~nastk.space.dimensions.IntRange`), named ``tpl{k}_op1``, ``tpl{k}_op2``, ``tpl{k}_agg``
(templates first), then ``layer{i}_in1``, ``layer{i}_in2``, ``layer{i}_tpl``,
``layer{i}_repeats`` and, for ``i < n_stride_layers``, ``layer{i}_stride``. Every combination of
values is a valid architecture, so :meth:`SearchSpace.size` - the product of the option counts -
is the exact number of distinct genotypes:

    (len(ops)^2 * len(aggregations))^n_templates * prod_i (2 + i)^2 * n_templates^n_layers
        * max_repeats^n_layers * 2^n_stride_layers

With the defaults (8 ops, 3 templates, 4 layers, repeats 1..3, 2 stride layers) that is
``128^3 * (2*3*4*5)^2 * 3^4 * 3^4 * 2^2`` = 2,097,152 * 14,400 * 81 * 81 * 4 =
792,542,262,067,200 (about 7.9e14). Genotypes are counted, not functions: unused templates,
swapping the inputs of a ``sum`` layer together with its ops, or ops hidden by ``zero`` give
equivalent networks.

Sizes (parameters of the body, measured with :func:`nastk.evaluation.cost.count_params`, 3 input
channels,
50 architectures sampled with ``numpy.random.default_rng(0)``): default options min 38,048 /
median 62,032 / max 125,440 (the fixed encoder is 26,880 of them). With
:data:`NAS_SEGM_WACV_OPTIONS` (MobileNetV2 x1.0 encoder up to its 32-channel stage, 55,488
params; 7 layers at 48 channels, 3 stride layers, repeats 1..4, aggregation to 64;
977,303,974,907,506,537,267,200 genotypes): min 106,016 / median 221,216 / max 756,032 - the
paper's models have about 270K. Note that batch norm in training mode needs more than one
value per channel: with ``n_stride_layers`` stride-2 layers the coarsest map is at stride
``8 * 2^n_stride_layers``, so train on inputs (times batch size) large enough for that.

The paper's encoder is ImageNet-pretrained: with the encoder options of
:data:`NAS_SEGM_WACV_OPTIONS` (:data:`MOBILENET_V2_ENCODER`: stem 32, widths [16, 24, 32], depths
[1, 2, 3], ``encoder_expands`` [1, 6, 6]) the encoder is torchvision's MobileNetV2 ``features.0``
.. ``features.6``, and ``init: {from: mobilenet_v2-b0353104.pth, format: torchvision}`` loads
them (:meth:`NasSegmSpace.public_layout`; the checkpoint's later blocks and classifier are
skipped, the decoder starts fresh). Other encoder options refuse the format, naming these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from torch import nn

from nastk.core.errors import ConfigError, InvalidArchitectureError
from nastk.core.options import QuietDefaults, options_of
from nastk.nn.layouts import KeyTable, Rule
from nastk.search_spaces.small_cnn import InvertedResidual
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical, Dimension, IntRange
from nastk.space.search_space import SearchSpace
from nastk.space.validators import Choices, StageInts

__all__ = ["AGGREGATIONS", "ALL_OPS", "DEFAULT_AGGREGATIONS", "MOBILENET_V2_ENCODER",
           "NAS_SEGM_WACV_OPTIONS", "OPS", "PAPER_AGGREGATIONS", "PAPER_OPS", "NasSegmBody",
           "NasSegmDecoder", "NasSegmEncoder", "NasSegmGenotype", "NasSegmLayer", "NasSegmSpace",
           "make_op", "mobilenet_v2_encoder_table"]

#: The default decoder operations, in the default order of the ``ops`` option.
OPS: tuple[str, ...] = ("conv1x1", "conv3x3", "sep3x3", "sep5x5", "dil3x3", "gap", "skip",
                        "zero")
#: Every decoder operation ``ops`` may name: the defaults plus the paper's two others.
ALL_OPS: tuple[str, ...] = (*OPS, "maxpool3x3", "sep5x5_dil6")
#: nas-segm's WACV'20 operations (``OP_NAMES_WACV``), what ``ops: paper`` stands for: separable
#: 3x3 and 5x5, global average pooling, 1x1 conv then 3x3 max pooling, separable 5x5 at
#: dilation 6, skip.
PAPER_OPS: tuple[str, ...] = ("sep3x3", "sep5x5", "gap", "maxpool3x3", "sep5x5_dil6", "skip")
#: Every way a template may merge its two branches.
AGGREGATIONS: tuple[str, ...] = ("sum", "cat", "psum")
#: The aggregations searched by default.
DEFAULT_AGGREGATIONS: tuple[str, ...] = ("sum", "cat")
#: nas-segm's aggregations (``AGG_OPS``), searched with ``ops: paper``: a learned per-channel
#: weighted sum and concatenation.
PAPER_AGGREGATIONS: tuple[str, ...] = ("psum", "cat")

#: Options close to the paper's WACV'20 setting (MobileNetV2 x1.0 encoder up to its 32-channel
#: stage, 7 decoder layers, 3 of them may stride, repeats 1..4, 64-channel aggregation), with our
#: operations; add ``ops: paper`` for nas-segm's (max pooling, the dilated 5x5, ``psum``).
NAS_SEGM_WACV_OPTIONS: dict[str, Any] = {
    "stem_channels": 32, "encoder_widths": [16, 24, 32], "encoder_depths": [1, 2, 3],
    "encoder_expands": [1, 6, 6], "n_templates": 3, "n_layers": 7, "n_stride_layers": 3,
    "max_repeats": 4, "decoder_channels": 48, "agg_channels": 64,
}
#: the encoder of torchvision's MobileNetV2 (width 1.0) up to its 32-channel stage, i.e. its
#: ``features.0`` .. ``features.6``: the options :meth:`NasSegmSpace.public_layout` reads
#: torchvision checkpoints for (those of :data:`NAS_SEGM_WACV_OPTIONS`)
MOBILENET_V2_ENCODER: dict[str, Any] = {
    "stem_channels": 32, "encoder_widths": [16, 24, 32], "encoder_depths": [1, 2, 3],
    "encoder_expands": [1, 6, 6],
}


# -- operations --------------------------------------------------------------------------------
def _conv_bn_relu(cin: int, cout: int, kernel: int = 1, stride: int = 1, dilation: int = 1,
                  groups: int = 1) -> list[nn.Module]:
    pad = dilation * (kernel // 2)
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=pad, dilation=dilation,
                      groups=groups, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _Zero(nn.Module):
    """Zeros of the op's output shape (kept in the graph, so gradients are zeros, not None)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        return x * 0.0


class _GlobalPool(nn.Module):
    """Global average pool -> 1x1 conv (with bias) -> ReLU, broadcast to the output size."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.stride > 1:
            h, w = -(-h // self.stride), -(-w // self.stride)
        y = F.relu(self.conv(x.mean(dim=(2, 3), keepdim=True)))
        return y.expand(-1, -1, h, w)


def make_op(name: str, channels: int, stride: int = 1, dilation: int = 2) -> nn.Module:
    """The decoder operation ``name`` mapping ``channels`` to ``channels`` channels and a
    ``H x W`` map to ``ceil(H / stride) x ceil(W / stride)``."""
    c = channels
    if name == "conv1x1":
        return nn.Sequential(*_conv_bn_relu(c, c, 1, stride))
    if name == "conv3x3":
        return nn.Sequential(*_conv_bn_relu(c, c, 3, stride))
    if name in ("sep3x3", "sep5x5", "dil3x3", "sep5x5_dil6"):
        kernel = 5 if name in ("sep5x5", "sep5x5_dil6") else 3
        dil = {"dil3x3": dilation, "sep5x5_dil6": 6}.get(name, 1)
        return nn.Sequential(*_conv_bn_relu(c, c, kernel, stride, dil, groups=c),
                             *_conv_bn_relu(c, c, 1))
    if name == "maxpool3x3":  # nas-segm's Pool: 1x1 conv-BN (no ReLU), then max pooling
        return nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c),
                             nn.MaxPool2d(3, stride=stride, padding=1))
    if name == "gap":
        return _GlobalPool(c, stride)
    if name == "skip":
        if stride == 1:
            return nn.Identity()
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if name == "zero":
        return _Zero(stride)
    raise ValueError(f"unknown nas_segm op {name!r}; use one of {list(ALL_OPS)}")


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


# -- genotype ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NasSegmGenotype:
    """An architecture of :class:`NasSegmSpace` in structured form.

    ``templates``: one ``(op1, op2, agg)`` per template; ``layers``: one
    ``(in1, in2, template, repeats, stride)`` per layer (stride 1 where the layer has no stride
    dimension).
    """

    templates: tuple[tuple[str, str, str], ...]
    layers: tuple[tuple[int, int, int, int, int], ...]

    def loose_ends(self) -> list[int]:
        """Pool positions no layer consumes (encoder outputs are 0 and 1, layer ``i`` is
        ``2 + i``), in increasing order; the decoder concatenates these."""
        used = {p for layer in self.layers for p in layer[:2]}
        return [p for p in range(2 + len(self.layers)) if p not in used]

    def __str__(self) -> str:
        tpls = " ".join(f"T{k}=({a},{b},{agg})" for k, (a, b, agg) in enumerate(self.templates))
        lays = " ".join(f"L{i}=({p},{q})->T{t}x{r}" + ("/s2" if s == 2 else "")
                        for i, (p, q, t, r, s) in enumerate(self.layers))
        ends = ",".join(str(p) for p in self.loose_ends())
        return f"{tpls} | {lays} | out=cat({ends})"


# -- modules -----------------------------------------------------------------------------------
class NasSegmEncoder(nn.Module):
    """Stem 3x3 conv (stride 2) then three inverted-residual stages at strides 2, 4 and 8;
    ``forward`` returns the stride-4 and stride-8 maps (``out_channels`` channels each).

    ``expand`` is each stage's expansion ratio, or one ratio for stages 2 and 3 (stage 1 then
    expands by 1). With stem 32, widths [16, 24, 32], depths [1, 2, 3] and ratios [1, 6, 6]
    (:data:`MOBILENET_V2_ENCODER`) it is torchvision's MobileNetV2 ``features.0`` ..
    ``features.6``: ``stem`` is ``features.0``, ``stages[0][0]`` ``features.1``,
    ``stages[1]`` ``features.2-3`` and ``stages[2]`` ``features.4-6``."""

    def __init__(self, in_channels: int, stem_channels: int, widths: Sequence[int],
                 depths: Sequence[int], expand: int | Sequence[int]) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem_channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem_channels), nn.ReLU6(inplace=True))
        expands = ([1, expand, expand] if isinstance(expand, int)
                   else [int(e) for e in expand])
        stages, channels = [], stem_channels
        for s, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = []
            for b in range(depth):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(InvertedResidual(channels, width, 3, stride, expands[s]))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.out_channels: list[int] = [int(widths[1]), int(widths[2])]
        self.out_strides: list[int] = [4, 8]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stages[0](self.stem(x))
        x4 = self.stages[1](x)
        x8 = self.stages[2](x4)
        return [x4, x8]


class NasSegmLayer(nn.Module):
    """One decoder layer: adapt both inputs to ``channels``, resize them to the larger one,
    run op1 (op2) ``repeats`` times on branch 1 (2), then aggregate: ``sum`` (a + b), ``cat``
    (concatenate, 1x1 conv-BN-ReLU) or ``psum`` (nas-segm's ``ParamSum``: ``alpha * a + beta *
    b`` with per-channel learned ``alpha`` and ``beta``, both starting at one)."""

    def __init__(self, in_channels: tuple[int, int], channels: int, op1: str, op2: str,
                 agg: str, repeats: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.adapt = nn.ModuleList(
            nn.Identity() if c == channels else nn.Sequential(*_conv_bn_relu(c, channels))
            for c in in_channels)
        self.branches = nn.ModuleList(
            nn.Sequential(*(make_op(op, channels, stride if r == 0 else 1, dilation)
                            for r in range(repeats)))
            for op in (op1, op2))
        self.agg = agg
        self.merge = (nn.Sequential(*_conv_bn_relu(2 * channels, channels)) if agg == "cat"
                      else nn.Identity())
        if agg == "psum":
            self.alpha = nn.Parameter(torch.ones(channels))
            self.beta = nn.Parameter(torch.ones(channels))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = self.adapt[0](a), self.adapt[1](b)
        if a.shape[-2:] != b.shape[-2:]:
            if a.shape[-2] * a.shape[-1] >= b.shape[-2] * b.shape[-1]:
                b = _resize(b, a.shape[-2:])
            else:
                a = _resize(a, b.shape[-2:])
        a, b = self.branches[0](a), self.branches[1](b)
        if self.agg == "sum":
            return a + b
        if self.agg == "psum":
            return self.alpha[:, None, None] * a + self.beta[:, None, None] * b
        return self.merge(torch.cat([a, b], dim=1))


class NasSegmDecoder(nn.Module):
    """The searched decoder: layers over a growing pool, then the loose ends concatenated at
    the stride-4 resolution and mapped to ``out_channels`` by a 1x1 conv-BN-ReLU."""

    def __init__(self, genotype: NasSegmGenotype, encoder_channels: Sequence[int],
                 channels: int, agg_channels: int, dilation: int) -> None:
        super().__init__()
        pool = list(encoder_channels)
        layers = []
        for p, q, t, r, s in genotype.layers:
            op1, op2, agg = genotype.templates[t]
            layers.append(NasSegmLayer((pool[p], pool[q]), channels, op1, op2, agg, r, s,
                                       dilation))
            pool.append(channels)
        self.layers = nn.ModuleList(layers)
        self.inputs: list[tuple[int, int]] = [(p, q) for p, q, *_ in genotype.layers]
        self.loose_ends: list[int] = genotype.loose_ends()
        self.head = nn.Sequential(*_conv_bn_relu(sum(pool[i] for i in self.loose_ends),
                                                 agg_channels))
        self.out_channels = int(agg_channels)
        #: channels of every layer's output (the auxiliary outputs)
        self.layer_channels: list[int] = [int(channels)] * len(layers)

    def forward(self, feats: Sequence[torch.Tensor], with_layers: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """The output map; with ``with_layers`` also every layer's output, in order."""
        pool = list(feats)
        for layer, (p, q) in zip(self.layers, self.inputs, strict=True):
            pool.append(layer(pool[p], pool[q]))
        size = pool[0].shape[-2:]
        out = self.head(torch.cat([_resize(pool[i], size) for i in self.loose_ends], dim=1))
        return (out, pool[len(feats):]) if with_layers else out


class NasSegmBody(nn.Module):
    """Encoder plus searched decoder; ``forward(x)`` returns the ``[B, out_channels,
    ceil(H/4), ceil(W/4)]`` decoder map (``output_stride`` 4). It deliberately has no
    ``forward_features``: the decoder is part of the searched body, a task adds only its
    classifier.

    Hooks of the train evaluator's nas-segm options: ``encoder`` and ``decoder`` (its
    ``decoder_stage`` trains the decoder on cached encoder outputs) and auxiliary outputs (its
    ``aux_loss``): with ``record_aux`` set, a forward keeps every decoder layer's output in
    ``aux_outputs`` (``aux_channels`` channels each)."""

    def __init__(self, encoder: NasSegmEncoder, decoder: NasSegmDecoder,
                 genotype: NasSegmGenotype) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.genotype = genotype
        self.out_channels: int = decoder.out_channels
        self.output_stride: int = 4
        self.aux_channels: list[int] = list(decoder.layer_channels)
        self.record_aux: bool = False
        self.aux_outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        if not self.record_aux:
            return self.decoder(feats)
        out, self.aux_outputs = self.decoder(feats, with_layers=True)
        return out


# -- torchvision's MobileNetV2 as the encoder -----------------------------------------------------
#: our path, inside a :class:`~nastk.search_spaces.small_cnn.InvertedResidual` block, of each
#: part of torchvision's block (its ``block`` sequence: [expand conv, BN, act,] depthwise conv,
#: BN, act, projection conv, BN)
_ENCODER_BLOCK_NAMES: dict[bool, dict[str, str]] = {
    True: {"expand_conv": "block.0", "expand_bn": "block.1", "dw_conv": "block.3",
           "dw_bn": "block.4", "project_conv": "block.6", "project_bn": "block.7"},
    False: {"dw_conv": "block.0", "dw_bn": "block.1", "project_conv": "block.3",
            "project_bn": "block.4"},
}


def mobilenet_v2_encoder_table() -> KeyTable:
    """The key table of torchvision's ``mobilenet_v2`` checkpoint onto the encoder of
    :data:`MOBILENET_V2_ENCODER` (``body.encoder.*``): ``features.0`` -> ``stem``,
    ``features.1`` -> ``stages.0.0``, ``features.2-3`` -> ``stages.1.*``, ``features.4-6`` ->
    ``stages.2.*``. The later blocks, the last conv and the classifier (``features.7`` ..
    ``features.18``, ``classifier.*``) are known and skipped: the decoder starts fresh."""
    from nastk.search_spaces.backbones.torchvision_layout import BN, mobilenet_v2_block_rules

    rules = [Rule(r"features\.0\.0\.weight", "body.encoder.stem.0.weight"),
             Rule(rf"features\.0\.1\.{BN}", r"body.encoder.stem.1.\1")]
    index = 1
    for s, depth in enumerate(MOBILENET_V2_ENCODER["encoder_depths"]):
        expand = MOBILENET_V2_ENCODER["encoder_expands"][s] != 1
        for b in range(depth):
            rules += mobilenet_v2_block_rules(index, f"body.encoder.stages.{s}.{b}", expand,
                                              _ENCODER_BLOCK_NAMES[expand])
            index += 1
    skip = (r"features\.([7-9]|1[0-8])\..*", r"classifier\..*")
    return KeyTable("torchvision", "torchvision mobilenet_v2 (features.0-6, nas_segm encoder)",
                    tuple(rules), skip=skip)


# -- the space ---------------------------------------------------------------------------------
class NasSegmSpace(SearchSpace):
    """nas-segm (WACV'20) template-based segmentation decoder on a fixed MobileNetV2 encoder.

    See the module docstring for the encoder, templates, layers, loose ends, operations, the
    dimension names and the space size. :meth:`build` returns a :class:`NasSegmBody` whose
    ``forward`` gives an ``agg_channels``-channel map at output stride 4;
    :meth:`decode` / :meth:`encode_genotype` convert between architectures and
    :class:`NasSegmGenotype`, :meth:`genotype` renders an architecture in one line.
    """

    name = "nas_segm"
    public_formats: tuple[str, ...] = ("torchvision",)

    class Options(QuietDefaults):
        """Options of :class:`NasSegmSpace` (``space.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")
        # added later: left out of the dump while unset, so that stored runs keep their identity
        quiet_defaults: ClassVar[tuple[str, ...]] = ("encoder_expands", "aggregations")

        stem_channels: int = Field(16, ge=1, description="encoder: channels of the stride-2 "
                                                         "stem convolution")
        encoder_widths: StageInts = Field(
            default_factory=lambda: [16, 24, 32],
            description="encoder: output channels of its 3 inverted-residual stages, at "
                        "strides 2, 4 and 8; the last two feed the decoder")
        encoder_depths: StageInts = Field(
            default_factory=lambda: [1, 2, 2],
            description="encoder: inverted-residual blocks in each of the 3 stages")
        encoder_expand: int = Field(4, ge=1, description="encoder: expansion ratio of the "
                                                         "blocks of stages 2 and 3 (stage 1: 1)")
        encoder_expands: StageInts | None = Field(
            None, description="encoder: expansion ratio of each of the 3 stages' blocks; when "
                              "given, encoder_expand is not read (MobileNetV2: [1, 6, 6])")
        ops: Choices[str] = Field(
            default_factory=lambda: list(OPS),
            description=f"decoder operations to search over, from {list(ALL_OPS)}; 'paper' "
                        f"stands for nas-segm's {list(PAPER_OPS)} (and makes the aggregations "
                        f"default to {list(PAPER_AGGREGATIONS)})")
        aggregations: Choices[str] = Field(
            default_factory=lambda: list(DEFAULT_AGGREGATIONS),
            description=f"ways a template may merge its branches, from {list(AGGREGATIONS)}")
        dilation: int = Field(2, ge=2, le=6, description="dilation of the dil3x3 op")
        n_templates: int = Field(3, ge=1, le=16, description="number of templates")
        n_layers: int = Field(4, ge=1, le=16, description="number of decoder layers")
        n_stride_layers: int = Field(2, ge=0, description="the first this many layers choose "
                                                          "stride 1 or 2; later ones use 1")
        max_repeats: int = Field(3, ge=1, le=8, description="a layer applies its template's "
                                                            "ops 1..max_repeats times")
        decoder_channels: int = Field(32, ge=1, description="width of every decoder layer")
        agg_channels: int = Field(32, ge=1, description="channels of the output (the 1x1 "
                                                        "conv over the concatenated loose ends)")

        @field_validator("encoder_widths", "encoder_depths", "encoder_expands")
        @classmethod
        def _three_stages(cls, v: list[int] | None) -> list[int] | None:
            if v is not None and len(v) != 3:
                raise ValueError(f"needs exactly 3 values (stages at strides 2, 4, 8), got {v}")
            return v

        @model_validator(mode="before")
        @classmethod
        def _paper_preset(cls, data: Any) -> Any:
            if isinstance(data, Mapping) and data.get("ops") == "paper":
                data = {**data, "ops": list(PAPER_OPS)}
                data.setdefault("aggregations", list(PAPER_AGGREGATIONS))
            return data

        @field_validator("ops", "aggregations")
        @classmethod
        def _known(cls, v: list[str], info: ValidationInfo) -> list[str]:
            known, extra = ((ALL_OPS, " or 'paper'") if info.field_name == "ops"
                            else (AGGREGATIONS, ""))
            unknown = [o for o in v if o not in known]
            if unknown:
                raise ValueError(f"unknown {info.field_name} {unknown}; choose from "
                                 f"{list(known)}{extra}")
            return v

        @model_validator(mode="after")
        def _stride_layers(self) -> NasSegmSpace.Options:
            if self.n_stride_layers > self.n_layers:
                raise ValueError(f"n_stride_layers ({self.n_stride_layers}) must be <= "
                                 f"n_layers ({self.n_layers})")
            return self

        def expands(self) -> list[int]:
            """The encoder's expansion ratio per stage."""
            if self.encoder_expands is not None:
                return list(self.encoder_expands)
            return [1, self.encoder_expand, self.encoder_expand]

    def __init__(self, **options: Any) -> None:
        opts = options_of(self.Options, options, what=f"search space {self.name!r}")
        self.options = opts
        self.n_templates = opts.n_templates
        self.n_layers = opts.n_layers
        self.n_stride_layers = opts.n_stride_layers
        dims: list[Dimension] = []
        for k in range(opts.n_templates):
            dims += [Categorical(f"tpl{k}_op1", opts.ops), Categorical(f"tpl{k}_op2", opts.ops),
                     Categorical(f"tpl{k}_agg", opts.aggregations)]
        for i in range(opts.n_layers):
            positions = list(range(2 + i))
            dims += [Categorical(f"layer{i}_in1", positions),
                     Categorical(f"layer{i}_in2", positions),
                     Categorical(f"layer{i}_tpl", list(range(opts.n_templates))),
                     IntRange(f"layer{i}_repeats", 1, opts.max_repeats)]
            if i < opts.n_stride_layers:
                dims.append(Categorical(f"layer{i}_stride", [1, 2]))
        super().__init__(dims, name="nas_segm")

    # -- genotype views -----------------------------------------------------------------------
    def decode(self, arch: Architecture | Mapping[str, Any]) -> NasSegmGenotype:
        """The structured :class:`NasSegmGenotype` of ``arch`` (validated first)."""
        a = self.validate(arch)
        templates = tuple((a[f"tpl{k}_op1"], a[f"tpl{k}_op2"], a[f"tpl{k}_agg"])
                          for k in range(self.n_templates))
        layers = tuple((a[f"layer{i}_in1"], a[f"layer{i}_in2"], a[f"layer{i}_tpl"],
                        a[f"layer{i}_repeats"],
                        a[f"layer{i}_stride"] if i < self.n_stride_layers else 1)
                       for i in range(self.n_layers))
        return NasSegmGenotype(templates, layers)

    def encode_genotype(self, templates: Sequence[Sequence[Any]],
                        layers: Sequence[Sequence[Any]]) -> Architecture:
        """The architecture of ``templates`` (``(op1, op2, agg)`` each) and ``layers``
        (``(in1, in2, template, repeats)`` or ``(..., stride)``; a layer past
        ``n_stride_layers`` may only give stride 1). Validated; errors name the dimension."""
        if len(templates) != self.n_templates or len(layers) != self.n_layers:
            raise InvalidArchitectureError(
                f"search space {self.name!r}: expected {self.n_templates} templates and "
                f"{self.n_layers} layers, got {len(templates)} and {len(layers)}")
        values: dict[str, Any] = {}
        for k, t in enumerate(templates):
            if len(t) != 3:
                raise InvalidArchitectureError(f"search space {self.name!r}: template {k} must "
                                               f"be (op1, op2, agg), got {t!r}")
            values.update({f"tpl{k}_op1": t[0], f"tpl{k}_op2": t[1], f"tpl{k}_agg": t[2]})
        for i, layer in enumerate(layers):
            if len(layer) not in (4, 5):
                raise InvalidArchitectureError(
                    f"search space {self.name!r}: layer {i} must be (in1, in2, template, "
                    f"repeats[, stride]), got {layer!r}")
            values.update({f"layer{i}_in1": layer[0], f"layer{i}_in2": layer[1],
                           f"layer{i}_tpl": layer[2], f"layer{i}_repeats": layer[3]})
            stride = layer[4] if len(layer) == 5 else 1
            if i < self.n_stride_layers:
                values[f"layer{i}_stride"] = stride
            elif stride != 1:
                raise InvalidArchitectureError(
                    f"search space {self.name!r}: layer {i} has stride {stride!r}, but only the "
                    f"first {self.n_stride_layers} layers (n_stride_layers) may use stride 2")
        return self.validate(values)

    def render(self, arch: Architecture) -> str:
        """Leaderboards and reports show the genotype (see :meth:`genotype`)."""
        return self.genotype(arch)

    def genotype(self, arch: Architecture | Mapping[str, Any]) -> str:
        """One-line rendering, e.g. ``T0=(sep3x3,gap,sum) ... | L0=(0,1)->T2x2/s2 ... |
        out=cat(3,5)``: templates, then each layer's inputs, template, repeats and stride, then
        the loose ends the output concatenates."""
        return str(self.decode(arch))

    # -- models -------------------------------------------------------------------------------
    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> NasSegmBody:
        """The body for ``arch`` (validated first): ``(N, in_channels, H, W)`` ->
        ``(N, agg_channels, ceil(H/4), ceil(W/4))``."""
        geno = self.decode(arch)
        o = self.options
        encoder = NasSegmEncoder(in_channels, o.stem_channels, o.encoder_widths,
                                 o.encoder_depths, o.expands())
        decoder = NasSegmDecoder(geno, encoder.out_channels, o.decoder_channels,
                                 o.agg_channels, o.dilation)
        return NasSegmBody(encoder, decoder, geno)

    def public_layout(self, fmt: str, arch: Architecture | None = None) -> KeyTable:
        """With ``fmt`` ``torchvision``: the table of torchvision's ``mobilenet_v2`` checkpoint
        onto the encoder (its ``features.0`` .. ``features.6``; the decoder starts fresh), for
        a space whose encoder options are :data:`MOBILENET_V2_ENCODER` (those of
        :data:`NAS_SEGM_WACV_OPTIONS`); other encoder options fail, naming the options to use."""
        if fmt != "torchvision":
            return super().public_layout(fmt, arch)
        o = self.options
        ours = {"stem_channels": o.stem_channels, "encoder_widths": list(o.encoder_widths),
                "encoder_depths": list(o.encoder_depths), "encoder_expands": o.expands()}
        wrong = {k: v for k, v in ours.items() if v != MOBILENET_V2_ENCODER[k]}
        if wrong:
            given = ", ".join(f"{k} {v}" for k, v in wrong.items())
            need = ", ".join(f"{k}: {v}" for k, v in MOBILENET_V2_ENCODER.items())
            raise ConfigError(
                f"search space {self.name!r}: a torchvision mobilenet_v2 checkpoint fits the "
                f"MobileNetV2 encoder only, and this space's encoder differs ({given}); use the "
                f"encoder options of NAS_SEGM_WACV_OPTIONS: {need}")
        return mobilenet_v2_encoder_table()
