"""Input normalisation: the per-channel mean and std a network's inputs are standardised with,
the ``normalize:`` option of the built-in image tasks, and the layer that applies it.

Images reach a network in ``[0, 1]`` (every loader's convention). The task's model subtracts the
mean and divides by the std as its first layer (:class:`InputNormalization`), so every path
that runs the model applies the same: training, evaluation, the report's drawings, ``nastk
export`` (``model.pt`` rebuilds it; the ``torch.export`` program contains it) and a user's
own code calling the exported model on ``[0, 1]`` images. The layer holds no parameter and
no state-dict entry: checkpoints are the same with or without it. ``nastk export`` records the
mean and std beside the architecture.

Option values: ``default`` (``none`` for generated data, ``imagenet`` for a real data set),
``imagenet`` (mean 0.485, 0.456, 0.406; std 0.229, 0.224, 0.225: what ImageNet-pretrained
bodies expect), ``none``, or ``{mean: [...], std: [...]}`` (one value, or one per channel).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

__all__ = ["IMAGENET", "InputNormalization", "Normalization", "NormalizeOption",
           "normalization_layer", "normalize_field", "resolve_normalize"]


class Normalization(BaseModel):
    """A per-channel ``mean`` and ``std`` (of inputs in ``[0, 1]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: tuple[float, ...] = Field(min_length=1)
    std: tuple[float, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Normalization:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean has {len(self.mean)} values and std "
                             f"{len(self.std)}; give one per channel (or one for all)")
        if not all(math.isfinite(m) for m in self.mean):
            raise ValueError(f"normalize.mean must be finite numbers, got {list(self.mean)}")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise ValueError(f"normalize.std must be positive numbers, got {list(self.std)}")
        return self


#: ImageNet's channel statistics, as ImageNet-pretrained bodies expect them
IMAGENET = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

#: a task's ``normalize:`` option
NormalizeOption = Literal["default", "imagenet", "none"] | Normalization


def normalize_field() -> Any:
    """The ``normalize`` field of a task's options."""
    return Field("default", description="input normalisation: default (none for generated "
                 "data, imagenet for a real data set), imagenet, none, or {mean, std}")


def resolve_normalize(option: NormalizeOption, real_data: bool) -> Normalization | None:
    """The normalisation a task's model applies to a real data set (``real_data``) or to
    generated data (``None``: inputs are left in ``[0, 1]``)."""
    if option == "none" or (option == "default" and not real_data):
        return None
    if option in ("imagenet", "default"):
        return IMAGENET
    assert isinstance(option, Normalization)
    return option


class InputNormalization(nn.Module):
    """``(x - mean) / std`` per channel of ``[B, C, H, W]`` inputs (no parameters; its buffers
    are not saved in state dicts)."""

    def __init__(self, normalization: Normalization, channels: int = 3) -> None:
        super().__init__()
        n = len(normalization.mean)
        if n not in (1, channels):
            raise ValueError(f"normalize: {n} mean/std values for inputs of {channels} "
                             f"channels; give {channels} (one per channel) or 1")
        self.normalization = normalization
        shape = (1, -1, 1, 1)
        self.register_buffer("mean", torch.tensor(normalization.mean).reshape(shape),
                             persistent=False)
        self.register_buffer("std", torch.tensor(normalization.std).reshape(shape),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def extra_repr(self) -> str:
        return f"mean={list(self.normalization.mean)}, std={list(self.normalization.std)}"


def normalization_layer(normalization: Normalization | None, channels: int = 3
                        ) -> InputNormalization | None:
    """The layer for ``normalization``, ``None`` when there is none."""
    return None if normalization is None else InputNormalization(normalization, channels)
