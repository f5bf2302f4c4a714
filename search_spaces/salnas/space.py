"""The salnas search space: dimensions, options, and the networks it builds."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from nastk.core.options import options_of
from nastk.nn.supernet import SupernetSpace
from nastk.search_spaces.ofa_mbv3.space import DepthChoices, ExpandChoices, KernelChoices
from nastk.search_spaces.salnas.network import SalNASSupernet, skip_plan
from nastk.space.architecture import Architecture
from nastk.space.dimensions import Categorical, StageList
from nastk.space.validators import AscendingChoices, StageInts, one_per_stage

__all__ = ["SalNASSpace"]

ConvKind = Literal["static", "dynamic"]
Activation = Literal["relu", "hswish", "swish"]

#: SalNAS's AlphaNet space (its ``configs/train_alphanet_models.yml``, AttentiveNAS's layout):
#: seven MBConv stages, swish everywhere, per-stage value sets, an elastic stem, the input
#: width 256 or 384, and the sandwich's regularisation of the largest subnet (dropout 0.2,
#: drop-connect 0.2 in the last two stages). ``out_channels`` 24 is SalNAS's last decoder
#: conv's largest width.
ALPHANET: dict[str, Any] = {
    "widths": [[16, 24], [24, 32], [32, 40], [64, 72], [112, 120, 128], [192, 200, 208, 216],
               [216, 224]],
    "strides": [1, 2, 2, 2, 1, 2, 1],
    "se_stages": [False, False, True, False, True, True, True],
    "activations": ["swish"] * 7,
    "stem_widths": [16, 24], "stem_stride": 2, "stem_activation": "swish",
    "depths": [1, 2, 3, 4, 5, 6, 7, 8], "expands": [1, 4, 5, 6], "kernels": [3, 5],
    "stage_depths": [[1, 2], [3, 4, 5], [3, 4, 5, 6], [3, 4, 5, 6], [3, 4, 5, 6, 7, 8],
                     [3, 4, 5, 6, 7, 8], [1, 2]],
    "stage_expands": [[1], [4, 5, 6], [4, 5, 6], [4, 5, 6], [4, 5, 6], [6], [6]],
    "stage_kernels": [[3, 5]] * 7,
    "resolutions": [256, 384],
    "decoder_activation": "swish",
    "out_channels": 24,
    "dropout": 0.2, "drop_connect": 0.2, "drop_connect_stages": 2,
}
PRESETS: dict[str, dict[str, Any]] = {"alphanet": ALPHANET}


class SalNASSpace(SupernetSpace):
    """SalNAS-style encoder-decoder supernet for saliency: an elastic MobileNetV3 encoder
    (width, depth, expand ratio, kernel) and a U-Net decoder whose widths follow the encoder's.

    Dimensions: ``width_<i>`` for every stage ``i`` (the stage's output channels, one of that
    stage's width choices: the first channels of the stage's largest width); ``depth`` (blocks
    per stage that run, the first ones); ``expand`` and ``kernel`` (the MBConv expansion ratio
    -- mid channels ``make_divisible(block_in * expand, 8)`` with ``block_in`` the active input
    width -- and depthwise kernel: one value per stage, or with ``per_block`` one per block,
    ``max(depths)`` per stage in stage order, where values of blocks beyond the stage's depth
    are ignored). Stem, strides, squeeze-excite, activations and the decoder's conv kind are
    fixed options. The body's output has the fixed ``out_channels`` at the input's
    resolution. Choices must be ascending so that :meth:`largest` / :meth:`smallest` are the
    extremes. Costs: :meth:`summary` and the package docstring.

    ``stage_depths`` / ``stage_expands`` / ``stage_kernels`` give every stage its own value
    set (default: the global ``depths`` / ``expands`` / ``kernels`` for every stage; ``depth``
    / ``expand`` / ``kernel`` stay one list, value ``i`` from stage ``i``'s set);
    ``stem_widths`` adds ``stem_width`` (an elastic stem) and ``resolutions`` adds
    ``resolution`` (the width the body resizes its input to). ``dropout`` and
    ``drop_connect`` regularise the largest sub-network in supernet training. ``preset:
    alphanet`` is SalNAS's AlphaNet space (:data:`ALPHANET`; options given beside it
    override it): 110,075,314,176 architectures.
    """

    name = "salnas"
    #: the ``preset`` values (``nastk list spaces`` prints each one's size and largest subnet)
    presets: tuple[str, ...] = ("alphanet",)

    class Options(BaseModel):
        """Options of :class:`SalNASSpace` (``space.options`` in a config)."""

        model_config = ConfigDict(extra="forbid")

        preset: Literal["alphanet"] | None = Field(
            None, description="start from a method's space: alphanet (SalNAS's AlphaNet "
            "space, 7 stages, per-stage sets, elastic stem, resolution 256/384, dropout and "
            "drop-connect on the largest subnet); other options override it")
        stages: StageInts = Field(
            default_factory=lambda: [16, 24, 40, 64],
            description="base (smallest) output width of each stage; their number is the "
            "stage count. A stage's width choices are its base plus each of `width_offsets`")
        width_offsets: list[int] = Field(
            default_factory=lambda: [0, 8],
            description="added to every stage's base width to give its width choices "
            "(ascending, from 0; SalNAS steps by 8)")
        widths: list[AscendingChoices[int]] | None = Field(
            None, min_length=1, description="explicit width choices per stage (ascending), "
            "instead of `stages` + `width_offsets`; their number is the stage count")
        strides: StageInts | None = Field(
            None, description="stride of each stage's first block; default 2 for every stage "
            "(the stem's output is then the finest decoder skip)")
        stem_stride: int = Field(2, ge=1, le=4, description="stride of the stem conv")
        stem_channels: int = Field(16, ge=1, description="stem conv channels (fixed)")
        stem_widths: AscendingChoices[int] | None = Field(
            None, description="an elastic stem: its width choices (dimension `stem_width`); "
            "default the fixed `stem_channels`")
        stem_activation: Activation = Field("hswish", description="activation of the stem")
        depths: DepthChoices = Field(default_factory=lambda: [1, 2, 3])
        expands: ExpandChoices = Field(default_factory=lambda: [3, 4, 6])
        kernels: KernelChoices = Field(default_factory=lambda: [3, 5])
        stage_depths: list[DepthChoices] | None = Field(
            None, description="depth choices per stage (one list per stage); default `depths` "
            "for every stage")
        stage_expands: list[ExpandChoices] | None = Field(
            None, description="expand choices per stage; default `expands` for every stage")
        stage_kernels: list[KernelChoices] | None = Field(
            None, description="kernel choices per stage; default `kernels` for every stage")
        resolutions: list[int] | None = Field(
            None, description="input widths searched (dimension `resolution`): the body "
            "resizes its input to that width, bicubic, the height keeping the aspect ratio "
            "(SalNAS: 256, 384); default none, the task's input size")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the decoder's "
                               "output of the largest subnet in supernet training (SalNAS 0.2)")
        drop_connect: float = Field(0.0, ge=0.0, lt=1.0, description="drop-connect rate of the "
                                    "largest subnet's residual branches in supernet training, "
                                    "scaled by block index / blocks (SalNAS 0.2)")
        drop_connect_stages: int | None = Field(
            None, ge=1, description="drop-connect on the last this many stages only (SalNAS "
            "2); default every stage")
        per_block: bool = Field(False, description="choose expand and kernel per block "
                                "(max(depths) values per stage) instead of per stage")
        se_stages: list[bool] | None = Field(
            None, description="squeeze-excite per stage; default on in the second half")
        activations: list[Activation] | None = Field(
            None, description="encoder activation per stage (relu, hswish, swish); default "
            "relu in the first half, hswish in the second")
        decoder_conv: ConvKind | list[ConvKind] = Field(
            "static", description="conv of the decoder levels: static, dynamic "
            "(attention-mixed `dynamic_kernels` kernels), or a list with one per level, "
            "coarsest first (the last is the projection to out_channels)")
        decoder_activation: Literal["relu", "hswish", "swish"] = Field(
            "swish", description="activation of the decoder convs")
        dynamic_kernels: int = Field(4, ge=1, description="K, kernels mixed by a dynamic conv")
        out_channels: int = Field(16, ge=1, description="channels of the body's output (the "
                                  "last decoder conv), the same for every architecture")

        @model_validator(mode="before")
        @classmethod
        def _preset(cls, data: Any) -> Any:
            if isinstance(data, Mapping) and data.get("preset") is not None:
                preset = PRESETS.get(str(data["preset"]))
                if preset is not None:  # an unknown name fails on the field
                    data = {**preset, **data}
            return data

        @field_validator("resolutions")
        @classmethod
        def _resolutions(cls, v: list[int] | None) -> list[int] | None:
            if v is not None and (not v or any(r < 8 for r in v) or v != sorted(set(v))):
                raise ValueError(f"give distinct resolutions of at least 8 pixels in "
                                 f"ascending order, got {v}")
            return v

        @field_validator("width_offsets")
        @classmethod
        def _offsets(cls, v: list[int]) -> list[int]:
            if not v or v[0] < 0 or any(b <= a for a, b in itertools.pairwise(v)):
                raise ValueError(f"width_offsets must be strictly ascending and >= 0, got {v}")
            return v

        @model_validator(mode="after")
        def _per_stage(self) -> SalNASSpace.Options:
            if self.widths is not None and self.model_fields_set & {"stages", "width_offsets"}:
                raise ValueError("give either `widths` or `stages` / `width_offsets`, not both")
            n = len(self.stage_widths())
            if self.strides is None:
                self.strides = [2] * n
            if self.se_stages is None:
                self.se_stages = [i >= n // 2 for i in range(n)]
            if self.activations is None:
                self.activations = ["relu"] * (n // 2) + ["hswish"] * (n - n // 2)
            given = [k for k in ("stage_depths", "stage_expands", "stage_kernels")
                     if getattr(self, k) is not None]
            one_per_stage(self, ("strides", "se_stages", "activations", *given), n,
                          f"{n} stages")
            levels = len(skip_plan(self.stem_stride, self.strides)[0])
            if isinstance(self.decoder_conv, list) and len(self.decoder_conv) != levels:
                raise ValueError(f"decoder_conv needs one entry per decoder level ({levels} "
                                 f"for stem stride {self.stem_stride} and strides "
                                 f"{self.strides}), got {self.decoder_conv}")
            return self

        def stage_widths(self) -> list[list[int]]:
            """The width choices of every stage, ascending."""
            if self.widths is not None:
                return [list(ws) for ws in self.widths]
            return [[w + d for d in self.width_offsets] for w in self.stages]

        def stage_sets(self, name: str) -> list[list[Any]]:
            """The choices of ``depths`` / ``expands`` / ``kernels`` of every stage."""
            per_stage = getattr(self, f"stage_{name}")
            n = len(self.stage_widths())
            return ([list(v) for v in per_stage] if per_stage is not None
                    else [list(getattr(self, name))] * n)

    def __init__(self, **options: Any) -> None:
        opts = options_of(self.Options, options, what=f"search space {self.name!r}")
        self.options = opts
        self.widths = opts.stage_widths()
        self.strides: list[int] = list(opts.strides or [])
        self.skips, self.skip_strides = skip_plan(opts.stem_stride, self.strides)
        conv = opts.decoder_conv
        self.decoder_convs: list[str] = (list(conv) if isinstance(conv, list)
                                         else [conv] * len(self.skips))
        n = len(self.widths)
        self.stage_depths, self.stage_expands, self.stage_kernels = (
            opts.stage_sets(k) for k in ("depths", "expands", "kernels"))
        per = max(max(d) for d in self.stage_depths) if opts.per_block else 1
        dims = [Categorical(f"width_{i}", ws, ordinal=True) for i, ws in enumerate(self.widths)]

        def stage_list(name: str, default: list[Any], sets: list[list[Any]],
                       count: int) -> StageList:
            if all(v == list(default) for v in sets):  # today's global list
                return StageList(name, default, count)
            return StageList(name, default, count,
                             stage_choices=[v for v in sets for _ in range(count // n)])

        dims += [stage_list("depth", opts.depths, self.stage_depths, n),
                 stage_list("expand", opts.expands, self.stage_expands, n * per),
                 stage_list("kernel", opts.kernels, self.stage_kernels, n * per)]
        if opts.stem_widths:
            dims.append(Categorical("stem_width", opts.stem_widths, ordinal=True))
        if opts.resolutions:
            dims.append(Categorical("resolution", opts.resolutions, ordinal=True))
        super().__init__(dims, name="salnas")

    def build_supernet(self, in_channels: int) -> SalNASSupernet:
        o = self.options
        return SalNASSupernet(
            in_channels, o.stem_channels, o.stem_stride, self.widths, self.strides,
            list(o.se_stages or []), list(o.activations or []), o.depths, o.expands,
            o.kernels, o.per_block, self.decoder_convs, o.decoder_activation, o.out_channels,
            o.dynamic_kernels, stage_depths=self.stage_depths, stage_expands=self.stage_expands,
            stage_kernels=self.stage_kernels, stem_widths=o.stem_widths,
            stem_activation=o.stem_activation, resolutions=o.resolutions, dropout=o.dropout,
            drop_connect=o.drop_connect, drop_connect_stages=o.drop_connect_stages)

    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> nn.Module:
        """A stand-alone plain body for ``arch`` (extracted from a fresh supernet)."""
        return super().build(self.validate(arch), in_channels)

    def render(self, arch: Architecture) -> str:
        """``w24-32-48-64 d3-3-3-3 e6-6-6-6 k5-5-5-5`` (per block: stages split by ``|``)."""
        n = len(self.widths)

        def join(values: Sequence[Any]) -> str:
            text = [f"{v:g}" if isinstance(v, float) else str(v) for v in values]
            if len(values) == n:
                return "-".join(text)
            per = len(values) // n
            return "|".join("-".join(text[s * per:(s + 1) * per]) for s in range(n))

        widths = [arch[f"width_{i}"] for i in range(n)]
        text = (f"w{join(widths)} d{join(arch['depth'])} e{join(arch['expand'])} "
                f"k{join(arch['kernel'])}")
        if "stem_width" in arch:
            text = f"s{arch['stem_width']} {text}"
        if "resolution" in arch:
            text += f" r{arch['resolution']}"
        return text

    def distinct_networks(self) -> int:
        """How many different networks the space holds: :meth:`size` except that with
        ``per_block`` the values of blocks beyond a stage's depth do not count."""
        o = self.options
        if not o.per_block:
            return self.size()
        stages = [len(ws) * sum((len(es) * len(ks)) ** d for d in ds) for ws, ds, es, ks in
                  zip(self.widths, self.stage_depths, self.stage_expands, self.stage_kernels,
                      strict=True)]
        return (math.prod(stages) * len(o.stem_widths or [0])
                * len(o.resolutions or [0]))

    def largest_params(self, in_channels: int = 3) -> int:
        """Parameters of the extracted largest body (no task head)."""
        from nastk.evaluation.cost import count_params

        return count_params(self.build_supernet(in_channels).extract(self.largest()))

    def summary(self, input_shape: Sequence[int] = (3, 64, 64)) -> dict[str, Any]:
        """Space size and the params / FLOPs (``nastk.evaluation.cost``, fvcore: one multiply-add =
        one flop) of the extracted smallest and largest bodies for inputs of ``input_shape``
        (``(C, H, W)``); bodies only, no task head."""
        from nastk.evaluation.cost import count_flops, count_params

        supernet = self.build_supernet(int(input_shape[0]))
        supernet.eval()
        out: dict[str, Any] = {"size": self.size(), "distinct": self.distinct_networks(),
                               "input_shape": list(input_shape)}
        for kind, arch in (("smallest", self.smallest()), ("largest", self.largest())):
            net = supernet.extract(arch)
            out[kind] = {"arch": arch.as_dict(), "params": count_params(net),
                         "flops": count_flops(net, input_shape)}
        return out
