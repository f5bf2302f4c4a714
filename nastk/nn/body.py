"""The staged-body contract: a network body that hands dense heads its multi-scale features.

A body built by a search space (or a supernet body) has ``out_channels`` and ``forward(x)``.
A *staged* body also declares, per stage, the channels and the stride (input size / feature
size) of its output, and returns those outputs from ``forward_features(x)``, finest first.
Dense heads (segmentation, saliency, detection) read them through one
:class:`~nastk.nn.neck.FeaturePyramidNeck`; nothing looks for them by ``getattr``.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["FeatureInfo", "StagedBody", "StemStagesBody", "feature_info", "is_staged",
           "out_channels_of", "require_staged"]


@dataclass(frozen=True)
class FeatureInfo:
    """One scale a staged body returns: its channels and its stride."""

    channels: int
    stride: int


class StagedBody(nn.Module, ABC):
    """Base class of bodies with multi-scale features (see the module docstring).

    Subclasses set ``out_channels``, ``feature_channels`` and ``feature_strides`` (one entry per
    returned scale, strides non-decreasing) in ``__init__`` and implement
    :meth:`forward_features`.
    """

    out_channels: int
    feature_channels: list[int]
    feature_strides: list[int]
    #: whether ``forward`` resizes its input first (an architecture's input resolution): the
    #: strides then hold for the resized input, and a head that assumes the task's input size
    #: (anchors, a fixed output grid) must refuse such a body
    resizes_input: bool = False

    @abstractmethod
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, finest first; the i-th has ``feature_channels[i]`` channels
        at ``1 / feature_strides[i]`` of the input's resolution."""

    def feature_info(self) -> list[FeatureInfo]:
        """The scales :meth:`forward_features` returns."""
        return feature_info(self)


def is_staged(body: nn.Module) -> bool:
    """Whether ``body`` implements the staged-body contract."""
    return isinstance(body, StagedBody)


def feature_info(body: nn.Module) -> list[FeatureInfo]:
    """The declared scales of a staged body, checked for consistency."""
    body = require_staged(body)
    channels, strides = list(body.feature_channels), list(body.feature_strides)
    if not channels or len(channels) != len(strides):
        raise TypeError(f"{type(body).__name__}: feature_channels {channels} and "
                        f"feature_strides {strides} must be non-empty and of equal length")
    if any(b < a for a, b in itertools.pairwise(strides)):
        raise TypeError(f"{type(body).__name__}: feature_strides {strides} must not decrease "
                        "(finest scale first)")
    return [FeatureInfo(int(c), int(s)) for c, s in zip(channels, strides, strict=True)]


def out_channels_of(body: nn.Module) -> int:
    """The channels of ``body``'s output (its ``out_channels``), or a ``TypeError`` saying
    that a body a task wraps needs them."""
    channels = getattr(body, "out_channels", None)
    if not isinstance(channels, int) or channels < 1:
        raise TypeError(f"the body built by the search space ({type(body).__name__}) needs "
                        f"an int `out_channels` attribute, got {channels!r}")
    return channels


def require_staged(body: nn.Module, who: str = "this head") -> StagedBody:
    """``body`` as a :class:`StagedBody`, or a ``TypeError`` that says what is missing."""
    if not isinstance(body, StagedBody):
        raise TypeError(f"{who} needs a staged body (nastk.nn.body.StagedBody: forward_features, "
                        f"feature_channels, feature_strides); {type(body).__name__} is not one")
    return body


class StemStagesBody(StagedBody):
    """A staged body made of a ``stem``, a ``nn.ModuleList`` of ``stages`` (each stage's output
    is one feature scale) and an optional ``final`` module applied to the last stage's output
    by ``forward`` (``nn.Identity`` unless a subclass sets one). Subclasses set those three and
    the declared channels and strides."""

    stem: nn.Module
    stages: nn.ModuleList
    final: nn.Module

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output, first stage first."""
        x = self.stem(x)
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.final(x)
