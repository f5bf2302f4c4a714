"""Supernet training: sandwich sampling, in-place distillation, progressive shrinking,
BN recalibration, and resumable weights-only checkpoints."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from nastk.core.errors import NastkError
from nastk.core.objective import Objective
from nastk.core.streams import Stream
from nastk.core.weights import load_file, load_matching, save_state, write_atomic
from nastk.data.loaders import (
    calibration_batches,
    detach,
    loader_workers,
    make_loader,
    split_batch,
    to_device,
)
from nastk.nn.batchnorm import recalibrate_bn
from nastk.nn.dynamic_conv import anneal_temperature
from nastk.nn.supernet import SupernetModel
from nastk.nn.sync_batchnorm import global_statistics, synchronize_batchnorm
from nastk.run.identity import HasIdentity, identity_differences
from nastk.run.layout import RunLayout
from nastk.space.architecture import Architecture
from nastk.task.losses import combine_loss
from nastk.training.data_parallel import DataParallel
from nastk.training.optim import make_optimizer, param_groups
from nastk.training.precision import autocast, autocast_model, device_for
from nastk.training.pretrained import LoadReport, load_init
from nastk.training.schedule import cosine_lr, set_lr
from nastk.training.self_kd import SelfKD
from nastk.training.step import OptimizerStep, finite_loss
from nastk.training.supernet_config import Phase, SupernetTrainConfig
from nastk.training.threads import torch_threads

CHECKPOINT_FORMAT = "nastk.supernet/1"


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """``RUN_DIR/history.json``: the epochs' records, written atomically."""
    write_atomic(RunLayout(run_dir).history, json.dumps(history, indent=2).encode())


class PhaseSampler:
    """Samples sub-networks of a phase: unlocked dimensions at random, the rest largest."""

    def __init__(self, model: SupernetModel, unlock: list[str] | None) -> None:
        space = model.space
        names = [d.name for d in space.dimensions]
        bad = [u for u in (unlock or []) if u not in names]
        if bad:
            raise NastkError(f"phase unlocks unknown dimensions {bad}; space "
                             f"{space.name!r} has {names}")
        self.space = space
        self.unlock = set(names if unlock is None else unlock)
        self.largest = space.largest()
        self.smallest_in_phase = space.validate(
            {n: (space.smallest()[n] if n in self.unlock else self.largest[n]) for n in names})

    def sample(self, rng: np.random.Generator) -> Architecture:
        for _ in range(100):
            arch = self.space.sample(rng)
            cand = Architecture({n: (arch[n] if n in self.unlock else self.largest[n])
                                 for n in arch})
            if self.space.is_valid(cand):
                return cand
        raise NastkError(f"no valid sub-network found for unlocked dimensions {self.unlock}")


EpochCallback = Callable[[dict[str, Any]], None]
StepCallback = Callable[[int, int], None]


class SupernetTrainer:
    """Trains a :class:`SupernetModel` on its task's training split.

    Each step runs the sandwich (largest, smallest and ``n_random`` random sub-networks of the
    current phase; gradients accumulated, one optimizer step). The random sub-networks of a step
    are drawn from a generator seeded by (run seed, epoch, step), never from state a process
    carries, so data-parallel workers (``data_parallel``) train the same sub-networks at every
    step, and a restart on any number of workers draws what an uninterrupted run would. With
    in-place distillation the largest sub-network learns from the labels and every other
    sub-network from a blend of the labels and the largest's detached output.
    ``checkpoint_path`` receives a weights-only checkpoint after every epoch, from which
    :meth:`train` resumes. At the end of every epoch the largest and smallest sub-networks are
    scored on the validation split; ``config.objective`` (default: the task's primary metric)
    judges the largest's scores: Self-KD's teacher epochs and each record's ``best_epoch``. The
    optimiser, schedule and optimizer step are those of every nastk training loop
    (:mod:`nastk.training.optim`, :mod:`~nastk.training.schedule`,
    :mod:`~nastk.training.step`); :func:`nastk.config.supernet_trainer.build_supernet_trainer`
    builds a trainer from a supernet config.
    """

    def __init__(self, model: SupernetModel, config: SupernetTrainConfig, seed: int = 0,
                 checkpoint_path: Path | None = None,
                 identity: HasIdentity | None = None,
                 sampler_factory: Callable[[SupernetModel, list[str] | None],
                                           PhaseSampler] = PhaseSampler,
                 data_parallel: DataParallel | None = None) -> None:
        self.model = model
        self.data_parallel = data_parallel
        self.sync_bn = (data_parallel is not None and data_parallel.world > 1
                        and config.sync_batchnorm)
        if self.sync_bn:
            synchronize_batchnorm(model.net)
        self.config = config
        self.seed = seed
        self.checkpoint_path = checkpoint_path
        #: the config the checkpoints belong to (its identity is stored in each and checked
        #: against a checkpoint this trainer resumes from)
        self.identity_of = identity
        self.identity = identity.identity() if identity is not None else {}
        self.sampler_factory = sampler_factory
        self.device = device_for(config.device, config.precision, "training")
        self.model.to(self.device)
        self.task = model.task
        #: what the largest subnet's epochs are judged by: Self-KD's teacher epochs and the
        #: best epoch (``config.objective``; default: the task's primary metric and direction)
        self.objective = config.objective.resolve(self.task)
        self.train_set = self.task.splits()["train"]
        self.optimizer = make_optimizer(  # parameter names as in checkpoints: the net's
            param_groups(model.net, config.weight_decay, config.lr_mult, split_no_decay=True),
            config.optimizer, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov)
        self.stepper = OptimizerStep(model, self.optimizer, self.device, config.precision,
                                     config.grad_clip)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        #: fields the next epoch's record carries (how the run was resumed or restarted)
        self.pending_note: dict[str, Any] = {}
        self.init_report: LoadReport | None = None
        self.self_kd = (SelfKD(config.self_kd, self.objective)
                        if config.self_kd is not None else None)
        if config.init is not None:
            config.init.check(model.space)

    @property
    def workers(self) -> int:
        """The number of data-parallel workers this trainer is one of (1 alone)."""
        return 1 if self.data_parallel is None else self.data_parallel.world

    # -- schedule -----------------------------------------------------------------------------
    def _phase_at(self, epoch: int) -> tuple[int, Phase, int]:
        """(phase index, phase, epoch within phase) for a global epoch."""
        start = 0
        for i, phase in enumerate(self.config.schedule()):
            if epoch < start + phase.epochs:
                return i, phase, epoch - start
            start += phase.epochs
        raise IndexError(epoch)

    @property
    def global_batch(self) -> int:
        """Images in every step of :meth:`_loader` over all workers: full batches only, or the
        whole training split when it is smaller than one batch."""
        return min(self.config.batch_size, len(self.train_set))

    def _loader(self, epoch: int) -> DataLoader:
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        dp = self.data_parallel
        return make_loader(self.task, self.train_set, self.config.batch_size, shuffle=True,
                           generator=gen,
                           drop_last=len(self.train_set) > self.config.batch_size,
                           shard=None if dp is None else (dp.rank, dp.world))

    def calibration_batches(self) -> list[torch.Tensor]:
        """A fixed set of training batches for BN recalibration (the same for every arch)."""
        return calibration_batches(self.task, self.train_set, self.config.batch_size,
                                   self.config.bn_calib_batches,
                                   Stream.BN_CALIBRATION.seed(self.seed))

    def initialize(self) -> LoadReport | None:
        """Load ``config.init``'s weights into the supernet (before the first epoch), print
        the load report and keep it (in every checkpoint, and as ``init_report.json`` beside
        the checkpoint)."""
        if self.config.init is None:
            return None
        self.init_report = load_init(self.model.net, self.config.init, space=self.model.space)
        print(self.init_report.summary(), file=sys.stderr)
        if self.checkpoint_path is not None:
            write_atomic(RunLayout(self.checkpoint_path.parent).init_report,
                         json.dumps(self.init_report.to_dict(), indent=2).encode())
        return self.init_report

    # -- one step -----------------------------------------------------------------------------
    def step_rng(self, step: int) -> np.random.Generator:
        """The generator of the random sub-networks of ``step`` of the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, step])

    def _subnets(self, sampler: PhaseSampler,
                 rng: np.random.Generator) -> list[tuple[str, Architecture]]:
        cfg = self.config
        nets: list[tuple[str, Architecture]] = []
        if cfg.sampling == "sandwich":
            nets.append(("largest", sampler.largest))
            nets.append(("smallest", sampler.smallest_in_phase))
        nets += [("random", sampler.sample(rng)) for _ in range(cfg.n_random)]
        return nets

    def train_step(self, x: torch.Tensor, y: Any, sampler: PhaseSampler,
                   rng: np.random.Generator | None = None) -> dict[str, float]:
        """One optimizer step over the sandwich (random sub-networks from ``rng``, default the
        trainer's own generator); returns the task loss of each kind of subnet (``kind``) and of
        each named loss term (``kind_term``). As a data-parallel worker, ``x`` and ``y`` are this
        worker's shard of a step of :meth:`_loader` (:attr:`global_batch` images over all
        workers) and the losses its shard's."""
        cfg = self.config
        self.model.train()
        self.stepper.zero_grad()
        teacher: Any = None
        losses: dict[str, list[float]] = {}
        dp = self.data_parallel
        parallel = dp is not None and dp.world > 1
        # this shard's share of the step's global batch (no collective: the batch is known)
        scale = dp.loss_scale(len(x), self.global_batch) if dp is not None and parallel else 1.0

        def synced() -> contextlib.AbstractContextManager[None]:
            return global_statistics(dp.group) if self.sync_bn and dp is not None \
                else contextlib.nullcontext()

        for kind, arch in self._subnets(sampler, self.rng if rng is None else rng):
            self.model.set_active(arch)
            with synced(), self.stepper.autocast():
                out = self.model(x)
                task_loss, terms = combine_loss(self.task.loss(out, y))
                if kind == "largest" or teacher is None or not cfg.inplace_distill:
                    loss = task_loss
                else:
                    kd = self.task.distillation_loss(out, teacher)
                    loss = (1 - cfg.distill_weight) * task_loss + cfg.distill_weight * kd
            finite_loss(loss, f"epoch {self.epoch}", what=f"{kind} subnet loss",
                        run="supernet training", hint="lower training.lr or set "
                                                      "training.grad_clip")
            with synced():
                self.stepper.backward(loss * scale if scale != 1.0 else loss)
            if kind == "largest" and cfg.inplace_distill:
                teacher = detach(out)
            losses.setdefault(kind, []).append(float(task_loss.detach()))
            for name, term in terms.items():
                losses.setdefault(f"{kind}_{name}", []).append(float(term.detach()))
        if parallel:
            assert dp is not None
            dp.average_gradients(list(self.model.parameters()))
        self.stepper.step()  # skipped by fp16 loss scaling on inf/nan gradients
        return {k: float(np.mean(v)) for k, v in losses.items()}

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate_arch(self, arch: Architecture, split: str = "val",
                      calib: list[torch.Tensor] | None = None) -> dict[str, float]:
        """Task metrics of one sub-network after BN recalibration on training batches."""
        self.model.set_active(arch)
        with autocast(self.device, self.config.precision):
            recalibrate_bn(self.model, calib if calib is not None
                           else self.calibration_batches(), device=self.device)
        loader = make_loader(self.task, self.task.splits()[split], 256)
        return self.task.evaluate(autocast_model(self.model, self.device,
                                                 self.config.precision), loader)

    # -- the loop -----------------------------------------------------------------------------
    def train(self, resume: bool = False, on_epoch: EpochCallback | None = None,
              on_step: StepCallback | None = None) -> list[dict[str, Any]]:
        """Train until the schedule ends (continuing from the checkpoint if ``resume``)."""
        if resume:
            if self.checkpoint_path is None or not self.checkpoint_path.is_file():
                raise NastkError(f"--resume: no checkpoint at {self.checkpoint_path}")
            self.load_checkpoint(self.checkpoint_path)
            self.pending_note = self.pending_note or {"resumed": {
                "from_epoch": self.epoch, "workers": self.workers}}
        elif self.epoch == 0:
            self.initialize()
        dp = self.data_parallel
        if dp is not None and dp.world > 1:  # every worker starts from rank 0's weights
            dp.broadcast_state(self.model.net)
        with torch_threads(self.config.num_threads,
                           loader_workers=loader_workers(self.task, self.train_set)):
            total = self.config.total_epochs
            while self.epoch < total:
                self._train_epoch(on_epoch, on_step)
        return self.history

    def _train_epoch(self, on_epoch: EpochCallback | None,
                     on_step: StepCallback | None) -> None:
        index, phase, within = self._phase_at(self.epoch)
        sampler = self.sampler_factory(self.model, phase.unlock)
        if within == 0 and index > 0 and self.config.reorganize_channels_at_phase:
            self.model.body.reorganize_channels()
        loader = self._loader(self.epoch)
        n_steps = len(loader)
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        lr = 0.0
        cfg = self.config
        def teacher_largest(teacher: torch.nn.Module) -> None:
            teacher.body.set_active(sampler.largest)

        images = 0
        started = time.perf_counter()
        for step, batch in enumerate(loader):
            x, y = split_batch(batch)
            images += len(x)
            lr = set_lr(self.optimizer, cosine_lr(phase.lr or cfg.lr,
                                                  (within + step / n_steps) / phase.epochs))
            anneal_temperature(self.model, (self.epoch + step / n_steps) / cfg.temperature_epochs,
                               cfg.temperature_start, cfg.temperature_end)
            x, y = x.to(self.device), to_device(y, self.device)
            if self.self_kd is not None:  # the teacher's largest subnet, for every subnet
                y = self.self_kd.blend(self.task, y, x,
                                       (self.epoch + step / n_steps) / cfg.total_epochs,
                                       prepare=teacher_largest)
            losses = self.train_step(x, y, sampler, self.step_rng(step))
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
                counts[k] = counts.get(k, 0) + 1
            if on_step is not None:
                on_step(step + 1, n_steps)
        train_s = time.perf_counter() - started
        record: dict[str, Any] = {"epoch": self.epoch + 1, "phase": index + 1, "lr": lr}
        train_losses = {f"train_loss_{k}": sums[k] / counts[k] for k in sums}
        dp = self.data_parallel
        if dp is not None and dp.world > 1:  # each worker saw its shards: the global mean
            train_losses = dp.mean(train_losses)
            images = int(dp.sum(images))
        record.update(train_losses)
        record["workers"] = self.workers
        # the epoch's training steps alone (no evaluation): images of all workers per second
        record["train_s"] = train_s
        record["images_per_s"] = images / train_s if train_s > 0 else 0.0
        if self.pending_note:
            record.update(self.pending_note)
            self.pending_note = {}
        # the primary metric always; the objective's too when it is another one
        shown = dict.fromkeys((self.task.primary_metric, self.objective.metric))
        if dp is None or dp.is_main:  # rank 0 recalibrates and evaluates alone
            calib = self.calibration_batches()
            for kind, arch in (("largest", sampler.largest),
                               ("smallest", sampler.smallest_in_phase)):
                scores = self.evaluate_arch(arch, calib=calib)
                for name in shown:
                    record[f"val_{name}_{kind}"] = self._reported(scores, name)
                if "loss" in scores:
                    record[f"val_loss_{kind}"] = scores["loss"]
                if kind == "largest" and self.self_kd is not None and \
                        self.self_kd.config.score == "composite":
                    record["val_self_kd_score_largest"] = self.self_kd.score_of(scores)
        if dp is not None and dp.world > 1:  # everyone continues from rank 0's state
            dp.broadcast_state(self.model.net)
            record = dp.broadcast(record)
        if self.self_kd is not None:
            record["self_kd_teacher_epochs"] = len(self.self_kd.improved_epochs) + int(
                self.self_kd.end_epoch(self.epoch + 1, record.get(
                    "val_self_kd_score_largest", record[f"val_{self.objective.metric}_largest"]),
                    self.model.net))
        record["best_epoch"] = best_epoch([*self.history, record], self.objective)
        self.epoch += 1
        self.history.append(record)
        if self.checkpoint_path is not None:
            self.save_checkpoint(self.checkpoint_path)
        if on_epoch is not None:
            on_epoch(record)

    def _reported(self, scores: dict[str, float], name: str) -> float:
        """``scores[name]``, or an error naming what the task reports (a task that declares no
        metrics is not checked before training)."""
        if name not in scores:
            raise NastkError(f"objective.metric: task {self.task.name!r} reports no {name!r} "
                             f"for a sub-network; it reports {sorted(scores)}")
        return scores[name]

    # -- checkpoints --------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "identity": json.dumps(self.identity, sort_keys=True),
            "model": self.model.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "rng": self.rng.bit_generator.state,
            "scaler": self.stepper.scaling.state_dict(),
            "history": json.dumps(self.history),
            "objective": json.dumps({"metric": self.objective.metric,
                                     "direction": self.objective.direction}),
            "best_epoch": best_epoch(self.history, self.objective),
            "init_report": json.dumps(self.init_report.to_dict() if self.init_report else None),
            **({"self_kd": {**self.self_kd.average.state_dict(),
                            "best": json.dumps(self.self_kd.best),
                            "epochs": json.dumps(self.self_kd.improved_epochs)}}
               if self.self_kd is not None else {}),
        }

    def save_checkpoint(self, path: Path) -> None:
        save_state(self.state(), path)  # atomic: a kill never leaves a half-written checkpoint

    def load_checkpoint(self, path: Path) -> None:
        state = read_checkpoint(path)
        differs = (identity_differences(json.loads(state["identity"]), self.identity_of)
                   if self.identity_of is not None else None)
        if differs:
            raise NastkError(f"--resume: {path} was trained with a different config (differs "
                             f"{differs}); use the original config or a new run_dir")
        load_supernet_weights(self.model, state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]
        if state.get("scaler"):
            self.stepper.scaling.load_state_dict(state["scaler"])
        self.history = json.loads(state["history"])
        if self.self_kd is not None and "self_kd" in state:
            kd = state["self_kd"]
            self.self_kd.average.load_state_dict(kd, self.model.net)
            self.self_kd.best = json.loads(kd["best"])
            self.self_kd.improved_epochs = json.loads(kd["epochs"])


def best_epoch(history: Sequence[Mapping[str, Any]], objective: Objective) -> int | None:
    """The epoch (from 1) of ``history`` whose largest sub-network scored best by
    ``objective`` on the validation split (the first of equal ones); ``None`` before any."""
    key = f"val_{objective.metric}_largest"
    best = objective.best(history, key=lambda record: record.get(key))
    return None if best is None else int(best["epoch"])


def best_epoch_text(history: Sequence[Mapping[str, Any]], objective: Objective) -> str:
    """One line naming the best epoch of ``history`` by ``objective`` and its value."""
    epoch = best_epoch(history, objective)
    judged = f"{objective.metric} ({objective.direction}) of the largest subnet"
    if epoch is None:
        return f"best epoch: none has a value of {judged}"
    record = next(r for r in history if r["epoch"] == epoch)
    return (f"best epoch {epoch} of {len(history)} by {judged}: "
            f"{record[f'val_{objective.metric}_largest']:.4g}")



def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a supernet checkpoint (weights only) and check its format."""
    p = Path(path)
    state = load_file(p, "supernet checkpoint",
                      "; train one with `nastk supernet train CONFIG` or fix the path")
    if not isinstance(state, dict) or "model" not in state:
        raise NastkError(f"{p} is not a nastk supernet checkpoint (no 'model' entry)")
    return state


def load_supernet_weights(model: SupernetModel, state_dict: dict[str, torch.Tensor],
                          source: str) -> None:
    """Load ``state_dict`` into the model's network, naming the first mismatched tensor."""
    load_matching(model.net, state_dict, source, f"search space {model.space.name!r}")
