"""Public weight layouts: how a checkpoint saved in another project's tensor names (once-for-all's
``OFAMobileNetV3``, torchvision's ResNets and MobileNetV2) maps onto a nastk model's names.

A :class:`KeyTable` is an ordered list of :class:`Rule`\\ s, one per family of tensors: a regular
expression matched against the whole public key and the nastk name it becomes (``re`` replacement
syntax, ``\\1`` or ``\\g<name>``), with an optional transform of the tensor (a transposed kernel
matrix, a reshaped 1x1 conv). The first rule that matches a key wins. Names are those of a task's
model (``body.*`` for the body, the head's own names), or of the space's supernet model when
``supernet`` is set: then a candidate's plain network is extracted from the converted supernet,
exactly as from a nastk supernet checkpoint.

A search space says which public layouts it reads through
:meth:`nastk.space.search_space.SearchSpace.public_layout`; ``init: {from: FILE, format: ofa}``
(:mod:`nastk.training.pretrained`) converts the file with the table, then loads it like any
other file, except that a tensor whose shape differs from the model's stops the load, naming the
public tensor, its shape and the shape expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

__all__ = ["Converted", "KeyTable", "Rule", "conv_to_linear", "transpose"]

Transform = Callable[[torch.Tensor], torch.Tensor]


def transpose(t: torch.Tensor) -> torch.Tensor:
    """A matrix transposed (once-for-all stores its kernel-transform matrices for ``F.linear``,
    nastk multiplies on the right)."""
    return t.t().contiguous()


def conv_to_linear(t: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv weight ``(out, in, 1, 1)`` as a linear layer's ``(out, in)``."""
    return t.reshape(t.shape[0], -1).contiguous()


@dataclass(frozen=True)
class Rule:
    """Public keys matching ``public`` (a regex, matched whole) become ``ours`` (a replacement
    template), their tensors passed through ``transform`` when given."""

    public: str
    ours: str
    transform: Transform | None = None

    def __post_init__(self) -> None:
        re.compile(self.public)  # a bad pattern fails where the table is written


@dataclass
class Converted:
    """A public state dict in nastk's names: ``state`` (nastk name -> tensor), ``origin`` (nastk
    name -> the public key it came from), ``skipped`` (public keys a table leaves out on purpose,
    e.g. a classifier a body-only layout has no place for) and ``unmatched`` (public keys no rule
    matched: not of this layout)."""

    state: dict[str, torch.Tensor] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class KeyTable:
    """The key mapping of one public model (see the module docstring).

    ``format`` is the ``init.format`` it serves (``ofa``, ``torchvision``); ``model`` names the
    public model (``torchvision resnet50``); ``skip`` lists regexes of public keys that are known
    and deliberately not loaded."""

    format: str
    model: str
    rules: tuple[Rule, ...]
    skip: tuple[str, ...] = ()
    supernet: bool = False

    def rename(self, key: str) -> tuple[str, Transform | None] | None:
        """The nastk name (and transform) of public ``key``, or ``None`` when no rule matches."""
        for rule in self.rules:
            m = re.fullmatch(rule.public, key)
            if m is not None:
                return m.expand(rule.ours), rule.transform
        return None

    def convert(self, state: Mapping[str, torch.Tensor]) -> Converted:
        """``state`` (public names) in nastk's names; two public keys mapping to one nastk name
        is an error of the table (``ValueError``)."""
        out = Converted()
        for key, tensor in state.items():
            if any(re.fullmatch(p, key) for p in self.skip):
                out.skipped.append(key)
                continue
            renamed = self.rename(key)
            if renamed is None:
                out.unmatched.append(key)
                continue
            ours, transform = renamed
            if ours in out.state:
                raise ValueError(f"{self.model}: {key!r} and {out.origin[ours]!r} both map to "
                                 f"{ours!r}")
            out.state[ours] = transform(tensor) if transform is not None else tensor
            out.origin[ours] = key
        return out
