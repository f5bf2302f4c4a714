"""Knowledge distillation for any task: a frozen teacher, the task's distillation terms, and
Adaptive Loss Weighting (ALW) that moves weight from the teacher to the ground truth.

``nastk distill CONFIG`` trains one student architecture several times — with the teacher and,
for comparison, without it, from the same initial weights and data order (seeded by
``(seed, arch)``) — and reports both on the task's held-out splits. The teacher is loaded from
a local weights-only checkpoint, or trained first with its own ``train`` settings and saved
there. It stays in eval mode under ``torch.no_grad()``: its batch-norm statistics never drift
and no gradient reaches it.

Loss of a batch at training progress ``p`` (fraction of steps done), with the task's loss
``L_gt``, the configured terms ``L_k`` weighted by ``losses: {k: lambda_k}`` and
``KD = sum_k lambda_k L_k``:

- ALW off: ``L = L_gt + KD``;
- ALW on:  ``L = (1 - a(p)) L_gt + a(p) KD``, where the teacher's share ``a(p)`` follows the
  configured schedule from ``start`` to ``end`` (AICSD fades the teacher out linearly).
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from nastk import registry
from nastk.config import PluginRef
from nastk.errors import ConfigError, NastkError
from nastk.evaluation.train import Diverged, TrainConfig, TrainEvaluator, arch_seed, seeded_threads
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.task import Task
from nastk.weights import load_matching, read_weights, save_weights

__all__ = ["ALWSchedule", "DistillConfig", "DistillOutcome", "ModelSpec", "TeacherSpec",
           "distill_loss_fn", "run_distill"]


class ALWSchedule(BaseModel):
    """Adaptive Loss Weighting: the teacher's share ``a(p)`` of the loss over training
    progress ``p`` in [0, 1]."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="off: L = L_gt + KD (no fading)")
    schedule: Literal["linear", "cosine", "step", "constant"] = "linear"
    start: float = Field(0.9, ge=0.0, le=1.0, description="teacher share at the start")
    end: float = Field(0.1, ge=0.0, le=1.0, description="teacher share at the end")
    hold: float = Field(0.0, ge=0.0, lt=1.0,
                        description="fraction of training held at `start` before moving "
                                    "(linear, cosine); for step: where the share drops to `end`")

    def teacher_weight(self, progress: float) -> float:
        """``a(progress)``: the teacher term's share of the loss."""
        p = min(max(float(progress), 0.0), 1.0)
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
    not exist yet."""

    checkpoint: Path = Field(description="weights-only state dict; trained and written here "
                                         "first when missing")
    train: TrainConfig = Field(default_factory=TrainConfig,
                               description="used only to train a missing teacher")


class DistillConfig(BaseModel):
    """``nastk distill CONFIG``: train a student with a teacher's help, and without it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("distill", min_length=1)
    run_dir: Path | None = Field(None, description="defaults to runs/<name>")
    plugins: list[str] = Field(default_factory=list)
    task: PluginRef
    student: ModelSpec
    teacher: TeacherSpec
    losses: dict[str, float] = Field(
        default_factory=lambda: {"kd": 1.0},
        description="distillation terms of the task and their weights (lambda)")
    alw: ALWSchedule = Field(default_factory=ALWSchedule)
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

    def resolved_run_dir(self) -> Path:
        return self.run_dir if self.run_dir is not None else Path("runs") / self.name


@dataclass
class DistillOutcome:
    """What :func:`run_distill` produced."""

    run_dir: Path
    metric: str
    teacher: dict[str, dict[str, float]]
    runs: list[dict[str, Any]]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    report: Path | None = None


def distill_loss_fn(task: Task, teacher: nn.Module, losses: dict[str, float],
                    alw: ALWSchedule, trace: list[tuple[float, float]] | None = None
                    ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]:
    """The training loss with a teacher (see the module docstring); ``trace`` collects
    ``(progress, teacher share)`` pairs."""
    available = task.kd_losses()
    unknown = sorted(set(losses) - set(available))
    if unknown:
        raise ConfigError(f"losses: {unknown} not offered by task {task.name!r}; it offers "
                          f"{sorted(available)}")
    terms = [(available[k], w) for k, w in losses.items() if w > 0]

    def loss_fn(out: torch.Tensor, targets: torch.Tensor, inputs: torch.Tensor,
                progress: float) -> torch.Tensor:
        with torch.no_grad():
            t_out = teacher(inputs)
        gt = task.loss(out, targets)
        kd = sum((w * f(out, t_out) for f, w in terms), torch.zeros((), device=out.device))
        if not alw.enabled:
            return gt + kd
        a = alw.teacher_weight(progress)
        if trace is not None:
            trace.append((progress, a))
        return (1.0 - a) * gt + a * kd

    return loss_fn


def _resolve_arch(spec: ModelSpec, space: SearchSpace, what: str) -> Architecture:
    if spec.arch is not None:
        return space.validate(Architecture(spec.arch))
    src = Path(spec.arch_from)  # type: ignore[arg-type]
    if src.is_dir():
        from nastk.export import best_trial

        if not (src / "store.sqlite").is_file():
            raise NastkError(f"{what}.arch_from: {src} is not a search run (no store.sqlite); "
                             "run the search first or give `arch`")
        _, trial = best_trial(src)
        return space.validate(trial.arch)
    if src.is_file():
        try:
            record = json.loads(src.read_text())
        except json.JSONDecodeError as err:
            raise NastkError(f"{what}.arch_from: {src} is not JSON: {err}") from None
        arch = record.get("arch", record) if isinstance(record, dict) else record
        return space.validate(Architecture(arch))
    raise NastkError(f"{what}.arch_from: {src} does not exist; run the search that writes it "
                     "first (e.g. `nastk search examples/segmentation_rl.yaml`) or give `arch`")


def _space(spec: ModelSpec, what: str) -> SearchSpace:
    return registry.instantiate(registry.SEARCH_SPACES, spec.space.name, spec.space.options,
                                where=f"{what}.space.options")


def _summary(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def run_distill(config: DistillConfig, *, console: Console | None = None,
                progress: bool = True) -> DistillOutcome:
    """Train (or load) the teacher, then the student per seed with and without it; write
    ``distill.json``, ``report.md`` and the student weights into the run directory."""
    from nastk.experiment import import_plugins

    console = console or Console(stderr=True)
    import_plugins(config.plugins)
    task = registry.instantiate(registry.TASKS, config.task.name, config.task.options,
                                where="task.options")
    s_space, t_space = _space(config.student, "student"), _space(config.teacher, "teacher")
    s_arch = _resolve_arch(config.student, s_space, "student")
    t_arch = _resolve_arch(config.teacher, t_space, "teacher")
    splits = [s for s in config.splits if s in task.splits()]
    if not splits:
        raise ConfigError(f"splits: none of {config.splits} exist; task {task.name!r} has "
                          f"{sorted(task.splits())}")
    metric = task.primary_metric
    run_dir = config.resolved_run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    distill_loss_fn(task, nn.Identity(), config.losses, config.alw)  # check names up front

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not progress) as bar:
        def reporter(label: str) -> Callable[[int, int], None]:
            job = bar.add_task(label, total=None)
            return lambda step, total: bar.update(job, completed=step, total=total)

        teacher = _teacher(config, task, t_space, t_arch, reporter)
        t_eval = TrainEvaluator(task, t_space, config.teacher.train)
        teacher_scores = {s: t_eval.score(teacher, s) for s in splits}
        runs: list[dict[str, Any]] = []
        for seed in config.seeds:
            evaluator = TrainEvaluator(task, s_space, config.train, seed=seed)
            w_seed = arch_seed(seed, s_arch)
            modes = (["baseline"] if config.baseline else []) + ["kd"]
            for mode in modes:
                trace: list[tuple[float, float]] = []
                loss_fn = (None if mode == "baseline" else
                           distill_loss_fn(task, teacher, config.losses, config.alw, trace))
                try:
                    with seeded_threads(config.train, w_seed):
                        model = task.build_model(s_space, s_arch)
                        fitted, train_loss, steps = evaluator.fit(
                            model, w_seed, loss_fn=loss_fn,
                            progress=reporter(f"student seed {seed} {mode}"))
                        scores = {s: fitted if s == config.train.eval_split
                                  else evaluator.score(model, s) for s in splits}
                except Diverged as err:
                    raise NastkError(f"student seed {seed} ({mode}) {err}; lower train.lr") \
                        from None
                ckpt = save_weights(model, run_dir / f"student_{mode}_seed{seed}.pt")
                runs.append({"seed": seed, "mode": mode, "train_loss": train_loss,
                             "steps": steps, "scores": scores, "checkpoint": str(ckpt),
                             "teacher_share": [trace[0][1], trace[-1][1]] if trace else None})
    outcome = DistillOutcome(run_dir, metric, teacher_scores, runs)
    for mode in ("baseline", "kd"):
        for split in splits:
            vals = [r["scores"][split][metric] for r in runs if r["mode"] == mode]
            if vals:
                outcome.summary[f"{mode}/{split}"] = _summary(vals)
    record = {"config": config.model_dump(mode="json"), "student_arch": s_arch.as_dict(),
              "teacher_arch": t_arch.as_dict(), "metric": metric, "teacher": teacher_scores,
              "runs": runs, "summary": outcome.summary}
    tmp = run_dir / "distill.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(run_dir / "distill.json")
    outcome.report = _write_report(run_dir, config, record, splits)
    return outcome


def _teacher(config: DistillConfig, task: Task, space: SearchSpace, arch: Architecture,
             reporter: Callable[[str], Callable[[int, int], None]]) -> nn.Module:
    spec = config.teacher
    path = spec.checkpoint
    if not path.is_file():
        evaluator = TrainEvaluator(task, space, spec.train, seed=config.seeds[0],
                                   progress=reporter("teacher (training, no checkpoint yet)"))
        result = evaluator.evaluate(arch, checkpoint=path)
        if not result.ok:
            raise NastkError(f"training the teacher failed: {result.error}")
    model = task.build_model(space, arch)
    load_matching(model, read_weights(path, "teacher checkpoint"), f"teacher checkpoint {path}",
                  f"teacher {space.name!r} architecture {arch.key[:10]}")
    model.to(torch.device(config.train.device)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _write_report(run_dir: Path, config: DistillConfig, record: dict[str, Any],
                  splits: list[str]) -> Path:
    metric = record["metric"]
    lines = [f"# nastk distill: {config.name}", "",
             f"Student `{config.student.space.name}` {json.dumps(record['student_arch'])}", "",
             f"Teacher `{config.teacher.space.name}` (checkpoint `{config.teacher.checkpoint}`): "
             + ", ".join(f"{s} {metric} {record['teacher'][s][metric]:.4f}" for s in splits), "",
             f"Losses {config.losses}; ALW "
             + (f"{config.alw.schedule} teacher share {config.alw.start} -> {config.alw.end}"
                if config.alw.enabled else "off"), "",
             "| seed | mode | " + " | ".join(f"{s} {metric}" for s in splits) + " |",
             "| --- | --- | " + " | ".join("---" for _ in splits) + " |"]
    for r in record["runs"]:
        lines.append(f"| {r['seed']} | {r['mode']} | "
                     + " | ".join(f"{r['scores'][s][metric]:.4f}" for s in splits) + " |")
    lines += ["", "| mode | " + " | ".join(f"{s} {metric} (mean ± std)" for s in splits) + " |",
              "| --- | " + " | ".join("---" for _ in splits) + " |"]
    for mode in ("baseline", "kd"):
        cells = [record["summary"].get(f"{mode}/{s}") for s in splits]
        if all(cells):
            lines.append(f"| {mode} | " + " | ".join(f"{c['mean']:.4f} ± {c['std']:.4f}"
                                                     for c in cells) + " |")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
