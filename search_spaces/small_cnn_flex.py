"""small_cnn with a searched depth and per-layer choices, plus the learning rate and weight decay.

A conditional and continuous space (issue 33, item 4): ``depth`` inverted-residual blocks after
the stem (1 to ``max_depth``); block ``i`` (1-based) has its own ``width_i``, ``kernel_i`` and
``expand_i``, which exist only when ``depth >= i`` (block 1's always). ``lr`` and
``weight_decay`` (real numbers on a log scale) are *hyperparameter dimensions*
(:attr:`~nastk.space.search_space.SearchSpace.hyperparameters`): the network ignores them and
the train evaluator trains each candidate with them. ``hyperparameters: false`` leaves them out
(an architecture-only space, trained with ``evaluator.train``'s settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, model_validator

from nastk.core.options import options_of
from nastk.search_spaces.small_cnn import BlockChoices, SmallCNNBody
from nastk.space.architecture import Architecture
from nastk.space.conditions import when
from nastk.space.continuous import Float
from nastk.space.dimensions import Categorical, Dimension, IntRange
from nastk.space.search_space import SearchSpace
from nastk.space.validators import StageInts, one_per_stage

__all__ = ["SmallCNNFlexSpace"]


def _log_range(value: tuple[float, float], name: str) -> tuple[float, float]:
    low, high = value
    if not 0.0 < low < high:
        raise ValueError(f"{name} needs 0 < low < high, got {list(value)}")
    return value


class SmallCNNFlexSpace(SearchSpace):
    """Stem, then ``depth`` inverted-residual blocks (small_cnn's
    :class:`~nastk.search_spaces.small_cnn.InvertedResidual` in a
    :class:`~nastk.search_spaces.small_cnn.SmallCNNBody` of one block per stage), each with its
    own width, kernel and expansion, active only below the depth; and, unless
    ``hyperparameters`` is false, ``lr`` and ``weight_decay`` as training settings.

    Dimensions, in order: ``depth``; ``width_i``, ``kernel_i``, ``expand_i`` for ``i`` in
    1..max_depth (conditional on ``depth >= i`` for ``i >= 2``); ``lr``, ``weight_decay``.
    :meth:`build` returns the network body; a task adds its head.
    """

    name = "small_cnn_flex"

    class Options(BlockChoices):
        """Options of :class:`SmallCNNFlexSpace` (``space.options`` in a config)."""

        max_depth: int = Field(4, ge=1, le=8, description="most blocks after the stem; the "
                               "depth is searched in 1..max_depth")
        strides: StageInts | None = Field(
            None, description="stride of each block (max_depth values); default [1, 2, 2, 1, "
            "1, ...]: a deeper network also downsamples more, up to 4x")
        hyperparameters: bool = Field(
            True, description="search the learning rate and weight decay with the network "
            "(false: the architecture alone, trained with evaluator.train's settings)")
        lr: tuple[float, float] = Field((1e-4, 3e-2), description="range of the learning "
                                        "rate, searched on a log scale")
        weight_decay: tuple[float, float] = Field(
            (1e-6, 1e-2), description="range of the weight decay, searched on a log scale")

        @model_validator(mode="after")
        def _check(self) -> SmallCNNFlexSpace.Options:
            if self.strides is None:
                self.strides = ([1, 2, 2] + [1] * self.max_depth)[:self.max_depth]
            one_per_stage(self, ["strides"], self.max_depth, f"max_depth {self.max_depth}")
            _log_range(self.lr, "lr")
            _log_range(self.weight_decay, "weight_decay")
            return self

    def __init__(self, **options: Any) -> None:
        self.options = opts = options_of(self.Options, options,
                                         what=f"search space {self.name!r}")
        self.max_depth, self.stem_width, self.activation = (opts.max_depth, opts.stem_width,
                                                            opts.activation)
        self.strides: list[int] = list(opts.strides or [])
        dims: list[Dimension] = [IntRange("depth", 1, opts.max_depth)]
        for i in range(1, opts.max_depth + 1):
            layer = [Categorical(f"width_{i}", opts.widths, ordinal=True),
                     Categorical(f"kernel_{i}", opts.kernels, ordinal=True),
                     Categorical(f"expand_{i}", opts.expansions, ordinal=True)]
            if i > 1:  # block i exists only in a network at least i blocks deep
                layer = [d.only_if(when("depth", ">=", i)) for d in layer]
            dims += layer
        #: the dimensions that are training settings, not parts of the network
        self.hyperparameters: tuple[str, ...] = ()
        if opts.hyperparameters:
            dims += [Float("lr", *opts.lr, log=True),
                     Float("weight_decay", *opts.weight_decay, log=True)]
            self.hyperparameters = ("lr", "weight_decay")
        super().__init__(dims, name=self.name)

    def blocks(self, arch: Architecture | Mapping[str, Any]) -> list[tuple[int, int, int]]:
        """``(width, kernel, expand)`` of each block of ``arch`` (validated first)."""
        arch = self.validate(arch)
        return [(arch[f"width_{i}"], arch[f"kernel_{i}"], arch[f"expand_{i}"])
                for i in range(1, arch["depth"] + 1)]

    def build(self, arch: Architecture | Mapping[str, Any], in_channels: int) -> SmallCNNBody:
        """The body for ``arch``: stem, then one block per stage (its stride from
        ``strides``); the hyperparameter dimensions play no part."""
        blocks = self.blocks(arch)
        n = len(blocks)
        return SmallCNNBody(in_channels, self.stem_width, [1] * n, [b[0] for b in blocks],
                            [b[1] for b in blocks], [b[2] for b in blocks], self.strides[:n],
                            self.activation)

    def render(self, arch: Architecture) -> str | None:
        text = " ".join(f"{w}k{k}e{e}" for w, k, e in self.blocks(arch))
        if "lr" in arch:
            text += f" lr={arch['lr']:.3g} wd={arch['weight_decay']:.3g}"
        return f"d{arch['depth']}: {text}"
