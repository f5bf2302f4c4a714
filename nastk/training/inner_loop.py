"""nas-segm's inner-loop devices, as options of the train evaluator (``evaluator.train``).

nas-segm (Nekrasov et al., ``engine/trainer.py`` and ``main_search.py``) trains every sampled
candidate in two stages: first the decoder alone on encoder outputs computed once and cached
(``task0``), then the whole network end to end (``task1``); in both it keeps a Polyak average of
the weights, copied back into the model at every epoch's end, and adds an auxiliary loss on
intermediate decoder outputs. Here:

- :class:`PolyakAverage`: ``avg <- decay * avg + (1 - decay) * p`` after every optimizer step,
  ``avg`` starting at the weights it was made with; :meth:`PolyakAverage.copy_to` writes it back.
  Parameters only (batch-norm statistics are not averaged), as in nas-segm.
- :class:`AuxiliaryLoss`: a 3x3 classifier (with bias) on each of the body's auxiliary outputs,
  bilinearly upsampled to the input's size, scored by the task's loss and weighted by
  ``weight``: ``weight * sum_i loss(up(clf_i(aux_i)), y)``. The body exposes ``aux_channels``
  (one entry per auxiliary output) and, after a forward with ``record_aux`` set,
  ``aux_outputs``.
- :func:`train_decoder_stage`: the decoder-only stage. The body exposes ``encoder`` and
  ``decoder`` modules; the encoder runs once per training batch (eval mode, no gradient), its
  outputs are cached with the batch, and then ``epochs`` passes over the cached batches train
  every parameter outside the encoder, the encoder replaced by a replay of its cached outputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader

from nastk.core.errors import ConfigError
from nastk.data.loaders import split_batch, to_device
from nastk.task.losses import RecentLosses, combine_loss
from nastk.training.step import finite_loss

__all__ = ["AuxiliaryLoss", "DecoderStageConfig", "PolyakAverage", "body_of",
           "train_decoder_stage"]


class DecoderStageConfig(BaseModel):
    """The decoder-only first stage (``evaluator.train.decoder_stage``)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(5, ge=1, description="passes over the cached encoder outputs")
    samples: int | None = Field(None, ge=1,
                                description="cache the encoder outputs of at least this many "
                                            "training samples (whole batches; default: one "
                                            "pass over the training split; nas-segm: 4000 on "
                                            "VOC, 1000 on Cityscapes)")
    lr: float | None = Field(None, gt=0.0, description="learning rate of this stage (constant; "
                                                       "default: the training's lr)")
    polyak: float | None = Field(0.9, gt=0.0, lt=1.0,
                                 description="Polyak averaging decay of the decoder's weights "
                                             "in this stage (nas-segm: 0.9); null: none")


def body_of(model: nn.Module) -> nn.Module:
    """The searched body inside a task's model (its ``body``), or the model itself."""
    body = getattr(model, "body", None)
    return body if isinstance(body, nn.Module) else model


class PolyakAverage:
    """A running average ``avg <- decay * avg + (1 - decay) * p`` of ``params``."""

    def __init__(self, params: Iterable[nn.Parameter], decay: float) -> None:
        self.params = [p for p in params if p.requires_grad]
        self.decay = float(decay)
        self.avg = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current weights into the average (after an optimizer step)."""
        for a, p in zip(self.avg, self.params, strict=True):
            a.mul_(self.decay).add_(p.detach(), alpha=1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self) -> None:
        """Write the average into the parameters."""
        for a, p in zip(self.avg, self.params, strict=True):
            p.copy_(a)


class AuxiliaryLoss(nn.Module):
    """``weight * sum_i task.loss(upsample(clf_i(aux_i)), targets)`` over the body's auxiliary
    outputs; ``clf_i`` a 3x3 conv with bias to ``num_classes`` channels."""

    def __init__(self, body: nn.Module, num_classes: int, weight: float) -> None:
        super().__init__()
        channels = getattr(body, "aux_channels", None)
        if channels is None or not hasattr(body, "record_aux"):
            raise ConfigError(
                f"aux_loss needs a body with auxiliary outputs (aux_channels, record_aux, "
                f"aux_outputs: nas_segm's); {type(body).__name__} has none")
        self.body = [body]  # not a submodule: its parameters are the model's
        self.weight = float(weight)
        self.classifiers = nn.ModuleList(nn.Conv2d(int(c), int(num_classes), 3, padding=1)
                                         for c in channels)
        body.record_aux = True

    @classmethod
    def for_task(cls, task: Any, body: nn.Module, weight: float) -> AuxiliaryLoss:
        """The auxiliary loss of ``body`` for ``task``'s classes (its ``num_classes``)."""
        num_classes = getattr(task, "num_classes", None)
        if num_classes is None:
            raise ConfigError(f"aux_loss needs a task with classes (num_classes); task "
                              f"{getattr(task, 'name', task)!r} has none")
        return cls(body, int(num_classes), weight)

    def forward(self, task: Any, size: Sequence[int], targets: Any) -> torch.Tensor:
        outs = self.body[0].aux_outputs
        total = torch.zeros((), device=outs[0].device if outs else None)
        for clf, aux in zip(self.classifiers, outs, strict=True):
            logits = F.interpolate(clf(aux), size=tuple(size), mode="bilinear",
                                   align_corners=False)
            total = total + combine_loss(task.loss(logits, targets))[0]
        return self.weight * total

    def add(self, task: Any, loss: torch.Tensor, terms: dict[str, torch.Tensor],
            size: Sequence[int], targets: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``loss`` plus the auxiliary loss, and the named terms with ``aux`` among them
        (a plain loss becomes the term ``task``)."""
        aux = self(task, size, targets)
        terms = dict(terms) if terms else {"task": loss}
        terms["aux"] = aux
        return loss + aux, terms

    def detach_body(self) -> None:
        """Stop recording auxiliary outputs."""
        self.body[0].record_aux = False
        self.body[0].aux_outputs = []


class _Replay(nn.Module):
    """Stands in for the encoder: returns the outputs it is given, whatever its input."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: Any = None

    def forward(self, x: torch.Tensor) -> Any:
        return self.outputs


class _Captured(Exception):
    pass


def _cache_encoder(model: nn.Module, body: nn.Module, loader: DataLoader,
                   device: torch.device, samples: int | None) -> list[tuple[Any, Any, Any]]:
    """``(inputs, encoder outputs, targets)`` per training batch: the model runs up to its
    encoder (eval mode, no gradient), which is then cut short."""
    captured: list[Any] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(output)
        raise _Captured

    cache: list[tuple[Any, Any, Any]] = []
    handle = body.encoder.register_forward_hook(hook)
    was_training = model.training
    model.eval()
    n = 0
    try:
        with torch.no_grad():
            for batch in loader:
                xb, yb = split_batch(batch)
                xb, yb = xb.to(device), to_device(yb, device)
                try:
                    model(xb)
                except _Captured:
                    pass
                feats = captured.pop()
                feats = ([f.detach() for f in feats] if isinstance(feats, (list, tuple))
                         else feats.detach())
                cache.append((xb, feats, yb))
                n += xb.shape[0]
                if samples is not None and n >= samples:
                    break
    finally:
        handle.remove()
        model.train(was_training)
    return cache


def train_decoder_stage(model: nn.Module, config: DecoderStageConfig, loader: DataLoader,
                        device: torch.device, generator: torch.Generator, lr: float,
                        task: Any, loss_of: Any, make_optimizer: Any, grad_clip: float | None,
                        aux: AuxiliaryLoss | None = None) -> tuple[RecentLosses, int]:
    """Train ``model``'s parameters outside ``body.encoder`` for ``config.epochs`` passes over
    cached encoder outputs; returns the recent losses and the steps run. ``loss_of(out, yb,
    xb)`` is the loss value (a tensor or named terms), ``task`` scores the auxiliary outputs;
    ``make_optimizer(params, lr)`` gives the optimiser. Raises :class:`ConfigError` for a body
    without ``encoder`` and ``decoder`` and :class:`~nastk.training.step.Diverged` when the
    loss is not finite."""
    body = body_of(model)
    if not (isinstance(getattr(body, "encoder", None), nn.Module)
            and isinstance(getattr(body, "decoder", None), nn.Module)):
        raise ConfigError(f"decoder_stage needs a body split into an encoder and a decoder "
                          f"(modules body.encoder and body.decoder, as nas_segm's); "
                          f"{type(body).__name__} has none")
    cache = _cache_encoder(model, body, loader, device, config.samples)
    if not cache:
        raise ValueError("the training split is empty")
    encoder = body.encoder
    frozen = {id(p) for p in encoder.parameters()}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in frozen]
    if aux is not None:
        params += list(aux.parameters())
    optimizer = make_optimizer(params, config.lr if config.lr is not None else lr)
    polyak = (PolyakAverage([p for p in model.parameters() if id(p) not in frozen],
                            config.polyak) if config.polyak is not None else None)
    replay = _Replay()
    body.encoder = replay
    recent = RecentLosses(len(cache))
    step = 0
    model.train()
    try:
        for _ in range(config.epochs):
            for i in torch.randperm(len(cache), generator=generator).tolist():
                xb, feats, yb = cache[i]
                replay.outputs = feats
                out = model(xb)
                loss, terms = combine_loss(loss_of(out, yb, xb))
                if aux is not None:
                    loss, terms = aux.add(task, loss, terms, xb.shape[-2:], yb)
                value = finite_loss(loss, f"decoder stage step {step + 1}", terms=terms)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip is not None:
                    nn.utils.clip_grad_norm_(params, grad_clip)
                optimizer.step()
                if polyak is not None:
                    polyak.update()
                recent.add(value, terms)
                step += 1
            if polyak is not None:
                polyak.copy_to()
    finally:
        body.encoder = encoder
    return recent, step
