"""The full once-for-all MobileNetV3 search space (``ofa_mbv3_full``): once-for-all's own
granularity, channel plan and layers, so that its public supernets load into it
(``init: {from: FILE, format: ofa}``).

An architecture: ``depth`` (5 values, blocks per stage, {2, 3, 4}), ``kernel`` and ``expand``
(20 values each, one per block, {3, 5, 7} and {3, 4, 6}; block ``j`` of stage ``s`` at
``4 s + j``), and ``resolution`` when ``resolutions`` is set (once-for-all trains on 128 to 224
in steps of 4). The kernel and expand entries of blocks beyond a stage's depth do not run;
:meth:`validate` holds them at the first choice, so one network has one key, and
:meth:`size` counts networks:

    per stage: 9^2 + 9^3 + 9^4 = 7,371 block settings; 7,371^5 =
    21,758,329,012,729,099,851 (about 2.2e19) architectures at one resolution,
    times 25 with once-for-all's resolutions 128..224 (about 5.4e20).

Sizes (``space.summary((3, 224, 224), num_classes=1000)``, fvcore, one multiply-add = one
flop; bodies with once-for-all's classifier for 1000 classes: pooling, 1x1 conv to ``W(1280)``
+ h-swish, linear), measured:

- width 1.0: smallest 3,410,792 params / 127.72 MFLOPs (body alone 900,992 / 125.16 M),
  largest 7,664,760 params / 585.00 MFLOPs (body 5,154,960 / 582.44 M);
- width 1.2: smallest 4,602,456 params / 201.86 MFLOPs (body 1,295,984 / 198.50 M),
  largest 10,701,632 params / 867.94 MFLOPs (body 7,395,160 / 864.58 M).

The params and FLOPs of any body are computed without building it by the cost table of
:mod:`nastk.search_spaces.ofa_mbv3.full_costs` (:meth:`OFAMobileNetV3FullSpace.body_costs`),
equal to fvcore's count on the built body; its module docstring states the counting rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from nastk.core.options import options_of
from nastk.nn.layouts import KeyTable
from nastk.nn.supernet import SupernetSpace
from nastk.search_spaces.ofa_mbv3.full_costs import OFAFullCostTable
from nastk.search_spaces.ofa_mbv3.full_network import OFAFullSupernet
from nastk.search_spaces.ofa_mbv3.latency_units import ElasticUnits, units_of
from nastk.search_spaces.ofa_mbv3.layers import make_divisible
from nastk.search_spaces.ofa_mbv3.ofa_layout import ofa_key_table
from nastk.search_spaces.ofa_mbv3.plan import OFA_PLAN, OFA_RESOLUTIONS
from nastk.search_spaces.ofa_mbv3.space import DepthChoices, ExpandChoices, KernelChoices
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical, StageList

__all__ = ["OFA_PLAN", "OFA_RESOLUTIONS", "OFAMobileNetV3FullSpace"]

class OFAMobileNetV3FullSpace(SupernetSpace):
    """Once-for-all's MobileNetV3 space exactly: kernel and expand per block, depth per stage,
    elastic resolution; loads once-for-all's checkpoints.

    Once-for-all's channel plan scaled by ``width_mult`` (its public supernets: 1.0 and 1.2)
    and its layers (squeeze-excite in stages 2, 4, 5, h-swish from stage 3, the 7to5 / 5to3
    kernel-transform matrices); ``resolutions`` adds the input resolution as a dimension. See
    the module docstring."""

    name = "ofa_mbv3_full"
    public_formats = ("ofa",)

    class Options(BaseModel):
        """Options of :class:`OFAMobileNetV3FullSpace` (``space.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")

        width_mult: float = Field(1.0, gt=0.0, le=4.0, description="scales every width of "
                                  "once-for-all's plan (multiples of 8); its public supernets "
                                  "are 1.0 and 1.2")
        depths: DepthChoices = Field(default_factory=lambda: [2, 3, 4])
        expands: ExpandChoices = Field(default_factory=lambda: [3, 4, 6])
        kernels: KernelChoices = Field(default_factory=lambda: [3, 5, 7])
        resolutions: list[int] | None = Field(
            None, description="input resolutions searched (the shorter side the body resizes "
            "its input to), e.g. once-for-all's 128..224 step 4; unset: no resolution "
            "dimension, the task's input size")

        @field_validator("resolutions")
        @classmethod
        def _resolutions(cls, v: list[int] | None) -> list[int] | None:
            if v is None:
                return v
            if not v or any(r < 32 for r in v) or v != sorted(set(v)):
                raise ValueError(f"give distinct resolutions of at least 32 pixels in "
                                 f"ascending order, got {v}")
            return v

    def __init__(self, **options: Any) -> None:
        opts = options_of(self.Options, options, what=f"search space {self.name!r}")
        self.options = opts
        w = opts.width_mult
        self.stem_channels = make_divisible(OFA_PLAN["stem"] * w, 8)
        self.first_channels = make_divisible(OFA_PLAN["first_block"] * w, 8)
        self.widths = [make_divisible(c * w, 8) for c in OFA_PLAN["widths"]]
        self.final_channels = make_divisible(OFA_PLAN["final"] * w, 8)
        #: the classification head's hidden width once-for-all uses (``head_hidden``)
        self.feature_mix_channels = make_divisible(OFA_PLAN["feature_mix"] * w, 8)
        self.n_stages = len(self.widths)
        self.max_depth = max(opts.depths)
        n_blocks = self.n_stages * self.max_depth
        dims: list[Any] = [StageList("depth", opts.depths, self.n_stages),
                           StageList("kernel", opts.kernels, n_blocks),
                           StageList("expand", opts.expands, n_blocks)]
        if opts.resolutions:
            dims.append(Categorical("resolution", opts.resolutions, ordinal=True))
        super().__init__(dims, name="ofa_mbv3_full")

    # -- architectures --------------------------------------------------------------------------
    def active_blocks(self, arch: Mapping[str, Any]) -> list[int]:
        """Indices (into ``kernel`` / ``expand``) of the blocks that run."""
        return [s * self.max_depth + j for s, d in enumerate(arch["depth"]) for j in range(d)]

    def canonical(self, arch: Architecture) -> Architecture:
        """``arch`` with the kernel and expand of every block beyond its stage's depth at the
        first choice (those blocks do not run): one network, one key."""
        values = dict(arch)
        active = set(self.active_blocks(values))
        o = self.options
        for name, first in (("kernel", o.kernels[0]), ("expand", o.expands[0])):
            values[name] = tuple(v if i in active else first
                                 for i, v in enumerate(values[name]))
        return Architecture(values)

    def size(self) -> int:
        """Distinct networks: per stage, the sum over depths of (kernels x expands)^depth; times
        the resolutions."""
        o = self.options
        per_block = len(o.kernels) * len(o.expands)
        per_stage = sum(per_block ** d for d in o.depths)
        return per_stage ** self.n_stages * (len(o.resolutions) if o.resolutions else 1)

    def encode(self, arch: Architecture) -> np.ndarray:
        """Once-for-all's encoding: per block, one-hot kernel and expand (zeros for a block
        beyond its stage's depth); the depths and the resolution as ordinals."""
        arch = self.validate(arch)
        o = self.options
        active = set(self.active_blocks(arch))
        vec: list[float] = [o.depths.index(d) / max(len(o.depths) - 1, 1)
                            for d in arch["depth"]]
        for name, choices in (("kernel", o.kernels), ("expand", o.expands)):
            for i, v in enumerate(arch[name]):
                one_hot = [0.0] * len(choices)
                if i in active:
                    one_hot[list(choices).index(v)] = 1.0
                vec.extend(one_hot)
        if o.resolutions:
            vec.append(o.resolutions.index(arch["resolution"]) / max(len(o.resolutions) - 1, 1))
        return np.asarray(vec, dtype=np.float32)

    def encoding_size(self) -> int:
        o = self.options
        n_blocks = self.n_stages * self.max_depth
        return (self.n_stages + n_blocks * (len(o.kernels) + len(o.expands))
                + (1 if o.resolutions else 0))

    # -- networks -------------------------------------------------------------------------------
    def build_supernet(self, in_channels: int) -> OFAFullSupernet:
        o = self.options
        return OFAFullSupernet(
            in_channels, self.stem_channels, self.first_channels, self.widths,
            OFA_PLAN["strides"], OFA_PLAN["se"], OFA_PLAN["activations"], o.depths, o.expands,
            o.kernels, self.final_channels, o.resolutions)

    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> nn.Module:
        """A stand-alone plain body for ``arch`` (extracted from a fresh supernet)."""
        return super().build(self.validate(arch), in_channels)

    def public_layout(self, fmt: str, arch: Architecture | None = None) -> KeyTable:
        """Once-for-all's ``OFAMobileNetV3`` key table (``format: ofa``)."""
        if fmt != "ofa":
            return super().public_layout(fmt, arch)
        return ofa_key_table(self.n_stages, self.max_depth)

    def summary(self, input_shape: Sequence[int] = (3, 224, 224),
                num_classes: int | None = None) -> dict[str, Any]:
        """Space size and the params / FLOPs of the smallest and largest bodies at
        ``input_shape`` (with once-for-all's classifier for ``num_classes`` when given),
        counted by fvcore on the built networks."""
        from nastk.evaluation.cost import count_flops, count_params

        supernet = self.build_supernet(int(input_shape[0])).eval()
        out: dict[str, Any] = {"size": self.size(), "log10_size": math.log10(self.size()),
                               "input_shape": list(input_shape)}
        for kind, arch in (("smallest", self.smallest()), ("largest", self.largest())):
            net: nn.Module = supernet.extract(arch)
            if num_classes:  # once-for-all's classifier: pool, 1x1 conv + h-swish, linear
                net = nn.Sequential(net, nn.AdaptiveAvgPool2d(1),
                                    nn.Conv2d(self.final_channels, self.feature_mix_channels, 1,
                                              bias=False), nn.Hardswish(), nn.Flatten(1),
                                    nn.Linear(self.feature_mix_channels, num_classes))
            out[kind] = {"arch": arch.as_dict(), "params": count_params(net),
                         "flops": count_flops(net, input_shape)}
        return out

    def body_costs(self, arch: Architecture | Mapping[str, Any],
                   input_shape: Sequence[int]) -> dict[str, float]:
        """Params and FLOPs of the body of ``arch`` at ``input_shape``, from the cost table
        (:mod:`nastk.search_spaces.ofa_mbv3.full_costs`), without building it; equal to fvcore's
        count on ``build(arch, C)``."""
        key = tuple(int(s) for s in input_shape)
        tables: dict[tuple[int, ...], OFAFullCostTable] = self.__dict__.setdefault(
            "_cost_tables", {})
        table = tables.get(key)
        if table is None:
            table = tables[key] = OFAFullCostTable(self, key)
        return table.costs(arch)

    def latency_units(self, input_shape: Sequence[int]) -> ElasticUnits:
        """This space's networks at ``input_shape`` as latency units (stem, one MBConv block per
        position and choice at its input size, final conv), for ``nastk latency profile`` and
        predicted latency: :func:`~nastk.search_spaces.ofa_mbv3.latency_units.units_of`."""
        return units_of(self, input_shape, per_block=True, resolutions=self.options.resolutions)

    def body_geometry(self, arch: Architecture | Mapping[str, Any],
                      input_shape: Sequence[int]) -> tuple[Any, ...]:
        """The input shape and, with a resolution dimension, the resolution (the body's output
        sizes depend on these only)."""
        res = arch["resolution"] if self.options.resolutions else None
        return (*(int(s) for s in input_shape), res)
