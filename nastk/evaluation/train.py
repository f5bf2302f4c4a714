"""Score an architecture by training it from scratch on a task."""

from __future__ import annotations

import hashlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, TensorDataset

from nastk.cost import model_costs
from nastk.evaluation.base import format_error
from nastk.evaluation.result import Result
from nastk.space.architecture import Architecture
from nastk.weights import save_weights

if TYPE_CHECKING:
    from nastk.space.search_space import SearchSpace
    from nastk.task import Task

__all__ = ["Diverged", "LossFn", "TrainConfig", "TrainEvaluator", "arch_seed"]

Progress = Callable[[int, int], None]
#: ``loss_fn(outputs, targets, inputs, progress)`` with ``progress`` in [0, 1): the fraction of
#: training done before this step. Replaces the task's loss (distillation uses it).
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


class TrainConfig(BaseModel):
    """How each candidate is trained (``evaluator.train`` in a config)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(5, ge=1, description="passes over the training split")
    steps: int | None = Field(None, ge=1,
                              description="total optimizer steps; overrides epochs when set")
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "sgd", "adamw"] = "adam"
    lr: float = Field(3e-3, gt=0.0, description="peak learning rate (cosine-annealed to 0)")
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, le=1.0, description="SGD momentum")
    grad_clip: float | None = Field(None, gt=0.0, description="max gradient norm")
    device: str = Field("cpu", description="torch device to train on, e.g. 'cpu' or 'cuda'")
    num_threads: int | None = Field(
        1, ge=1, description="torch CPU threads per candidate (None: torch default, all cores);"
        " one thread is fastest for these small models and never oversubscribes the CPU")
    latency: bool = Field(True, description="measure CPU latency_ms of each candidate")
    latency_repeats: int = Field(10, ge=1)
    eval_split: str = Field("val", min_length=1, description="split scored after training")
    recalibrate_bn: bool = Field(
        True, description="after training, recompute batch-norm running statistics with one "
        "pass over the training split (short runs otherwise leave them far off)")


class Diverged(Exception):
    """The training loss became NaN or infinite."""


def arch_seed(seed: int, arch: Architecture) -> int:
    """A 63-bit seed derived from the run seed and the architecture's key (stable across
    processes, unlike ``hash``)."""
    digest = hashlib.sha256(f"{seed}:{arch.key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TrainEvaluator:
    """Trains each architecture from scratch on ``task`` and scores it on ``config.eval_split``.

    Training is deterministic per architecture: weights, data order and dropout are seeded from
    ``(seed, arch.key)`` (the global torch RNG is left untouched). Metrics are the task's
    metrics on the evaluation split plus ``train_loss`` (mean loss over the last epoch's worth
    of steps), measured after batch-norm statistics are recomputed on the training split (see
    ``recalibrate_bn``); costs are ``params``, ``flops`` and (unless ``config.latency`` is false)
    ``latency_ms``. A diverging loss, or any exception while building or training, gives a
    failed :class:`Result` instead of raising.
    """

    def __init__(self, task: Task, space: SearchSpace, config: TrainConfig | None = None,
                 seed: int = 0, progress: Progress | None = None) -> None:
        self.task = task
        self.space = space
        self.config = config if config is not None else TrainConfig()
        self.seed = int(seed)
        self.progress = progress

    def __repr__(self) -> str:
        return f"TrainEvaluator(task={self.task!r}, space={self.space.name!r}, seed={self.seed})"

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
        if isinstance(dataset, TensorDataset):
            # tensors index with a list of indices: one gather per batch instead of a collate
            sampler = BatchSampler(RandomSampler(dataset, generator=generator), bs, drop_last)
            return DataLoader(dataset, sampler=sampler, batch_size=None)
        return DataLoader(dataset, batch_size=bs, shuffle=True, generator=generator,
                          drop_last=drop_last)

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        bs = max(self.config.batch_size, 256)
        if isinstance(dataset, TensorDataset):
            n = len(dataset)
            batches = [list(range(i, min(i + bs, n))) for i in range(0, n, bs)]
            return DataLoader(dataset, sampler=batches, batch_size=None)
        return DataLoader(dataset, batch_size=bs, shuffle=False)

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in model.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum,
                                   weight_decay=c.weight_decay, foreach=True)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, foreach=True)
        return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay, foreach=True)

    # -- training -----------------------------------------------------------------------------
    def _recalibrate_bn(self, model: nn.Module, dataset: Dataset, device: torch.device) -> None:
        """Reset batch-norm running statistics and re-estimate them as the exact average over
        one pass of ``dataset`` (weights are unchanged)."""
        norms = [m for m in model.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not norms:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average
        model.train()
        try:
            with torch.no_grad():
                for xb, _ in self._eval_loader(dataset):
                    if len(xb) > 1:
                        model(xb.to(device))
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum

    def _train(self, model: nn.Module, loader: DataLoader, device: torch.device,
               progress: Progress | None, loss_fn: LossFn | None = None) -> tuple[float, int]:
        """Train in place; returns (train_loss, steps). Raises :class:`Diverged`."""
        c = self.config
        per_epoch = len(loader)
        if per_epoch == 0:
            raise ValueError("the training split is empty")
        total = c.steps if c.steps is not None else c.epochs * per_epoch
        optimizer = self._optimizer(model)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        recent: deque[float] = deque(maxlen=min(per_epoch, total))
        model.train()
        step = 0
        while step < total:
            for xb, yb in loader:
                xb, yb = xb.to(device), yb.to(device)
                out = model(xb)
                loss = (self.task.loss(out, yb) if loss_fn is None
                        else loss_fn(out, yb, xb, step / total))
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise Diverged(f"diverged: loss became {value} at step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if c.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                optimizer.step()
                schedule.step()
                step += 1
                recent.append(value)
                if progress is not None:
                    progress(step, total)
                if step >= total:
                    break
        return sum(recent) / len(recent), step

    def fit(self, model: nn.Module, seed: int, *, loss_fn: LossFn | None = None,
            progress: Progress | None = None) -> tuple[dict[str, float], float, int]:
        """Train ``model`` in place (data order seeded by ``seed``), recalibrate batch norm if
        configured, and score it on ``config.eval_split``. Returns ``(metrics, train_loss,
        steps)``. Raises :class:`Diverged`; the caller sets threads, device and weight seed."""
        c = self.config
        device = torch.device(c.device)
        model.to(device)
        generator = torch.Generator().manual_seed(seed)
        train_loader = self._train_loader(self._split("train"), generator)
        train_loss, steps = self._train(model, train_loader, device, progress, loss_fn)
        if c.recalibrate_bn:
            self._recalibrate_bn(model, self._split("train"), device)
        metrics = dict(self.task.evaluate(model, self._eval_loader(self._split(c.eval_split))))
        return metrics, train_loss, steps

    def score(self, model: nn.Module, split: str) -> dict[str, float]:
        """The task's metrics of ``model`` on ``split`` (no training)."""
        return dict(self.task.evaluate(model, self._eval_loader(self._split(split))))

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None,
                 progress: Progress | None = None) -> Result:
        """Build, train and score ``arch``; save its ``state_dict`` to ``checkpoint`` if given.
        ``progress(step, total)`` (default: the one given to the constructor) is called after
        every optimizer step. Never raises for a bad candidate: failures become failed
        results."""
        t0 = time.perf_counter()
        c = self.config
        progress = progress if progress is not None else self.progress
        costs: dict[str, float] = {}
        try:
            arch = self.space.validate(arch)
            seed = arch_seed(self.seed, arch)
            with seeded_threads(c, seed):
                model = self.task.build_model(self.space, arch)
                costs = model_costs(model, self.task.input_shape, latency=c.latency,
                                    repeats=c.latency_repeats)
                metrics, train_loss, steps = self.fit(model, seed, progress=progress)
            metrics["train_loss"] = train_loss
            bad = {k: v for k, v in metrics.items() if not math.isfinite(float(v))}
            if bad:
                return Result.failed(f"non-finite metrics {bad}", costs,
                                     time.perf_counter() - t0)
            if checkpoint is not None:
                save_weights(model, checkpoint)
        except Diverged as err:
            return Result.failed(str(err), costs, time.perf_counter() - t0)
        except Exception as err:  # a broken candidate must not stop the search
            return Result.failed(format_error(err), costs, time.perf_counter() - t0)
        return Result.complete(metrics, costs, time.perf_counter() - t0,
                               info={"steps": steps, "seed": seed})


@contextmanager
def seeded_threads(config: TrainConfig, seed: int) -> Iterator[None]:
    """Run a block with ``config.num_threads`` torch threads and the torch RNG (CPU and the
    configured CUDA device) forked and seeded with ``seed``; the global RNG is restored."""
    device = torch.device(config.device)
    rng_devices = ([device.index if device.index is not None else torch.cuda.current_device()]
                   if device.type == "cuda" else [])
    with _threads(config.num_threads), torch.random.fork_rng(devices=rng_devices):
        torch.manual_seed(seed)
        yield
