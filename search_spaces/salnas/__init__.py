"""A SalNAS-style encoder-decoder supernet for saliency: elastic MobileNetV3 encoder, U-Net
decoder tied to the encoder's widths.

One supernet (:class:`SalNASSupernet`) holds every architecture:

- **Encoder.** A fixed 3x3 stem (``stem_channels`` 16, stride ``stem_stride`` 2, BN, hswish),
  then per stage up to ``max(depths)`` MBConv blocks (:class:`WidthElasticMBConv`, the ofa_mbv3
  :class:`~nastk.search_spaces.ofa_mbv3.ElasticMBConv` with an elastic output width). Searched per
  stage: the **width** (the stage's output channels, one of its width choices -- by default
  its base width plus 0 or 8, ``[16, 24] / [24, 32] / [40, 48] / [64, 72]`` -- sliced as the
  first channels of the largest, like OFA's width), the depth (the first blocks run), the
  expand ratio (mid channels ``make_divisible(block_in * expand, 8)`` of the *active* input
  width) and the depthwise kernel (centre crop with OFA's kernel-transform matrices); with
  ``per_block`` expand and kernel are chosen per block. Default strides 2, 2, 2, 2 (features
  at strides 4..32), squeeze-excite and hswish in the second half of the stages.
- **Decoder.** U-Net over the skips -- the last feature at each distinct stride, the stem's
  output included (strides 2, 4, 8, 16, 32 by default, like SalNAS's five). From the coarsest
  to the finest, each level is a 3x3 conv-BN-activation (swish by default) whose output has the
  active width of its skip, a bilinear resize to the next finer skip (2x) and a concatenation
  with it. The finest level's conv projects to the fixed ``out_channels`` (16) and its output
  (at the stem's stride) is resized bilinearly to the input's size. Every decoder conv is
  elastic (input columns per concatenated part, first output channels) and is static or an
  attention-mixed dynamic conv (``decoder_conv``, per level possible).
- **Output.** ``out_channels`` channels at the input's resolution for every architecture, so a
  saliency task's head (a 1x1 conv to one logit) fits every sub-network. The supernet is not a
  staged body: its encoder features' channels depend on the active widths.

``extract(arch)`` hands out a plain :class:`SalNASBody` (``nn.Conv2d`` / ``nn.BatchNorm2d`` /
activations, ofa_mbv3's :class:`MBConvBlock` and :class:`SqueezeExcite`, and
:class:`~nastk.nn.dynamic_conv.DynamicConv2d` for dynamic decoder convs) whose output
equals the supernet's. ``reorganize_channels`` sorts each block's mid channels only (see
:meth:`SalNASSupernet.reorganize_channels`).

Sizes and costs (``SalNASSpace(**options).summary(input_shape)``, measured with
``nastk.evaluation.cost`` on the extracted bodies, no head; fvcore counts one fused multiply-add as
one flop and the bilinear resizes as zero):

- default options: 1,679,616 architectures (2^4 widths x 18^4 depth / expand / kernel); at
  3x48x64, the saliency task's synthetic default: smallest 135,240 params / 7.98 MFLOPs,
  largest 842,152 params / 21.34 MFLOPs; at 3x64x64: smallest 135,240 params / 10.58 MFLOPs,
  largest 842,152 params / 28.04 MFLOPs.
- default options, 3x288x384 (SalNAS's SALICON input): smallest 135,240 params / 285.28
  MFLOPs, largest 842,152 params / 748.44 MFLOPs.
- ``decoder_conv: dynamic`` (4 kernels): 3x64x64 smallest 437,640 params / 10.98 MFLOPs,
  largest 1,268,488 params / 28.61 MFLOPs; 3x288x384 285.68 / 749.01 MFLOPs.
- ``per_block: true``: 2,821,109,907,456 architectures, of which 70,892,257,536 distinct
  networks (choices of blocks beyond a stage's depth are ignored); same extremes as the
  default.

SalNAS itself (its AlphaNet space: 7 stages, widths up to 224, swish; 20.98M params in the
paper) is far larger; the default options keep its structure -- elastic width / depth / kernel /
expand per stage, decoder widths tied to the encoder's -- at a size that trains on a CPU.

``preset: alphanet`` is SalNAS's own space (``configs/train_alphanet_models.yml``): per-stage
value sets (``stage_depths`` / ``stage_expands`` / ``stage_kernels``, e.g. the first stage's
expand {1}, the last stage's depth {1, 2}), an elastic stem (``stem_widths`` {16, 24}), the
input width as a dimension (``resolutions`` {256, 384}: the body resizes its input, bicubic,
to 192x256 or 288x384 for SALICON's 4:3 images), swish everywhere, and dropout 0.2 /
drop-connect 0.2 (last two stages) on the largest subnet in supernet training:
110,075,314,176 architectures (2 resolutions x 2 stem widths x 384 widths x 6,912 depths x 81
expands x 128 kernels, about 1.1e11 as the method's count). At 3x288x384: smallest 5,296,432
params / 527.65 MFLOPs, largest 19,309,960 params / 3422.38 MFLOPs (the paper: 20.98M; the
difference is SalNAS's final 1x1 expand layer to 6x the last width, used as the deepest skip,
AttentiveNAS's 1x1 shortcut convs on the first blocks of stages, and its decoder, whose levels
output the next finer skip's width; see benchmarks/RESULTS.md).
"""

from nastk.search_spaces.salnas.layers import ConcatConv, ElasticConcatConv, WidthElasticMBConv
from nastk.search_spaces.salnas.network import SalNASBody, SalNASSupernet
from nastk.search_spaces.salnas.space import SalNASSpace

__all__ = ["ConcatConv", "ElasticConcatConv", "SalNASBody", "SalNASSpace", "SalNASSupernet",
           "WidthElasticMBConv"]
