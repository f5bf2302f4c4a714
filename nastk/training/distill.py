"""Knowledge distillation for any task: a frozen teacher, the task's distillation terms, and
Adaptive Loss Weighting (ALW) that moves weight from the teacher to the ground truth.

This module holds the ``nastk distill`` config (:class:`DistillConfig`), the ALW schedule and
the loss; the command itself is :mod:`nastk.cli.commands.distill`. The teacher stays in eval mode
under ``torch.no_grad()``: its batch-norm statistics never drift and no gradient reaches it.

Loss of a batch at training progress ``p`` (fraction of steps done), with the task's loss
``L_gt``, the configured terms ``L_k`` weighted by ``losses: {k: lambda_k}`` and
``KD = sum_k lambda_k L_k``:

- ALW off: ``L = L_gt + KD``;
- ALW on:  ``L = (1 - a(p)) L_gt + a(p) KD``, where the teacher's share ``a(p)`` follows the
  configured schedule from ``start`` to ``end`` (AICSD fades the teacher out linearly);
- ALW ``schedule: aicsd`` (the method's own weighting): with ``alpha = p``,
  ``L = alpha (L_gt + sum_{k in with_gt} lambda_k L_k) + (1 - alpha) sum_{k in fading} lambda_k
  L_k + sum_{other k} lambda_k L_k``; by default ``with_gt = [icsd]``, ``fading = [pixel_kd]``,
  so ``L = alpha (CE + ICSD) + (1 - alpha) PI`` plus the pairwise term at full weight (the
  reference's commented-out ALW drops the pairwise term: give it ``lambda = 0`` for that). The
  reference sets ``alpha = epoch / E`` once per epoch; here ``alpha`` is the fraction of steps
  done (the same line, sampled every step).

Besides the task's terms (logits against logits), ``losses`` may name ``pairwise``: AICSD's
pairwise feature distillation (:func:`pairwise_loss`) between a named feature of the student
and of the teacher (:class:`PairwiseConfig`; ``aspp``, the ASPP output before ReLU of a
``deeplabv3plus`` head, or ``neck``, a segmentation head's decoded map (an fpn neck's finest
merged map for a searched student), or any module path), read with forward hooks.

``reference_scale: aicsd`` converts the terms to the reductions of AICSD's code, so that its
published lambda values (``pa_lambda 9500``, ``pi_lambda 10``, ``lo_lambda``) mean what they
mean there: ``pixel_kd`` is divided by the number of classes C (the reference's
``KLDivLoss()`` averages over B*C*H*W elements, ours sums over classes and averages over pixels),
``icsd`` by the batch size B (the reference divides its mean squared difference by B once
more); ``pairwise`` is the reference's value either way. Equivalently, with the default
``nastk`` scale use ``lambda_pixel_kd = pi_lambda / C`` and ``lambda_icsd = lo_lambda / B``.
ICSD itself stays the paper's definition (true KL of per-class distributions over all H*W
positions, one matrix per image), not the reference code's (softmax over H only, a non-log
input to ``KLDivLoss``, one batch-averaged matrix): values agree with the reference's
reduction, not with its defects (:mod:`nastk.tasks.segmentation.distill`).
"""

from __future__ import annotations

import importlib.util
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from nastk.config.schema import PluginRef, RunConfig
from nastk.core.errors import ConfigError
from nastk.core.loading import load_object
from nastk.core.options import QuietDefaults
from nastk.evaluation.train import TrainConfig
from nastk.task.contract import Task
from nastk.task.losses import combine_loss

__all__ = ["ALWSchedule", "DistillConfig", "FeatureTap", "ModelSpec", "PairwiseConfig",
           "TeacherSpec", "build_factory_model", "check_pairwise_features", "distill_loss_fn",
           "load_factory", "pairwise_loss", "pairwise_similarity", "reference_factor"]

#: the distillation terms the engine adds to a task's own (feature terms)
FEATURE_TERMS: tuple[str, ...] = ("pairwise",)


class ALWSchedule(QuietDefaults):
    """Adaptive Loss Weighting: the teacher's share ``a(p)`` of the loss over training
    progress ``p`` in [0, 1] (``schedule: aicsd``: the method's own weighting, see the module
    docstring; ``a(p) = 1 - p`` is then the share of the ``fading`` terms)."""

    model_config = ConfigDict(extra="forbid")
    quiet_defaults: ClassVar[tuple[str, ...]] = ("with_gt", "fading")

    enabled: bool = Field(True, description="off: L = L_gt + KD (no fading)")
    schedule: Literal["linear", "cosine", "step", "constant", "aicsd"] = "linear"
    start: float = Field(0.9, ge=0.0, le=1.0, description="teacher share at the start")
    end: float = Field(0.1, ge=0.0, le=1.0, description="teacher share at the end")
    hold: float = Field(0.0, ge=0.0, lt=1.0,
                        description="fraction of training held at `start` before moving "
                                    "(linear, cosine); for step: where the share drops to `end`")
    with_gt: list[str] = Field(default_factory=lambda: ["icsd"],
                               description="aicsd: terms weighted with the ground truth (alpha)")
    fading: list[str] = Field(default_factory=lambda: ["pixel_kd"],
                              description="aicsd: terms weighted by 1 - alpha")

    def teacher_weight(self, progress: float) -> float:
        """``a(progress)``: the teacher term's share of the loss."""
        p = min(max(float(progress), 0.0), 1.0)
        if self.schedule == "aicsd":
            return 1.0 - p
        if self.schedule == "constant":
            return self.start
        if self.schedule == "step":
            return self.start if p < self.hold else self.end
        q = min(max((p - self.hold) / (1.0 - self.hold), 0.0), 1.0)
        if self.schedule == "linear":
            return self.start + (self.end - self.start) * q
        return self.end + (self.start - self.end) * 0.5 * (1.0 + math.cos(math.pi * q))


class ModelSpec(BaseModel):
    """One network: a search space and an architecture of it, given inline (``arch``) or read
    from ``arch_from`` — a search run directory (its best trial) or an ``arch.json`` written by
    ``nastk export``."""

    model_config = ConfigDict(extra="forbid")

    space: PluginRef
    arch: dict[str, Any] | None = None
    arch_from: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.arch is None) == (self.arch_from is None):
            raise ValueError("give exactly one of `arch` (a mapping of dimension values) or "
                             "`arch_from` (a search run_dir or an arch.json)")
        return self


class TeacherSpec(ModelSpec):
    """The teacher: its network, its checkpoint, and how to train it when the checkpoint does
    not exist yet.

    The network is an architecture of a search space (``space`` with ``arch`` or ``arch_from``,
    built by the task like the student), or any model made by ``factory``: ``module:function``
    or ``path/to/file.py:function``, called with ``options`` (and with ``task=`` the task when
    it takes a ``task`` parameter), e.g. ``nastk.tasks.segmentation.deeplab_model:deeplabv3plus``
    with ``{backbone: resnet101, output_stride: 16}``. A factory's checkpoint must exist."""

    space: PluginRef | None = None  # type: ignore[assignment]
    factory: str | None = Field(None, description="module:function or file.py:function that "
                                                  "builds the teacher (instead of space/arch)")
    options: dict[str, Any] = Field(default_factory=dict, description="factory's keywords")
    checkpoint: Path = Field(description="weights-only state dict; trained and written here "
                                         "first when missing (space teachers only)")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="used only to train a missing teacher")

    @model_validator(mode="after")
    def _one_source(self) -> TeacherSpec:  # replaces ModelSpec's check
        if self.factory is not None:
            if self.space is not None or self.arch is not None or self.arch_from is not None:
                raise ValueError("give `factory` or `space` with `arch`/`arch_from`, not both")
            if ":" not in self.factory:
                raise ValueError(f"factory {self.factory!r} must look like 'module:function' "
                                 "or 'file.py:function'")
            return self
        if self.options:
            raise ValueError("`options` are the factory's keywords; give `factory`")
        if self.space is None:
            raise ValueError("give the teacher's `space` (with `arch` or `arch_from`) or a "
                             "`factory`")
        if (self.arch is None) == (self.arch_from is None):
            raise ValueError("give exactly one of `arch` (a mapping of dimension values) or "
                             "`arch_from` (a search run_dir or an arch.json)")
        return self


class PairwiseConfig(BaseModel):
    """Which features the ``pairwise`` term compares and how they are pooled."""

    model_config = ConfigDict(extra="forbid")

    student: str = Field("aspp", description="the student's feature: a name the model offers "
                                             "(aspp, neck) or a module path")
    teacher: str = Field("aspp", description="the teacher's feature, likewise")
    pool_scale: float = Field(0.5, gt=0.0, le=1.0,
                              description="max-pool window as a share of the teacher feature's "
                                          "height and width (AICSD: 0.5, a 2x2 grid)")


class DistillConfig(RunConfig):
    """``nastk distill CONFIG``: train a student with a teacher's help, and without it."""

    name: str = Field("distill", min_length=1)
    task: PluginRef
    student: ModelSpec
    teacher: TeacherSpec
    losses: dict[str, float] = Field(
        default_factory=lambda: {"kd": 1.0},
        description="distillation terms of the task and their weights (lambda)")
    alw: ALWSchedule = Field(default_factory=ALWSchedule)
    pairwise: PairwiseConfig = Field(default_factory=PairwiseConfig,
                                     description="features of the `pairwise` term")
    reference_scale: Literal["nastk", "aicsd"] = Field(
        "nastk", description="aicsd: scale pixel_kd (1/C) and icsd (1/B) as AICSD's code does, "
                             "so that its published lambdas apply unchanged")
    train: TrainConfig = Field(default_factory=TrainConfig, description="student training")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    baseline: bool = Field(True, description="also train the student without the teacher")
    splits: list[str] = Field(default_factory=lambda: ["val", "test"], min_length=1,
                              description="splits scored after training (those that exist)")

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        bad = {k: v for k, v in self.losses.items() if v < 0}
        if bad:
            raise ValueError(f"losses: weights must be >= 0, got {bad}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds} repeat a value")
        return self


def pairwise_similarity(feature: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]`` cosine similarities of the ``N = H*W`` positions of a ``[B, C, H, W]``
    feature, as AICSD (and structured KD) compute them: each position's vector divided by its
    L2 norm plus ``1e-8``, the norm treated as a constant (detached)."""
    f = feature.float()
    norm = f.pow(2).sum(1, keepdim=True).sqrt().detach() + 1e-8
    f = (f / norm).flatten(2)  # [B, C, N]
    return f.transpose(1, 2) @ f


def pairwise_loss(student: torch.Tensor, teacher: torch.Tensor,
                  pool_scale: float = 0.5) -> torch.Tensor:
    """AICSD's pairwise distillation: both features max-pooled with a window of
    ``int(pool_scale * H) x int(pool_scale * W)`` of the teacher's size (stride equal to the
    window, ceil mode: a 2x2 grid for even sizes at 0.5), then
    ``sum((S_T - S_S)^2) / N^2 / B`` over the ``N`` pooled positions' similarity matrices
    (:func:`pairwise_similarity`). The teacher is detached; a student feature of another
    spatial size is first resized to the teacher's (bilinear); channels may differ."""
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(f"pairwise_loss: expected [B, C, H, W] features, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(f"pairwise_loss: batch sizes differ ({student.shape[0]} and "
                         f"{teacher.shape[0]})")
    teacher = teacher.detach()
    h, w = teacher.shape[-2:]
    if student.shape[-2:] != teacher.shape[-2:]:
        student = F.interpolate(student, size=(h, w), mode="bilinear", align_corners=False)
    kernel = (max(1, int(h * pool_scale)), max(1, int(w * pool_scale)))
    ps = F.max_pool2d(student, kernel, kernel, ceil_mode=True)
    pt = F.max_pool2d(teacher, kernel, kernel, ceil_mode=True)
    n = pt.shape[-1] * pt.shape[-2]
    err = (pairwise_similarity(pt) - pairwise_similarity(ps)) ** 2
    return err.sum() / (n * n) / pt.shape[0]


def reference_factor(scale: str, term: str, student: torch.Tensor) -> float:
    """The factor that turns term ``term`` into the reduction of ``scale``'s reference code
    (see the module docstring): 1 for ``nastk``; for ``aicsd`` ``1/C`` for ``pixel_kd`` and
    ``1/B`` for ``icsd`` (``student``: the student's ``[B, C, ...]`` logits)."""
    if scale == "aicsd":
        if term == "pixel_kd":
            return 1.0 / student.shape[1]
        if term == "icsd":
            return 1.0 / student.shape[0]
    return 1.0


def load_factory(spec: str, where: str = "teacher.factory") -> Callable[..., Any]:
    """``module:function`` or ``path/to/file.py:function`` -> the function."""
    path, sep, attr = spec.rpartition(":")
    if sep and path.endswith(".py"):
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"{where}: {file} does not exist")
        mod_spec = importlib.util.spec_from_file_location(f"_nastk_factory_{file.stem}", file)
        assert mod_spec is not None and mod_spec.loader is not None
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        obj = getattr(module, attr, None)
        if not callable(obj):
            raise ConfigError(f"{where}: {file} has no callable {attr!r}")
        return obj
    return load_object(spec, where)


def build_factory_model(spec: str, options: dict[str, Any], task: Any) -> nn.Module:
    """The model ``spec``'s factory builds from ``options`` (plus ``task=task`` when the
    factory takes a ``task`` parameter)."""
    fn = load_factory(spec)
    kwargs = dict(options)
    try:
        takes_task = "task" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        takes_task = False
    if takes_task:
        kwargs.setdefault("task", task)
    model = fn(**kwargs)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"teacher.factory: {spec!r} returned {type(model).__name__}, not a "
                          "torch module")
    return model


def _module_at(model: nn.Module, name: str, who: str) -> nn.Module:
    offered = getattr(model, "feature_modules", None)
    named = offered() if callable(offered) else {}
    path = named.get(name, name)
    modules = dict(model.named_modules())
    if path not in modules:
        raise ConfigError(f"pairwise.{who}: {type(model).__name__} has no feature {name!r}; it "
                          f"names {sorted(named)}, or give a module path (e.g. "
                          f"{sorted(k for k in modules if k)[:3]})")
    return modules[path]


def check_pairwise_features(student: nn.Module, teacher: nn.Module,
                            pairwise: PairwiseConfig) -> None:
    """Fail now, naming what the models offer, if either feature of ``pairwise`` is not
    there."""
    _module_at(student, pairwise.student, "student")
    _module_at(teacher, pairwise.teacher, "teacher")


class FeatureTap:
    """The latest output of one module of a model, kept by a forward hook (a list or tuple
    output: its first element; a copy, so an in-place op after the module cannot change it).
    With ``training_only`` only forward passes that record gradients are kept (not the
    evaluation passes of the student)."""

    def __init__(self, model: nn.Module, name: str, who: str,
                 training_only: bool = False) -> None:
        self.value: torch.Tensor | None = None
        self.training_only = training_only
        self.handle = _module_at(model, name, who).register_forward_hook(self._keep)

    def _keep(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.training_only and not torch.is_grad_enabled():
            return
        if isinstance(output, (list, tuple)):
            output = output[0]
        self.value = output.clone()

    def remove(self) -> None:
        """Take the hook off the model."""
        self.handle.remove()
        self.value = None

    def take(self) -> torch.Tensor:
        if self.value is None:
            raise RuntimeError("pairwise: the feature's module did not run in the forward pass")
        value, self.value = self.value, None
        return value


def distill_loss_fn(task: Task, teacher: nn.Module, losses: dict[str, float],
                    alw: ALWSchedule, trace: list[tuple[float, float]] | None = None, *,
                    student: nn.Module | None = None,
                    pairwise: PairwiseConfig | None = None,
                    reference_scale: str = "nastk",
                    ) -> Callable[[Any, Any, torch.Tensor, float], dict[str, torch.Tensor]]:
    """The training loss with a teacher (see the module docstring), as named terms: the task's
    own terms (``task`` when its loss is one tensor) and ``distill_<name>`` for every weighted
    distillation term, each scaled by its ALW weight; their sum is the loss. ``trace``
    collects ``(progress, teacher share)`` pairs. The ``pairwise`` term reads the features
    ``pairwise`` names from ``student`` (the model whose outputs the loss receives) and the
    teacher through forward hooks; ``loss_fn.release()`` takes them off when training is
    done."""
    available: dict[str, Any] = dict(task.kd_losses())
    offered = sorted([*available, *FEATURE_TERMS])
    unknown = sorted(set(losses) - set(offered))
    if unknown:
        raise ConfigError(f"losses: {unknown} not offered by task {task.name!r}; it offers "
                          f"{offered}")
    weighted = [(k, available.get(k), w) for k, w in losses.items() if w > 0]
    taps: tuple[FeatureTap, FeatureTap] | None = None
    if any(k == "pairwise" for k, _, _ in weighted) and student is not None:
        pw = pairwise or PairwiseConfig()
        taps = (FeatureTap(student, pw.student, "student", training_only=True),
                FeatureTap(teacher, pw.teacher, "teacher"))
    pool_scale = (pairwise or PairwiseConfig()).pool_scale

    def loss_fn(out: Any, targets: Any, inputs: torch.Tensor,
                progress: float) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            t_out = teacher(inputs)
        gt, gt_terms = combine_loss(task.loss(out, targets))
        own = gt_terms or {"task": gt}
        kd: dict[str, torch.Tensor] = {}
        for k, f, w in weighted:
            if k == "pairwise":
                if taps is None:
                    raise ConfigError("losses: pairwise needs the student model "
                                      "(distill_loss_fn(..., student=model))")
                value = pairwise_loss(taps[0].take(), taps[1].take(), pool_scale)
            else:
                value = f(out, t_out) * reference_factor(reference_scale, k, out)
            kd[k] = w * value
        if not alw.enabled:
            return {**own, **{f"distill_{k}": v for k, v in kd.items()}}
        a = alw.teacher_weight(progress)
        if trace is not None:
            trace.append((progress, a))
        if alw.schedule == "aicsd":
            alpha = 1.0 - a
            weights = {k: alpha if k in alw.with_gt else a if k in alw.fading else 1.0
                       for k in kd}
            return {**{k: alpha * v for k, v in own.items()},
                    **{f"distill_{k}": weights[k] * v for k, v in kd.items()}}
        return {**{k: (1.0 - a) * v for k, v in own.items()},
                **{f"distill_{k}": a * v for k, v in kd.items()}}

    def release() -> None:
        for tap in taps or ():
            tap.remove()

    loss_fn.release = release  # type: ignore[attr-defined]
    return loss_fn
