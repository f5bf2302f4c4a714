"""Score an architecture by training it on a task (from scratch, or from pretrained weights)."""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import ConfigDict, Field
from torch import nn
from torch.utils.data import DataLoader, Dataset

from nastk.core.cpus import THREADS_HELP, Threads
from nastk.core.errors import RunStoppingError
from nastk.core.objective import Objective
from nastk.core.options import QuietDefaults
from nastk.core.result import Result
from nastk.core.weights import save_weights
from nastk.data.loaders import loader_workers, make_loader, split_batch, to_device
from nastk.evaluation.base import format_error
from nastk.evaluation.cost import model_costs
from nastk.evaluation.preflight import COSTS
from nastk.nn.batchnorm import recalibrate_bn
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
    The optimiser, learning-rate schedule, precision and optimizer step are those of every
    nastk training loop (:mod:`nastk.training.optim`, :mod:`~nastk.training.schedule`,
    :mod:`~nastk.training.step`).
    """

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
               aux: AuxiliaryLoss | None = None
               ) -> tuple[RecentLosses, int, int, int | None]:
        """Train in place; returns (recent losses, steps, steps per epoch, epoch a callback
        stopped at). With ``self_kd`` every step learns from the blended target once a teacher
        exists, and every epoch's score by :attr:`epoch_objective` updates the teacher. Raises
        :class:`~nastk.training.step.Diverged`."""
        c = self.config
        per_epoch = len(loader)
        if per_epoch == 0:
            raise ValueError("the training split is empty")
        total = c.steps if c.steps is not None else c.epochs * per_epoch
        optimizer = self._optimizer(model)
        if aux is not None:  # the auxiliary classifiers train with the model
            optimizer.add_param_group({"params": list(aux.parameters()), "lr": c.lr})
        polyak = (PolyakAverage(model.parameters(), c.polyak) if c.polyak is not None
                  else None)
        stepper = OptimizerStep(model, optimizer, device, c.precision, c.grad_clip)
        schedule = (StepwiseCosine(optimizer, total) if c.lr_schedule == "cosine"
                    else StepwisePoly(optimizer, total, c.lr_power))
        recent = RecentLosses(min(per_epoch, total))
        model.train()
        step = 0
        stopped: int | None = None
        while step < total and stopped is None:
            for batch in loader:
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
                if (callbacks or self_kd is not None) and step % per_epoch == 0 and step < total:
                    epoch = step // per_epoch
                    metrics = self._epoch_metrics(model, device)
                    if self_kd is not None:
                        self_kd.end_epoch(epoch, self_kd.score_of(metrics), model)
                    if callbacks and any_stop(callbacks, epoch, model, metrics):
                        stopped = epoch
                        break
                if step >= total:
                    break
        return recent, step, per_epoch, stopped

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
        seed."""
        c = self.config
        callbacks = self.callbacks if callbacks is None else list(callbacks)
        device = self.device
        model.to(device)
        generator = torch.Generator().manual_seed(seed)
        train_loader = self._train_loader(self._split("train"), generator)
        self_kd = (SelfKD(c.self_kd, self.epoch_objective) if c.self_kd is not None
                   else None)
        aux = self._auxiliary(model, device)
        try:
            if c.decoder_stage is not None:
                self._decoder_stage(model, train_loader, device, generator, loss_fn, aux)
            recent, steps, per_epoch, stopped = self._train(model, train_loader, device,
                                                            progress, loss_fn, callbacks,
                                                            self_kd, aux)
        finally:
            if aux is not None:
                aux.detach_body()
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

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None,
                 progress: Progress | None = None,
                 callbacks: Sequence[TrainCallback] | None = None) -> Result:
        """Build, train and score ``arch``; save its ``state_dict`` to ``checkpoint`` if given.
        ``progress(step, total)`` (default: the one given to the constructor) is called after
        every optimizer step; ``callbacks`` (default: the evaluator's) at every epoch's end.
        Never raises for a bad candidate: failures become failed results."""
        t0 = time.perf_counter()
        c = self.config
        progress = progress if progress is not None else self.progress
        costs: dict[str, float] = {}
        info: dict[str, Any] = {}
        try:
            arch = self.space.validate(arch)
            seed = arch_seed(self.seed, arch)
            with seeded_threads(c, seed, self.loader_workers()):
                model = self.task.build_model(self.space, arch)
                report = self.initialize(model, arch)
                if report is not None:
                    info["init"] = {"file": report.file, "part": report.part,
                                    "loaded": len(report.loaded), "missing": report.missing,
                                    "unexpected": report.unexpected,
                                    "mismatched": report.mismatched,
                                    "extracted": report.extracted}
                costs = model_costs(model, self.task.input_shape, latency=c.latency,
                                    repeats=c.latency_repeats, info=info)
                fit = self.fit(model, seed, progress=progress, callbacks=callbacks)
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
