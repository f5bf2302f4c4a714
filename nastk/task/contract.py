"""The task interface: data, the model around a search space's body, loss, post-processing and
metrics.

The contract every task is served by, old and new:

- **samples** are ``(input tensor, targets)``; targets may be any nested structure of tensors,
  numbers, lists and dicts (a label, a mask, per-image ``{"boxes", "labels"}`` dicts...);
  :meth:`Task.collate` batches them (torch's default collate unless overridden) and the engine
  builds every loader through :func:`nastk.data.loaders.make_loader`;
- :meth:`Task.loss` returns a scalar tensor or a mapping of named scalar terms (their sum is
  optimised; each term's last-epoch mean is recorded as ``train_loss_<term>``);
- :meth:`Task.postprocess` turns the network's raw outputs into predictions (decoding boxes,
  non-maximum suppression...) in evaluation only; costs (params, FLOPs, latency) are measured
  on the network alone;
- :meth:`Task.evaluate` scores a model on a loader; by default it runs the engine's loop —
  eval mode, no gradient, batches moved to the model's device, ``postprocess`` — and feeds a
  :class:`Meter` from :meth:`Task.meter`. Tasks that need their own loop override it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, Dataset

    from nastk.data.loading import Loading
    from nastk.space.architecture import Architecture
    from nastk.space.search_space import SearchSpace
    from nastk.task.losses import LossValue


class Meter(Protocol):
    """Accumulates a task's metrics over the batches of a split."""

    def update(self, outputs: Any, predictions: Any, targets: Any) -> None:
        """Add one batch: the network's raw ``outputs``, the task's ``predictions``
        (``postprocess(outputs)``) and the batch's ``targets``."""

    def compute(self) -> dict[str, float]:
        """The metrics over every batch added."""


class Task(ABC):
    """A learning problem a search can optimise for.

    A task owns its data (a synthetic default that ships plus loaders for real formats), wraps a
    search space's network body with its head, and scores models. ``primary_metric`` and
    ``direction`` define what "better" means unless a config says otherwise.
    """

    name: ClassVar[str] = "task"
    primary_metric: ClassVar[str]
    direction: ClassVar[Literal["max", "min"]] = "max"
    #: every metric :meth:`evaluate` returns (the primary one included); a config's
    #: ``objective.metric`` is checked against them (and ``train_loss``) before a run starts.
    #: Empty: not declared, nothing is checked up front.
    metrics: ClassVar[tuple[str, ...]] = ()
    #: how the engine's loaders read this task's data (worker processes, prefetching): set
    #: from a run config's ``data:``; ``None`` means its defaults
    loading: Loading | None = None

    def metric_names(self) -> list[str]:
        """The metrics :meth:`evaluate` returns, plus ``train_loss`` (empty when the task
        declares none); override when they depend on the options (e.g. per-class scores)."""
        if not self.metrics:
            return []
        return list(dict.fromkeys([self.primary_metric, *self.metrics, "train_loss"]))

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input example (C, H, W), used to build models and measure costs."""

    @abstractmethod
    def splits(self) -> dict[str, Dataset]:
        """Datasets by split name; must contain ``train`` and ``val`` (``test`` optional).
        Each sample is ``(input tensor, targets)``."""

    def collate(self, samples: list[Any]) -> Any:
        """A batch from a list of samples; default: torch's ``default_collate`` (stacks tensors,
        recursing into tuples, lists and dicts). Override for targets that do not stack, e.g.
        return ``(torch.stack(images), [target, ...])`` for per-image box lists."""
        from torch.utils.data import default_collate

        return default_collate(samples)

    collate.is_default = True  # type: ignore[attr-defined]  # loaders may gather batches

    @abstractmethod
    def wrap(self, body: nn.Module) -> nn.Module:
        """This task's network around a body (a module with ``out_channels``, as built by a
        search space or a supernet; dense tasks use a :class:`nastk.nn.body.StagedBody`'s
        multi-scale features through :class:`nastk.nn.neck.FeaturePyramidNeck`); the result
        exposes the body as its ``body`` attribute."""

    def build_model(self, space: SearchSpace, arch: Architecture) -> nn.Module:
        """The full network for ``arch``: the space's body plus this task's head."""
        return self.wrap(space.build(arch, self.input_shape[0]))

    @abstractmethod
    def loss(self, outputs: Any, targets: Any) -> LossValue:
        """Training loss of a batch: a scalar tensor, or ``{term: scalar tensor}`` whose sum is
        optimised."""

    def blend_targets(self, targets: Any, teacher_outputs: Any, alpha: float) -> Any:
        """Self-KD's training target: ``alpha`` of the ground truth ``targets`` and ``1 - alpha``
        of a teacher's (detached) outputs, in the form :meth:`loss` accepts. Tasks that support
        Self-KD (:mod:`nastk.training.self_kd`) override this."""
        raise NotImplementedError(f"task {self.name!r} does not say how to blend its targets "
                                  "with a teacher's outputs (Task.blend_targets), so it cannot "
                                  "train with self_kd; remove self_kd from the config")

    def postprocess(self, outputs: Any) -> Any:
        """Predictions from the network's raw outputs, in evaluation only (e.g. decode boxes and
        run non-maximum suppression). Default: the outputs themselves."""
        return outputs

    def draw_predictions(self, inputs: torch.Tensor, targets: Any,
                         predictions: list[tuple[str, Any]], path: Any) -> Any:
        """Draw ``inputs`` (a batch), their ``targets`` and each labelled model's
        post-processed ``predictions`` for them into the PNG ``path`` and return it; ``None``
        (the default) when the task has no picture to draw. Dense tasks override it; the
        search report then shows the best trials' predictions."""
        return None

    def distillation_loss(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Loss pulling a student's outputs toward a teacher's (used by in-place distillation in
        supernet training; the teacher's outputs carry no gradient). Default: mean squared
        error; classification-like tasks override it with a KL divergence on soft targets."""
        import torch.nn.functional as F

        return F.mse_loss(student, teacher.detach())

    def kd_losses(self) -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
        """Distillation terms a ``nastk distill`` config may weight, by name; each maps
        (student outputs, teacher outputs) to a scalar and must not backpropagate into the
        teacher. Default: ``{"kd": distillation_loss}``; dense tasks add their own."""
        return {"kd": self.distillation_loss}

    def meter(self) -> Meter:
        """A fresh :class:`Meter` for :meth:`evaluate`'s default loop. Tasks either implement
        this or override :meth:`evaluate`."""
        raise NotImplementedError(f"task {self.name!r} implements neither meter() nor "
                                  "evaluate(); implement one of them")

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Metrics of ``model`` on ``loader`` (must include ``primary_metric``): the engine's
        loop (eval mode, no gradient, batches on the model's device, :meth:`postprocess`)
        feeding :meth:`meter`; the model's train/eval mode is restored."""
        import torch

        from nastk.data.loaders import iterate

        meter = self.meter()
        was_training = model.training
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        seen = 0
        try:
            with torch.no_grad():
                for x, y in iterate(loader, device):
                    out = model(x)
                    meter.update(out, self.postprocess(out), y)
                    seen += 1
        finally:
            model.train(was_training)
        if seen == 0:
            raise ValueError(f"task {self.name!r}: evaluate got a loader with no batches")
        return meter.compute()
