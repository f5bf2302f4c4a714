"""Score an architecture by training it on a task (from scratch, or from pretrained weights)."""

from __future__ import annotations

import copy
import hashlib
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nastk.core.cpus import THREADS_HELP, Threads
from nastk.core.errors import NastkError, RunStoppingError
from nastk.core.objective import Objective
from nastk.core.options import QuietDefaults
from nastk.core.result import Result
from nastk.core.weights import load_file, save_state, save_weights
from nastk.data.loaders import loader_workers, make_loader, split_batch, to_device
from nastk.evaluation.base import format_error
from nastk.evaluation.cost import model_costs
from nastk.evaluation.hyperparameters import check_hyperparameters, settings_for
from nastk.evaluation.preflight import COSTS
from nastk.nn.batchnorm import recalibrate_bn
from nastk.scheduling.fidelity import Fidelity
from nastk.space.architecture import Architecture
from nastk.task.losses import LossValue, RecentLosses, combine_loss
from nastk.training.callbacks import TrainCallback, any_stop
from nastk.training.inner_loop import (
    AuxiliaryLoss,
    DecoderStageConfig,
    PolyakAverage,
    body_of,
    train_decoder_stage,
)
from nastk.training.optim import make_optimizer, param_groups
from nastk.training.precision import Precision, autocast, autocast_model, device_for
from nastk.training.pretrained import InitConfig, LoadReport, load_init
from nastk.training.schedule import StepwiseCosine, StepwisePoly
from nastk.training.self_kd import SelfKD, SelfKDConfig
from nastk.training.step import Diverged, OptimizerStep, finite_loss
from nastk.training.threads import torch_threads

if TYPE_CHECKING:
    from nastk.latency.predictor import LatencyPredictor
    from nastk.space.search_space import SearchSpace
    from nastk.task.contract import Task

__all__ = ["FitResult", "LossFn", "TrainConfig", "TrainEvaluator", "arch_seed"]

Progress = Callable[[int, int], None]
#: ``loss_fn(outputs, targets, inputs, progress)`` with ``progress`` in [0, 1): the fraction of
#: training done before this step. Replaces the task's loss (distillation uses it); like the
#: task's loss it returns a scalar tensor or a mapping of named terms.
LossFn = Callable[[Any, Any, torch.Tensor, float], LossValue]


class TrainConfig(QuietDefaults):
    """How each candidate is trained (``evaluator.train`` in a config)."""

    model_config = ConfigDict(extra="forbid")
    # added later: left out of the dump while unset, so that stored runs keep their identity
    quiet_defaults: ClassVar[tuple[str, ...]] = ("polyak", "aux_loss", "decoder_stage",
                                                 "lr_schedule", "lr_power")

    epochs: int = Field(5, ge=1, description="passes over the training split")
    steps: int | None = Field(None, ge=1,
                              description="total optimizer steps; overrides epochs when set")
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "sgd", "adamw"] = "adam"
    lr: float = Field(3e-3, gt=0.0, description="peak learning rate (cosine-annealed to 0)")
    lr_schedule: Literal["cosine", "poly"] = Field(
        "cosine", description="cosine: half cosine to 0; poly: lr * (1 - step / total) ** "
        "lr_power, per step (DeepLab, AICSD) (nastk.training.schedule)")
    lr_power: float = Field(0.9, gt=0.0, description="poly: the exponent")
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, le=1.0, description="SGD momentum")
    grad_clip: float | None = Field(None, gt=0.0, description="max gradient norm")
    device: str = Field("cpu", description="torch device to train on, e.g. 'cpu' or 'cuda'")
    precision: Precision = Field(
        "fp32", description="numeric precision of training and evaluation forward passes: "
        "fp32; bf16 (bfloat16 autocast, CPU or CUDA); fp16 (float16 autocast with loss "
        "scaling, CUDA only). Metrics are computed in float32 either way")
    num_threads: Threads = Field("auto", description="torch CPU threads per candidate; "
                                 + THREADS_HELP)
    latency: bool = Field(True, description="measure CPU latency_ms of each candidate")
    latency_repeats: int = Field(10, ge=1)
    eval_split: str = Field("val", min_length=1, description="split scored after training")
    recalibrate_bn: bool = Field(
        True, description="after training, recompute batch-norm running statistics with one "
        "pass over the training split (short runs otherwise leave them far off)")
    init: InitConfig | None = Field(
        None, description="start from pretrained weights: {from: FILE, part: body | all}")
    lr_mult: dict[str, float] = Field(
        default_factory=dict, description="learning-rate multipliers by part of the model, "
        "e.g. {body: 0.1} to fine-tune a pretrained body slowly")
    self_kd: SelfKDConfig | None = Field(
        None, description="self-distillation: learn from alpha x ground truth + (1 - alpha) x "
                          "the average of the model's improving epochs (nastk.training.self_kd)")
    polyak: float | None = Field(
        None, gt=0.0, lt=1.0, description="Polyak averaging (nas-segm: 0.99): after every step "
        "avg = polyak * avg + (1 - polyak) * weights, copied into the model at every epoch's end "
        "(nastk.training.inner_loop)")
    aux_loss: float | None = Field(
        None, gt=0.0, description="weight of the auxiliary loss (nas-segm: 0.15): the task's "
        "loss of a 3x3 classifier on every intermediate decoder output, for a body with "
        "auxiliary outputs (nas_segm's)")
    decoder_stage: DecoderStageConfig | None = Field(
        None, description="first train only the decoder, on the encoder's outputs computed once "
        "and cached, then everything end to end (nas-segm's two stages; a body with an encoder "
        "and a decoder, nas_segm's): {epochs, samples, lr, polyak}")


def arch_seed(seed: int, arch: Architecture) -> int:
    """A 63-bit seed derived from the run seed and the architecture's key (stable across
    processes, unlike ``hash``)."""
    digest = hashlib.sha256(f"{seed}:{arch.key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


#: the ``format`` of a partial-training state file (:meth:`TrainEvaluator.evaluate_at`)
STATE_FORMAT = "nastk.train_state"
STATE_VERSION = 1

SELF_KD_REFUSAL = ("self_kd: a scheduler cannot stop and resume Self-KD training (the teacher, "
                   "an average of the weights of earlier epochs, is not saved with the partial "
                   "training); evaluate it at the full budget ({max:g} {unit}) without a state "
                   "file, or train without self_kd")


def _cpu_copy(value: Any) -> Any:
    """``value`` (tensors in nested dicts, lists and tuples) with every tensor copied to the
    CPU (a copy even for a CPU tensor, so later in-place changes do not reach it)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _cpu_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cpu_copy(v) for v in value)
    return value


def _stop_step(resource: float | None, steps: int | None, per_epoch: int, total: int) -> int:
    """The optimizer step at which training up to ``resource`` stops: ``resource`` epochs of
    ``per_epoch`` steps (``resource`` steps when ``steps`` is set), rounded to a whole step,
    at least 1 and at most ``total``; ``total`` for ``None``."""
    if resource is None:
        return total
    stop = round(resource) if steps is not None else round(resource * per_epoch)
    return min(max(int(stop), 1), total)


@dataclass
class _Segment:
    """What :meth:`TrainEvaluator._train` did: the recent losses, the step reached (counted
    from the start of the full training), the steps per epoch, the epoch a callback stopped
    at, and the partial-training state at the step reached when it was asked for."""

    recent: RecentLosses
    steps: int
    per_epoch: int
    stopped: int | None
    state: dict[str, Any] | None = None


@dataclass
class FitResult:
    """What :meth:`TrainEvaluator.fit` did: the evaluation ``metrics`` after training, the mean
    ``train_loss`` over the last epoch's worth of steps (and of every named loss term, as
    ``train_loss_<term>``), the optimizer ``steps`` and ``epochs`` run, and the epoch at which a
    callback stopped training (``None`` if none did)."""

    metrics: dict[str, float]
    train_loss: float
    steps: int
    epochs: int
    loss_terms: dict[str, float] = field(default_factory=dict)
    stopped_epoch: int | None = None
    #: Self-KD: the epochs whose weights make up the teacher (their validation score improved)
    teacher_epochs: list[int] = field(default_factory=list)


class TrainEvaluator:
    """Trains each architecture on ``task`` and scores it on ``config.eval_split``.

    Training is deterministic per architecture: weights, data order and dropout are seeded from
    ``(seed, arch.key)`` (the global torch RNG is left untouched). Weights start from their
    random initialisation, or from ``config.init``'s file (a load report goes with the result,
    ``info["init"]``). Metrics are the task's metrics on the evaluation split plus
    ``train_loss`` (mean loss over the last epoch's worth of steps) and ``train_loss_<term>``
    for a task whose loss has named terms, measured after batch-norm statistics are recomputed
    on the training split (see ``recalibrate_bn``); costs are ``params``, ``flops`` and (unless
    ``config.latency`` is false) ``latency_ms`` of the network alone (no post-processing). A
    diverging loss, or any exception while building or training, gives a failed
    :class:`Result` instead of raising. ``callbacks``
    (:class:`~nastk.training.callbacks.TrainCallback`)
    run at the end of every epoch and may stop training. With Self-KD the epochs are judged by
    ``objective``, the run's (a search's ``objective``; default: the task's primary metric).
    A space that declares hyperparameter dimensions
    (:attr:`~nastk.space.search_space.SearchSpace.hyperparameters`: ``lr``, ``weight_decay``,
    ...) has each candidate trained with ``config`` updated by its values of them
    (:meth:`config_for`; they go into ``info["hyperparameters"]``); the names are checked
    against :class:`TrainConfig` here, before any trial.
    The optimiser, learning-rate schedule, precision and optimizer step are those of every
    nastk training loop (:mod:`nastk.training.optim`, :mod:`~nastk.training.schedule`,
    :mod:`~nastk.training.step`).

    A multi-fidelity scheduler drives it through :attr:`fidelity` (epochs, or steps when
    ``config.steps`` is set) and :meth:`evaluate_at`: the first epochs of the full training,
    saved to a state file and continued from it exactly at a higher resource.
    """

    #: predicts ``latency_ms`` instead of timing the network (``latency: {table: FILE}``;
    #: set by the composition root)
    latency_predictor: LatencyPredictor | None = None

    def __init__(self, task: Task, space: SearchSpace, config: TrainConfig | None = None,
                 seed: int = 0, progress: Progress | None = None,
                 callbacks: Sequence[TrainCallback] = (), *, where: str = "train",
                 objective: Objective | None = None) -> None:
        self.task = task
        #: the run's objective (default: the task's primary metric and direction); Self-KD
        #: judges epochs by it (:attr:`epoch_objective`)
        self.objective = objective if objective is not None else Objective.of_task(task)
        self.space = space
        self.config = config if config is not None else TrainConfig()
        #: the torch device ``config.device`` names, checked now (``where``: the config's path
        #: in error messages, e.g. ``evaluator.train``) so a run that cannot succeed stops here
        self.device = device_for(self.config.device, self.config.precision, where)
        self.seed = int(seed)
        self.progress = progress
        self.callbacks: list[TrainCallback] = list(callbacks)
        self._init_reported = False
        if self.config.init is not None:
            self.config.init.check(space)
        #: the space's dimensions that are training settings (checked now: before any trial)
        self.hyperparameters = check_hyperparameters(space, self.config, where)

    def config_for(self, arch: Architecture) -> TrainConfig:
        """The training settings of ``arch``: :attr:`config` itself for a space without
        hyperparameter dimensions (or an architecture where all of them are inactive), else a
        validated copy updated by ``arch``'s values of them
        (:func:`~nastk.evaluation.hyperparameters.settings_for`)."""
        return settings_for(self.config, self.hyperparameters, arch)

    def __repr__(self) -> str:
        return f"TrainEvaluator(task={self.task!r}, space={self.space.name!r}, seed={self.seed})"

    def identity(self) -> dict[str, Any]:
        """What this evaluator is, for a run's identity (a search built in Python): the task's
        name and options, the training settings and the seed."""
        options = getattr(self.task, "options", None)
        return {"kind": "train",
                "task": {"name": self.task.name, "options": options.model_dump(mode="json")
                         if hasattr(options, "model_dump") else {}},
                "train": self.config.model_dump(mode="json"), "seed": self.seed}

    @property
    def epoch_objective(self) -> Objective:
        """What Self-KD judges an epoch by: the run's objective, or the task's primary metric
        when the objective's metric is not scored on the evaluation split (a cost such as
        ``flops``, the same for every epoch, or a training loss)."""
        metric = self.objective.metric
        if metric in COSTS or metric == "train_loss" or metric.startswith("train_loss_"):
            return Objective.of_task(self.task)
        return self.objective

    # -- data ---------------------------------------------------------------------------------
    def _split(self, name: str) -> Dataset:
        splits = self.task.splits()
        if name not in splits:
            raise KeyError(f"task {self.task.name!r} has no split {name!r}; it has "
                           f"{sorted(splits)}")
        return splits[name]

    def _train_loader(self, dataset: Dataset, generator: torch.Generator) -> DataLoader:
        bs = self.config.batch_size
        n = len(dataset)  # type: ignore[arg-type]
        drop_last = n > bs and n % bs == 1  # a batch of one breaks batch norm
        return make_loader(self.task, dataset, bs, shuffle=True, generator=generator,
                           drop_last=drop_last)

    def loader_workers(self) -> int:
        """The worker processes of the training split's loader."""
        return loader_workers(self.task, self._split("train"))

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """The loader this evaluator scores ``dataset`` with."""
        return make_loader(self.task, dataset, max(self.config.batch_size, 256))

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        groups = param_groups(model, c.weight_decay, c.lr_mult, split_no_decay=False)
        return make_optimizer(groups, c.optimizer, lr=c.lr, momentum=c.momentum, foreach=True)

    # -- training -----------------------------------------------------------------------------
    def _train(self, model: nn.Module, loader: DataLoader, device: torch.device,
               progress: Progress | None, loss_fn: LossFn | None,
               callbacks: Sequence[TrainCallback], self_kd: SelfKD | None = None,
               aux: AuxiliaryLoss | None = None, *, generator: torch.Generator | None = None,
               resource: float | None = None, resume: Mapping[str, Any] | None = None,
               keep_state: bool = False) -> _Segment:
        """Train in place up to ``resource`` (epochs, or steps when ``config.steps`` is set;
        ``None``: the full budget), the learning-rate schedule and ``progress`` running over the
        full budget. ``resume`` (a state :meth:`_train` kept, read from a file) continues that
        partial training: the model's weights must already be loaded; ``generator`` is the
        loader's. ``keep_state``: the returned segment holds the state at the step reached, to
        continue from exactly. With ``self_kd`` every step learns from the blended target once
        a teacher exists, and every epoch's score by :attr:`epoch_objective` updates the
        teacher. Raises :class:`~nastk.training.step.Diverged`."""
        c = self.config
        per_epoch = len(loader)
        if per_epoch == 0:
            raise ValueError("the training split is empty")
        total = c.steps if c.steps is not None else c.epochs * per_epoch
        stop = _stop_step(resource, c.steps, per_epoch, total)
        optimizer = self._optimizer(model)
        if aux is not None:  # the auxiliary classifiers train with the model
            optimizer.add_param_group({"params": list(aux.parameters()), "lr": c.lr})
        polyak = (PolyakAverage(model.parameters(), c.polyak) if c.polyak is not None
                  else None)
        stepper = OptimizerStep(model, optimizer, device, c.precision, c.grad_clip)
        schedule = (StepwiseCosine(optimizer, total) if c.lr_schedule == "cosine"
                    else StepwisePoly(optimizer, total, c.lr_power))
        recent = RecentLosses(min(per_epoch, total))
        step = 0
        skip = 0  # batches of the current epoch already trained on (when resuming mid-epoch)
        if resume is not None:
            if generator is None:
                raise ValueError("resuming needs the training loader's generator")
            step, skip = self._restore(resume, total, per_epoch, stop, optimizer, stepper,
                                       schedule, recent, polyak, generator, device)
        model.train()
        stopped: int | None = None
        epoch_start = generator.get_state() if generator is not None else None
        batches: Iterator[Any] | None = None  # the current epoch's, while not exhausted
        while step < stop and stopped is None:
            if generator is not None:
                epoch_start = generator.get_state()
            batches = iter(loader)
            if skip:  # the batches trained on before the state was saved: drawn, not used
                with torch.random.fork_rng(devices=_rng_devices(device)):
                    for _ in range(skip):
                        next(batches)
                skip = 0
            for batch in batches:
                xb, yb = split_batch(batch)
                xb, yb = xb.to(device), to_device(yb, device)
                if self_kd is not None:
                    yb = self_kd.blend(self.task, yb, xb, step / total)
                with stepper.autocast():
                    out = model(xb)
                    loss, terms = combine_loss(self.task.loss(out, yb) if loss_fn is None
                                               else loss_fn(out, yb, xb, step / total))
                    if aux is not None:
                        loss, terms = aux.add(self.task, loss, terms, xb.shape[-2:], yb)
                value = finite_loss(loss, f"step {step + 1}", terms=terms)
                stepper.zero_grad()
                stepper.backward(loss)
                stepper.step()
                schedule.advance()
                if polyak is not None:
                    polyak.update()
                    if step + 1 == total or (step + 1) % per_epoch == 0:
                        polyak.copy_to()
                step += 1
                recent.add(value, terms)
                if progress is not None:
                    progress(step, total)
                if (callbacks or self_kd is not None) and step % per_epoch == 0 and step < stop:
                    epoch = step // per_epoch
                    metrics = self._epoch_metrics(model, device)
                    if self_kd is not None:
                        self_kd.end_epoch(epoch, self_kd.score_of(metrics), model)
                    if callbacks and any_stop(callbacks, epoch, model, metrics):
                        stopped = epoch
                        break
                if step >= stop:
                    break
            else:
                batches = None  # exhausted
        segment = _Segment(recent, step, per_epoch, stopped)
        if keep_state:
            if step % per_epoch == 0:
                # at an epoch's end the full training exhausts the epoch's loader (the sampler
                # draws from the generator once more) before the next epoch starts
                if batches is not None:
                    for _ in batches:
                        raise RuntimeError("the training loader yielded more batches than "
                                           f"its length ({per_epoch})")
                at_epoch: torch.Tensor | None = (generator.get_state() if generator is not None
                                                 else None)
            else:
                at_epoch = epoch_start
            segment.state = self._state(model, aux, optimizer, stepper, schedule, recent,
                                        polyak, at_epoch, device, step, total, per_epoch,
                                        stopped)
        return segment

    def _state(self, model: nn.Module, aux: AuxiliaryLoss | None,
               optimizer: torch.optim.Optimizer, stepper: OptimizerStep,
               schedule: StepwiseCosine | StepwisePoly, recent: RecentLosses,
               polyak: PolyakAverage | None, generator_state: torch.Tensor | None,
               device: torch.device, step: int, total: int, per_epoch: int,
               stopped: int | None) -> dict[str, Any]:
        """The partial training at ``step``, as plain values and CPU tensors (it loads with
        ``weights_only=True``): ``generator_state`` is the training generator's state at the
        start of the epoch under way (``step % per_epoch`` of its batches are done)."""
        if generator_state is None:
            raise ValueError("saving the partial training needs the loader's generator")
        return {
            "format": STATE_FORMAT, "version": STATE_VERSION, "step": step, "total": total,
            "per_epoch": per_epoch, "stopped_epoch": stopped,
            "model": _cpu_copy(model.state_dict()),
            "aux": _cpu_copy(aux.state_dict()) if aux is not None else None,
            "optimizer": _cpu_copy(optimizer.state_dict()),
            "scaler": _cpu_copy(stepper.scaling.state_dict()),
            "schedule_steps": schedule.steps,
            "generator": _cpu_copy(generator_state),
            "rng": torch.get_rng_state(),
            "cuda_rng": [torch.cuda.get_rng_state(d) for d in _rng_devices(device)],
            "recent": {"total": list(recent.total),
                       "terms": {k: list(v) for k, v in recent.terms.items()}},
            "polyak": _cpu_copy(polyak.avg) if polyak is not None else None,
        }

    def _restore(self, state: Mapping[str, Any], total: int, per_epoch: int, stop: int,
                 optimizer: torch.optim.Optimizer, stepper: OptimizerStep,
                 schedule: StepwiseCosine | StepwisePoly, recent: RecentLosses,
                 polyak: PolyakAverage | None, generator: torch.Generator,
                 device: torch.device) -> tuple[int, int]:
        """Put the training pieces back as :meth:`_state` saved them (the model's weights are
        loaded by the caller); returns the step reached and the batches of its epoch done. The
        global torch RNG is set to the saved one."""
        if (state["total"], state["per_epoch"]) != (total, per_epoch):
            raise NastkError(
                f"the training state was saved for {state['total']} steps of "
                f"{state['per_epoch']} per epoch, this training has {total} of {per_epoch} "
                "(other training settings or data?)")
        step = int(state["step"])
        if step > stop:
            raise NastkError(f"the training state is at step {step}, beyond the resource asked "
                             f"for (step {stop}); a state continues only to a higher resource")
        optimizer.load_state_dict(state["optimizer"])
        stepper.scaling.load_state_dict(state["scaler"])
        schedule.steps = int(state["schedule_steps"])
        saved = state["recent"]
        recent.total.extend(float(v) for v in saved["total"])
        for name, values in saved["terms"].items():
            recent.terms[name] = deque((float(v) for v in values), maxlen=recent.window)
        if polyak is not None:
            if state["polyak"] is None:
                raise NastkError("the training state has no Polyak averages (saved without "
                                 "polyak?)")
            with torch.no_grad():
                for a, saved_avg in zip(polyak.avg, state["polyak"], strict=True):
                    a.copy_(saved_avg)
        devices = _rng_devices(device)
        if len(state["cuda_rng"]) != len(devices):
            raise NastkError(f"the training state was saved on another device type than "
                             f"{device.type} (its CUDA RNG states: {len(state['cuda_rng'])})")
        generator.set_state(state["generator"])
        torch.set_rng_state(state["rng"])
        for d, rng in zip(devices, state["cuda_rng"], strict=True):
            torch.cuda.set_rng_state(rng, d)
        return step, step % per_epoch

    def _epoch_metrics(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        """The evaluation split's metrics mid-training: eval mode, no gradient, RNG forked, the
        batch-norm statistics as they are; training resumes exactly as without this."""
        with torch.random.fork_rng(devices=_rng_devices(device)):
            metrics = self.score(model, self.config.eval_split)
        model.train()
        return metrics

    def fit(self, model: nn.Module, seed: int, *, loss_fn: LossFn | None = None,
            progress: Progress | None = None,
            callbacks: Sequence[TrainCallback] | None = None) -> FitResult:
        """Train ``model`` in place (data order seeded by ``seed``), recalibrate batch norm if
        configured, and score it on ``config.eval_split``. ``callbacks`` (default: the
        evaluator's) see every epoch's metrics and may stop training; the last epoch's are the
        final metrics. Raises :class:`Diverged`; the caller sets threads, device and weight
        seed. Trains with :attr:`config` as it is: a space's hyperparameter dimensions are
        applied by :meth:`evaluate` (:meth:`config_for` gives an architecture's settings)."""
        return self._fit(model, seed, loss_fn=loss_fn, progress=progress, callbacks=callbacks)

    def _fit(self, model: nn.Module, seed: int, *, loss_fn: LossFn | None = None,
             progress: Progress | None = None,
             callbacks: Sequence[TrainCallback] | None = None, resource: float | None = None,
             resume: Mapping[str, Any] | None = None, state_out: Path | None = None,
             tag: Mapping[str, Any] | None = None) -> FitResult:
        """:meth:`fit` up to ``resource`` (``None``: the full budget), continuing from the
        partial training ``resume`` when given (the decoder stage runs only in a training that
        starts from scratch), and writing the partial training reached to ``state_out`` (before
        batch norm is recalibrated) when given, with ``tag``'s entries (what it belongs to)."""
        c = self.config
        callbacks = self.callbacks if callbacks is None else list(callbacks)
        device = self.device
        model.to(device)
        if resume is not None:
            model.load_state_dict(resume["model"])
        generator = torch.Generator().manual_seed(seed)
        train_loader = self._train_loader(self._split("train"), generator)
        self_kd = (SelfKD(c.self_kd, self.epoch_objective) if c.self_kd is not None
                   else None)
        aux = self._auxiliary(model, device)
        if aux is not None and resume is not None:
            if resume["aux"] is None:
                raise NastkError("the training state has no auxiliary classifiers (saved "
                                 "without aux_loss?)")
            aux.load_state_dict(resume["aux"])
        try:
            if c.decoder_stage is not None and resume is None:
                self._decoder_stage(model, train_loader, device, generator, loss_fn, aux)
            segment = self._train(model, train_loader, device, progress, loss_fn, callbacks,
                                  self_kd, aux, generator=generator, resource=resource,
                                  resume=resume, keep_state=state_out is not None)
        finally:
            if aux is not None:
                aux.detach_body()
        if state_out is not None and segment.state is not None:
            save_state({**segment.state, **(tag or {})}, state_out)
        recent, steps, per_epoch, stopped = (segment.recent, segment.steps, segment.per_epoch,
                                             segment.stopped)
        if c.recalibrate_bn:
            with autocast(device, c.precision):
                recalibrate_bn(model, self.eval_loader(self._split("train")), device=device)
        metrics = self.score(model, c.eval_split)
        epochs = math.ceil(steps / per_epoch)
        if callbacks:
            any_stop(callbacks, epochs, model, metrics)
        return FitResult(metrics, recent.mean(), steps, epochs, recent.term_means(), stopped,
                         list(self_kd.improved_epochs) if self_kd is not None else [])

    def _auxiliary(self, model: nn.Module, device: torch.device) -> AuxiliaryLoss | None:
        """``config.aux_loss``'s classifiers on the body's auxiliary outputs (seeded by the
        caller's RNG), or ``None``."""
        if self.config.aux_loss is None:
            return None
        return AuxiliaryLoss.for_task(self.task, body_of(model), self.config.aux_loss).to(device)

    def _decoder_stage(self, model: nn.Module, loader: DataLoader, device: torch.device,
                       generator: torch.Generator, loss_fn: LossFn | None,
                       aux: AuxiliaryLoss | None) -> None:
        """``config.decoder_stage``: the decoder alone on cached encoder outputs (the
        optimiser, weight decay and gradient clipping of the training, at the stage's
        constant learning rate)."""
        c = self.config
        stage = c.decoder_stage
        assert stage is not None

        def loss_of(out: Any, yb: Any, xb: torch.Tensor) -> LossValue:
            return self.task.loss(out, yb) if loss_fn is None else loss_fn(out, yb, xb, 0.0)

        def optimizer_of(params: list[nn.Parameter], lr: float) -> torch.optim.Optimizer:
            return make_optimizer([{"params": params, "weight_decay": c.weight_decay}],
                                  c.optimizer, lr=lr, momentum=c.momentum, foreach=True)

        train_decoder_stage(model, stage, loader, device, generator, c.lr, self.task, loss_of,
                            optimizer_of, c.grad_clip, aux)

    def score(self, model: nn.Module, split: str) -> dict[str, float]:
        """The task's metrics of ``model`` on ``split`` (no training): forward passes in
        ``config.precision``, metrics from their outputs cast to float32."""
        return dict(self.task.evaluate(autocast_model(model, self.device, self.config.precision),
                                       self.eval_loader(self._split(split))))

    def initialize(self, model: nn.Module, arch: Architecture) -> LoadReport | None:
        """Load ``config.init``'s weights into a freshly built ``model`` of ``arch`` (printing
        the load report once per evaluator); ``None`` without ``init``."""
        if self.config.init is None:
            return None
        report = load_init(model, self.config.init, space=self.space, arch=arch,
                           in_channels=self.task.input_shape[0])
        if not self._init_reported:
            print(report.summary(), file=sys.stderr)
            self._init_reported = True
        return report

    @torch.no_grad()
    def predict(self, arch: Architecture, inputs: torch.Tensor,
                checkpoint: Path | None = None) -> Any:
        """The trained network's outputs for ``inputs``: the model of ``arch`` with the weights
        of ``checkpoint`` (a kept trial checkpoint), in eval mode. Raises FileNotFoundError when
        no checkpoint was kept."""
        if checkpoint is None or not Path(checkpoint).is_file():
            raise FileNotFoundError(f"no checkpoint {checkpoint} for {arch.short_id}")
        model = self.task.build_model(self.space, self.space.validate(arch))
        model.load_state_dict(torch.load(checkpoint, weights_only=True, map_location="cpu"))
        model.to(self.device).eval()
        return autocast_model(model, self.device, self.config.precision)(
            inputs.to(self.device))

    @property
    def fidelity(self) -> Fidelity:
        """The resource a scheduler spends (:meth:`evaluate_at`): epochs up to
        ``config.epochs``, or optimizer steps up to ``config.steps`` when that is set;
        resumable."""
        c = self.config
        if c.steps is None:
            return Fidelity(name="epochs", max=c.epochs, min=1, resumable=True)
        return Fidelity(name="steps", max=c.steps, min=1, resumable=True)

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None,
                 progress: Progress | None = None,
                 callbacks: Sequence[TrainCallback] | None = None) -> Result:
        """Build, train and score ``arch``; save its ``state_dict`` to ``checkpoint`` if given.
        ``progress(step, total)`` (default: the one given to the constructor) is called after
        every optimizer step; ``callbacks`` (default: the evaluator's) at every epoch's end.
        Never raises for a bad candidate: failures become failed results."""
        return self._evaluate(arch, None, checkpoint=checkpoint, progress=progress,
                              callbacks=callbacks)

    def evaluate_at(self, arch: Architecture, resource: float, *,
                    checkpoint: Path | None = None, state: Path | None = None,
                    state_out: Path | None = None, progress: Progress | None = None,
                    callbacks: Sequence[TrainCallback] | None = None) -> Result:
        """Train ``arch`` up to ``resource`` (:attr:`fidelity`: epochs, or optimizer steps when
        ``config.steps`` is set) in all and score it as :meth:`evaluate` does: exactly the
        first ``resource`` epochs (steps) of the full training, the learning-rate schedule
        running over the full budget. A fractional number of epochs stops at the nearest
        step. At ``fidelity.max`` without ``state`` the result is :meth:`evaluate`'s.

        ``state``, when it names an existing file (an earlier call's ``state_out`` for the
        same architecture and settings, at a lower resource), continues that partial training
        instead of starting over; the result is the same, bit for bit, as training straight to
        ``resource``. ``state_out``: write the partial training reached there, atomically,
        before batch norm is recalibrated and the model scored (a weights-only file: weights,
        optimizer, schedule position, data-order generator, RNG, recent losses, Polyak
        averages, auxiliary classifiers). The decoder stage (``config.decoder_stage``) runs
        only in a training that starts from scratch. Self-KD training cannot be resumed: below
        the full budget, or from a state, the result is a failure saying so. ``callbacks``
        count epochs from the start of the full training; the epoch a segment ends at is
        seen once, with the final (recalibrated) metrics.

        ``info`` holds ``resource``, ``steps`` (reached, from the start) and ``seed``. A
        resource :attr:`fidelity` does not accept, a state that does not fit, or any failure
        while training gives a failed :class:`Result`; nothing is raised for a bad
        candidate."""
        t0 = time.perf_counter()
        fidelity = self.fidelity
        try:
            r = fidelity.check(resource)
        except (ValueError, TypeError) as err:
            return Result.failed(str(err), {}, time.perf_counter() - t0)
        if self.config.self_kd is not None and (
                r < fidelity.max or (state is not None and Path(state).is_file())):
            return Result.failed(SELF_KD_REFUSAL.format(max=fidelity.max, unit=fidelity.name),
                                 {}, time.perf_counter() - t0)
        result = self._evaluate(arch, r, checkpoint=checkpoint, state=state,
                                state_out=state_out, progress=progress, callbacks=callbacks,
                                t0=t0)
        if result.ok:
            result.info["resource"] = r
        return result

    def _read_state(self, path: Path, arch: Architecture, seed: int) -> dict[str, Any]:
        """The partial training in ``path``, checked to be a state of ``arch`` under this
        evaluator's seed."""
        state = load_file(path, "training state")
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise NastkError(f"training state {path} is not a partial training written by "
                             "TrainEvaluator.evaluate_at")
        if state.get("version") != STATE_VERSION:
            raise NastkError(f"training state {path} has version {state.get('version')}; "
                             f"this nastk reads version {STATE_VERSION}")
        if state.get("arch") != arch.key or state.get("seed") != seed:
            raise NastkError(f"training state {path} belongs to another architecture or seed "
                             f"(architecture {state.get('arch')!r}, seed {state.get('seed')}), "
                             f"not {arch.key!r} with seed {seed}")
        return state

    def _evaluate(self, arch: Architecture, resource: float | None, *,
                  checkpoint: Path | None = None, state: Path | None = None,
                  state_out: Path | None = None, progress: Progress | None = None,
                  callbacks: Sequence[TrainCallback] | None = None,
                  t0: float | None = None) -> Result:
        """:meth:`evaluate` up to ``resource`` (``None``: the full budget), continuing from
        ``state`` and writing ``state_out`` as :meth:`evaluate_at` describes."""
        t0 = time.perf_counter() if t0 is None else t0
        if self.hyperparameters:
            return self._evaluate_tuned(arch, resource, checkpoint=checkpoint, state=state,
                                        state_out=state_out, progress=progress,
                                        callbacks=callbacks, t0=t0)
        c = self.config
        progress = progress if progress is not None else self.progress
        costs: dict[str, float] = {}
        info: dict[str, Any] = {}
        try:
            arch = self.space.validate(arch)
            seed = arch_seed(self.seed, arch)
            resume = (self._read_state(Path(state), arch, seed)
                      if state is not None and Path(state).is_file() else None)
            with seeded_threads(c, seed, self.loader_workers()):
                model = self.task.build_model(self.space, arch)
                report = self.initialize(model, arch)
                if report is not None:
                    info["init"] = {"file": report.file, "part": report.part,
                                    "loaded": len(report.loaded), "missing": report.missing,
                                    "unexpected": report.unexpected,
                                    "mismatched": report.mismatched,
                                    "extracted": report.extracted}
                predicted = self.latency_predictor
                costs = model_costs(model, self.task.input_shape,
                                    latency=c.latency and predicted is None,
                                    repeats=c.latency_repeats, info=info)
                if predicted is not None:  # latency: {table: FILE}
                    predicted.apply(arch, costs, info)
                fit = self._fit(model, seed, progress=progress, callbacks=callbacks,
                                resource=resource, resume=resume,
                                state_out=None if state_out is None else Path(state_out),
                                tag={"arch": arch.key, "seed": seed})
            metrics = fit.metrics
            metrics["train_loss"] = fit.train_loss
            metrics.update(fit.loss_terms)
            bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
            if bad:
                return Result.failed(f"non-finite metrics {bad}", costs,
                                     time.perf_counter() - t0)
            if checkpoint is not None:
                save_weights(model, checkpoint)
        except Diverged as err:
            return Result.failed(str(err), costs, time.perf_counter() - t0)
        except RunStoppingError:  # a full disk, an unreadable data file: --resume goes on
            raise
        except Exception as err:  # a broken candidate must not stop the search
            return Result.failed(format_error(err), costs, time.perf_counter() - t0)
        info.update({"steps": fit.steps, "seed": seed})
        if fit.stopped_epoch is not None:
            info.update({"stopped_epoch": fit.stopped_epoch, "early_stopped": True})
        if c.self_kd is not None:
            info["self_kd_teacher_epochs"] = fit.teacher_epochs
        return Result.complete(metrics, costs, time.perf_counter() - t0, info=info)

    def _evaluate_tuned(self, arch: Architecture, resource: float | None, *, t0: float,
                        **kwargs: Any) -> Result:
        """:meth:`_evaluate` with :meth:`config_for`'s settings for ``arch``: a copy of this
        evaluator holding them (and no hyperparameters) trains it; the values used go into
        ``info["hyperparameters"]``."""
        try:
            arch = self.space.validate(arch)
            config = self.config_for(arch)
        except RunStoppingError:
            raise
        except Exception as err:  # a bad candidate must not stop the search
            return Result.failed(format_error(err), {}, time.perf_counter() - t0)
        trainer = copy.copy(self)
        trainer.config, trainer.hyperparameters = config, ()
        try:
            result = trainer._evaluate(arch, resource, t0=t0, **kwargs)
        finally:
            self._init_reported = self._init_reported or trainer._init_reported
        result.info["hyperparameters"] = {n: arch[n] for n in self.hyperparameters if n in arch}
        return result


@contextmanager
def seeded_threads(config: TrainConfig, seed: int, loader_workers: int = 0) -> Iterator[None]:
    """Run a block with ``config.num_threads`` torch threads (``auto`` leaving a CPU to each of
    the training loader's ``loader_workers`` processes) and the torch RNG (CPU and the
    configured CUDA device) forked and seeded with ``seed``; the global RNG is restored."""
    device = torch.device(config.device)
    with torch_threads(config.num_threads, loader_workers=loader_workers), \
            torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(seed)
        yield
