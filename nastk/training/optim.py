"""The optimiser of every training loop in nastk (a candidate's, a supernet's): its parameter
groups, split by learning-rate multiplier and, where asked, into weight-decayed and not-decayed
parameters, and the optimiser over them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import nn

from nastk.training.pretrained import lr_groups

__all__ = ["OptimizerKind", "make_optimizer", "param_groups"]

OptimizerKind = Literal["sgd", "adam", "adamw"]


def _no_decay(name: str, p: nn.Parameter) -> bool:
    """Batch-norm weights, biases (every tensor of at most one dimension) and the kernel
    transforms of elastic convolutions are not weight-decayed."""
    return p.dim() <= 1 or "transforms" in name


def param_groups(model: nn.Module, weight_decay: float, lr_mult: Mapping[str, float] | None,
                 *, split_no_decay: bool) -> list[dict[str, Any]]:
    """The trainable parameters of ``model`` in groups, in a fixed order: one per ``lr_mult``
    part (:func:`~nastk.training.pretrained.lr_groups`; a single part without multipliers),
    each carrying its ``lr_mult`` and ``weight_decay``. With ``split_no_decay`` every part is
    split further into its decayed parameters and, with ``weight_decay`` 0, its batch-norm
    weights, biases and kernel transforms (both groups kept, even when empty)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if lr_mult:
        names = {id(p): n for n, p in named}
        parts = [(mult, [(names[id(p)], p) for p in ps]) for mult, ps in lr_groups(named,
                                                                                    lr_mult)]
    else:
        parts = [(1.0, named)]
    groups: list[dict[str, Any]] = []
    for mult, members in parts:
        if not split_no_decay:
            groups.append({"params": [p for _, p in members], "weight_decay": weight_decay,
                           "lr_mult": mult})
            continue
        decay = [p for n, p in members if not _no_decay(n, p)]
        no_decay = [p for n, p in members if _no_decay(n, p)]
        groups += [{"params": decay, "weight_decay": weight_decay, "lr_mult": mult},
                   {"params": no_decay, "weight_decay": 0.0, "lr_mult": mult}]
    return groups


def make_optimizer(groups: list[dict[str, Any]], kind: OptimizerKind, *, lr: float,
                   momentum: float = 0.0, nesterov: bool = False,
                   foreach: bool | None = None) -> torch.optim.Optimizer:
    """The ``kind`` optimiser over ``groups`` (:func:`param_groups`: each group brings its own
    weight decay), every group starting at ``lr`` times its ``lr_mult``. SGD takes
    ``momentum``, and ``nesterov`` where the momentum is not 0. ``foreach`` is torch's
    multi-tensor switch (``None``: torch's choice for the device)."""
    if kind == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
            foreach=foreach)
    elif kind == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=lr, foreach=foreach)
    else:
        optimizer = torch.optim.Adam(groups, lr=lr, foreach=foreach)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
    return optimizer
