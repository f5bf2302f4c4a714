"""The cost table of the full once-for-all MobileNetV3 space (``ofa_mbv3_full``): params and
FLOPs of a body, ``space.build_supernet(C).extract(arch)``, for inputs of shape ``(C, H, W)``,
computed from per-layer formulas without building anything (as once-for-all's own FLOPs table
does), equal to :func:`nastk.evaluation.cost.count_params` / ``count_flops`` (fvcore) on the
built body.

Counting rules (fvcore's, checked against ``count_flops`` on built bodies; batch 1, eval mode,
one multiply-add = one flop):

- convolution (``aten::_convolution``): ``C_out * (C_in / groups) * k * k * H_out * W_out``;
  its bias (the squeeze-excite convs have one) is a parameter but no flop;
- batch norm in eval mode (``aten::batch_norm``, affine): ``2 * C * H * W`` (its input's
  elements times two); ``2 * C`` parameters (the running statistics are buffers);
- the input resize (:func:`~nastk.search_spaces.ofa_mbv3.full_network.resize_input`):
  enlarging (``aten::upsample_bilinear2d``) ``4`` flops per output element; shrinking is the
  antialiased ``aten::_upsample_bilinear2d_aa``, which fvcore has no formula for: 0; none when
  the shorter side already is the resolution;
- squeeze-excite's global mean (``aten::mean``), its product with the input (``aten::mul``),
  ReLU, h-swish, hard sigmoid and the residual additions: 0 (no fvcore formula).

Spatial sizes follow the convolutions: the 3x3 stride-2 stem and every ``k x k`` depthwise conv
(padding ``k // 2``) map a side ``n`` to ``(n - 1) // stride + 1``, the 1x1 convs keep it; so
the feature-map size of each block position depends on the input shape and the resolution
only, not on the kernels, expand ratios or depths.

The table (:class:`OFAFullCostTable`, one per space and input shape) holds, per block position
(``4 s + j``) and per (kernel, expand) choice, the block's ``(params, flops)``, and the fixed
cost of the stem, the first block, the final 1x1 conv and the resize, per resolution: a query is
one look-up and addition per active block (:meth:`OFAFullCostTable.costs`).

Measured (``space.summary((3, 224, 224), num_classes=1000)``, once-for-all's classifier: pooling,
1x1 conv to ``W(1280)`` + h-swish, linear to 1000 classes), see the module docstring of
:mod:`nastk.search_spaces.ofa_mbv3.full_space`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from nastk.core.errors import InvalidArchitectureError
from nastk.search_spaces.ofa_mbv3.layers import mid_channels, se_channels
from nastk.search_spaces.ofa_mbv3.plan import OFA_PLAN


class FullSpacePlan(Protocol):
    """What the table reads of an ``ofa_mbv3_full`` space (:class:`~nastk.search_spaces.
    ofa_mbv3.full_space.OFAMobileNetV3FullSpace`): its options and channel plan."""

    options: Any
    max_depth: int
    n_stages: int
    stem_channels: int
    first_channels: int
    widths: list[int]
    final_channels: int

#: the stem conv's stride (:class:`~nastk.search_spaces.ofa_mbv3.full_network.OFAFullSupernet`)
STEM_STRIDE = 2

__all__ = ["OFAFullCostTable", "resized_size"]


def resized_size(h: int, w: int, resolution: int | None) -> tuple[int, int]:
    """The ``(H, W)`` :func:`~nastk.search_spaces.ofa_mbv3.full_network.resize_input` gives an
    ``h x w`` input: the shorter side ``resolution`` pixels, the aspect ratio kept."""
    if resolution is None or min(h, w) == resolution:
        return h, w
    if h <= w:
        return resolution, max(1, round(w * resolution / h))
    return max(1, round(h * resolution / w)), resolution


def _out(n: int, stride: int) -> int:
    """A side after a conv with odd kernel ``k``, padding ``k // 2`` and ``stride``."""
    return (n - 1) // stride + 1


def _conv(c_in: int, c_out: int, k: int, hw: int, groups: int = 1,
          bias: bool = False) -> tuple[int, int]:
    """``(params, flops)`` of a conv whose output has ``hw`` pixels."""
    weights = c_out * (c_in // groups) * k * k
    return weights + (c_out if bias else 0), weights * hw


def _bn(c: int, hw: int) -> tuple[int, int]:
    """``(params, flops)`` of an eval-mode affine batch norm over ``c x hw`` elements."""
    return 2 * c, 2 * c * hw


def _add(*parts: tuple[int, int]) -> tuple[int, int]:
    return sum(p for p, _ in parts), sum(f for _, f in parts)


def mbconv_costs(c_in: int, c_out: int, mid: int, kernel: int, stride: int, se: bool,
                 expand: bool, h: int, w: int) -> tuple[int, int]:
    """``(params, flops)`` of a plain MBConv block (:class:`MBConvBlock`) on an ``h x w``
    input: [1x1 expand + BN] -> ``kernel`` depthwise (``stride``) + BN -> [SE] -> 1x1 project
    + BN."""
    hw_in = h * w
    hw = _out(h, stride) * _out(w, stride)
    parts = []
    if expand:
        parts += [_conv(c_in, mid, 1, hw_in), _bn(mid, hw_in)]
    parts += [_conv(mid, mid, kernel, hw, groups=mid), _bn(mid, hw)]
    if se:
        r = se_channels(mid)
        parts += [_conv(mid, r, 1, 1, bias=True), _conv(r, mid, 1, 1, bias=True)]
    parts += [_conv(mid, c_out, 1, hw), _bn(c_out, hw)]
    return _add(*parts)


class OFAFullCostTable:
    """Params and FLOPs of the ``ofa_mbv3_full`` bodies of ``space`` for inputs of
    ``input_shape`` ``(C, H, W)`` (see the module docstring): built once, queried with
    :meth:`costs`. The per-resolution FLOPs tables are made on first use."""

    def __init__(self, space: FullSpacePlan, input_shape: Sequence[int]) -> None:
        if len(input_shape) != 3:
            raise ValueError(f"ofa_mbv3_full cost table: input shape (C, H, W) expected, got "
                             f"{tuple(input_shape)}")
        self.space = space
        self.input_shape = tuple(int(s) for s in input_shape)
        o = space.options
        self.kernels, self.expands = tuple(o.kernels), tuple(o.expands)
        self.max_depth = space.max_depth
        self.depths = frozenset(o.depths)
        self.n_stages = space.n_stages
        self.resolutions = tuple(o.resolutions) if o.resolutions else None
        self._tables: dict[int | None, tuple[int, int, list[dict[tuple[Any, Any],
                                                                 tuple[int, int]]]]] = {}

    def _table(self, resolution: int | None
               ) -> tuple[int, int, list[dict[tuple[Any, Any], tuple[int, int]]]]:
        """``(fixed params, fixed flops, per block position {(kernel, expand): (params,
        flops)})`` at ``resolution``."""
        table = self._tables.get(resolution)
        if table is not None:
            return table
        sp = self.space
        c, h0, w0 = self.input_shape
        h, w = resized_size(h0, w0, resolution)
        fixed_flops = 4 * c * h * w if resolution is not None and resolution > min(h0, w0) else 0
        # stem: 3x3 stride-2 conv + BN; first block: expand 1, 3x3 depthwise, no SE
        h, w = _out(h, STEM_STRIDE), _out(w, STEM_STRIDE)
        stem = _add(_conv(c, sp.stem_channels, 3, h * w), _bn(sp.stem_channels, h * w))
        first = mbconv_costs(sp.stem_channels, sp.first_channels, sp.stem_channels, 3, 1,
                             False, False, h, w)
        blocks: list[dict[tuple[Any, Any], tuple[int, int]]] = []
        c_in = sp.first_channels
        for width, stride, se in zip(sp.widths, OFA_PLAN["strides"], OFA_PLAN["se"],
                                     strict=True):
            for j in range(self.max_depth):
                s = stride if j == 0 else 1
                blocks.append({(k, e): mbconv_costs(c_in, width, mid_channels(c_in, e), k, s,
                                                    se, True, h, w)
                               for k in self.kernels for e in self.expands})
                if j == 0:
                    h, w = _out(h, s), _out(w, s)
                c_in = width
        final = _add(_conv(c_in, sp.final_channels, 1, h * w), _bn(sp.final_channels, h * w))
        fixed = _add(stem, first, final)
        table = (fixed[0], fixed[1] + fixed_flops, blocks)
        self._tables[resolution] = table
        return table

    def costs(self, arch: Mapping[str, Any]) -> dict[str, float]:
        """``{"params", "flops"}`` of the body of ``arch`` (an ``ofa_mbv3_full`` architecture;
        the kernel and expand entries of blocks beyond a stage's depth are not read)."""
        resolution = arch.get("resolution") if self.resolutions else None
        if self.resolutions and resolution not in self.resolutions:
            raise InvalidArchitectureError(
                f"ofa_mbv3_full: resolution {resolution!r} is not one of "
                f"{list(self.resolutions or ())}")
        params, flops, blocks = self._table(resolution)
        kernel, expand, md = arch["kernel"], arch["expand"], self.max_depth
        depths = arch["depth"]
        try:
            if len(depths) != self.n_stages or not self.depths.issuperset(depths):
                raise KeyError(f"depth {depths!r}")
            for s, depth in enumerate(depths):
                for i in range(s * md, s * md + depth):
                    p, f = blocks[i][kernel[i], expand[i]]
                    params += p
                    flops += f
        except (KeyError, IndexError, TypeError) as err:
            raise InvalidArchitectureError(
                f"ofa_mbv3_full: not an architecture of this space ({err!r}): "
                f"{dict(arch)}") from None
        return {"params": float(params), "flops": float(flops)}
