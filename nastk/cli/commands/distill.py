"""`nastk distill CONFIG`: train one student architecture several times — with the teacher
and, for comparison, without it, from the same initial weights and data order (seeded by
``(seed, arch)``) — and report both on the task's held-out splits.

The teacher is loaded from a local weights-only checkpoint, or trained first with its own
``train`` settings and saved there. It is an architecture of a search space, or any model a
``factory`` (``module:function`` or ``file.py:function``) builds, such as a DeepLabV3+
ResNet-101 (``nastk.tasks.segmentation.deeplab_model:deeplabv3plus``); a factory's checkpoint must
exist. The config, the ALW schedule and the loss are
:mod:`nastk.training.distill`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from nastk.cli.commands.export import best_trial
from nastk.cli.console import results_console
from nastk.config.compose import build_task, import_plugins
from nastk.config.schema import load_config, parse_config
from nastk.core import registry
from nastk.core.errors import ConfigError, NastkError, StoreError
from nastk.core.weights import load_matching, read_weights, save_weights
from nastk.evaluation.preflight import check_task_data
from nastk.evaluation.train import TrainEvaluator, arch_seed, seeded_threads
from nastk.report.progress import ProgressView
from nastk.run import layout
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.task.contract import Task
from nastk.training.distill import (
    DistillConfig,
    ModelSpec,
    build_factory_model,
    check_pairwise_features,
    distill_loss_fn,
)
from nastk.training.step import Diverged


@dataclass
class DistillOutcome:
    """What :func:`run_distill` produced."""

    run_dir: Path
    metric: str
    teacher: dict[str, dict[str, float]]
    runs: list[dict[str, Any]]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    report: Path | None = None


def _resolve_arch(spec: ModelSpec, space: SearchSpace, what: str) -> Architecture:
    if spec.arch is not None:
        return space.validate(Architecture(spec.arch))
    src = Path(spec.arch_from)  # type: ignore[arg-type]
    if src.is_dir():
        if not (src / layout.STORE_FILE).is_file():
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
                progress: bool = True, overwrite: bool = False) -> DistillOutcome:
    """Train (or load) the teacher, then the student per seed with and without it; write
    ``distill.json``, ``report.md`` and the student weights into the run directory. A run
    directory that already holds a distillation is refused unless ``overwrite``."""
    console = console or Console(stderr=True)
    run_dir = config.resolved_run_dir()
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"run_dir {run_dir} is a file, not a folder; choose another --run-dir")
    if (run_dir / layout.DISTILL_JSON).exists() and not overwrite:
        raise StoreError(f"run directory {run_dir} already holds a distillation "
                         "(distill.json). Choose another run_dir (--run-dir), or pass "
                         "--overwrite to replace it.")
    import_plugins(config.plugins)
    task = build_task(config.task, loading=config.data)
    s_space = _space(config.student, "student")
    s_arch = _resolve_arch(config.student, s_space, "student")
    t_space: SearchSpace | None = None
    t_arch: Architecture | None = None
    if config.teacher.factory is None:
        t_space = _space(config.teacher, "teacher")
        t_arch = _resolve_arch(config.teacher, t_space, "teacher")
    elif not config.teacher.checkpoint.is_file():
        raise NastkError(f"teacher.checkpoint: {config.teacher.checkpoint} does not exist; a "
                         "factory teacher is not trained here: give its weights, or give the "
                         "teacher as a space architecture (e.g. space backbones, arch {body: "
                         "resnet101} with the task's head: deeplabv3plus), which is trained "
                         "and saved first; the two have the same tensor names")
    splits = [s for s in config.splits if s in task.splits()]
    if not splits:
        raise ConfigError(f"splits: none of {config.splits} exist; task {task.name!r} has "
                          f"{sorted(task.splits())}")
    metric = task.primary_metric
    distill_loss_fn(task, nn.Identity(), config.losses, config.alw)  # check names up front
    kd_options = {"pairwise": config.pairwise, "reference_scale": config.reference_scale}
    check_task_data(task, ["train", *splits], config.train.batch_size)
    run_dir.mkdir(parents=True, exist_ok=True)

    with ProgressView(console, enabled=progress) as view:
        def reporter(label: str) -> Callable[[int, int], None]:
            job = view.add(label, total=None, unit="steps", percent=0)
            return lambda step, total: view.update(job, completed=step, total=total)

        teacher = _teacher(config, task, t_space, t_arch, reporter)
        if config.losses.get("pairwise", 0.0) > 0:  # before any student trains
            with torch.random.fork_rng():
                check_pairwise_features(task.build_model(s_space, s_arch), teacher,
                                        config.pairwise)
        t_eval = TrainEvaluator(task, t_space or s_space, config.teacher.train,
                                where="teacher.train")
        teacher_scores = {s: t_eval.score(teacher, s) for s in splits}
        runs: list[dict[str, Any]] = []
        for seed in config.seeds:
            evaluator = TrainEvaluator(task, s_space, config.train, seed=seed)
            w_seed = arch_seed(seed, s_arch)
            modes = (["baseline"] if config.baseline else []) + ["kd"]
            for mode in modes:
                trace: list[tuple[float, float]] = []
                try:
                    with seeded_threads(config.train, w_seed, evaluator.loader_workers()):
                        model = task.build_model(s_space, s_arch)
                        evaluator.initialize(model, s_arch)  # train.init, when given
                        loss_fn = (None if mode == "baseline" else
                                   distill_loss_fn(task, teacher, config.losses, config.alw,
                                                   trace, student=model, **kd_options))
                        try:
                            fit = evaluator.fit(model, w_seed, loss_fn=loss_fn,
                                                progress=reporter(f"student seed {seed} {mode}"))
                        finally:
                            if loss_fn is not None:
                                loss_fn.release()  # type: ignore[attr-defined]
                        fitted, train_loss, steps = fit.metrics, fit.train_loss, fit.steps
                        scores = {s: fitted if s == config.train.eval_split
                                  else evaluator.score(model, s) for s in splits}
                except Diverged as err:
                    raise NastkError(f"student seed {seed} ({mode}) {err}; lower train.lr") \
                        from None
                ckpt = save_weights(model, run_dir / f"student_{mode}_seed{seed}.pt")
                runs.append({"seed": seed, "mode": mode, "train_loss": train_loss,
                             "train_loss_terms": fit.loss_terms, "steps": steps,
                             "scores": scores, "checkpoint": str(ckpt),
                             "teacher_share": [trace[0][1], trace[-1][1]] if trace else None})
    outcome = DistillOutcome(run_dir, metric, teacher_scores, runs)
    for mode in ("baseline", "kd"):
        for split in splits:
            vals = [r["scores"][split][metric] for r in runs if r["mode"] == mode]
            if vals:
                outcome.summary[f"{mode}/{split}"] = _summary(vals)
    record = {"config": config.model_dump(mode="json"), "student_arch": s_arch.as_dict(),
              "teacher_arch": t_arch.as_dict() if t_arch is not None else None,
              "metric": metric, "teacher": teacher_scores,
              "runs": runs, "summary": outcome.summary}
    tmp = run_dir / "distill.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(run_dir / layout.DISTILL_JSON)
    outcome.report = _write_report(run_dir, config, record, splits)
    return outcome


def _teacher(config: DistillConfig, task: Task, space: SearchSpace | None,
             arch: Architecture | None,
             reporter: Callable[[str], Callable[[int, int], None]]) -> nn.Module:
    spec = config.teacher
    path = spec.checkpoint
    if spec.factory is not None:
        model = build_factory_model(spec.factory, spec.options, task)
        load_matching(model, read_weights(path, "teacher checkpoint"),
                      f"teacher checkpoint {path}", f"teacher {spec.factory}")
        return _frozen(model, config)
    assert space is not None and arch is not None
    if not path.is_file():
        evaluator = TrainEvaluator(task, space, spec.train, seed=config.seeds[0],
                                   progress=reporter("teacher (training, no checkpoint yet)"))
        result = evaluator.evaluate(arch, checkpoint=path)
        if not result.ok:
            raise NastkError(f"training the teacher failed: {result.error}")
    model = task.build_model(space, arch)
    load_matching(model, read_weights(path, "teacher checkpoint"), f"teacher checkpoint {path}",
                  f"teacher {space.name!r} architecture {arch.key[:10]}")
    return _frozen(model, config)


def _frozen(model: nn.Module, config: DistillConfig) -> nn.Module:
    model.to(torch.device(config.train.device)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _alw_text(config: DistillConfig) -> str:
    alw = config.alw
    if alw.schedule == "aicsd":
        return (f"aicsd: alpha = progress; alpha x (gt + {alw.with_gt}) + (1 - alpha) x "
                f"{alw.fading}")
    return f"{alw.schedule} teacher share {alw.start} -> {alw.end}"


def _write_report(run_dir: Path, config: DistillConfig, record: dict[str, Any],
                  splits: list[str]) -> Path:
    metric = record["metric"]
    t = config.teacher
    teacher_name = t.factory if t.factory is not None else t.space.name  # type: ignore[union-attr]
    lines = [f"# nastk distill: {config.name}", "",
             f"Student `{config.student.space.name}` {json.dumps(record['student_arch'])}", "",
             f"Teacher `{teacher_name}` (checkpoint `{config.teacher.checkpoint}`): "
             + ", ".join(f"{s} {metric} {record['teacher'][s][metric]:.4f}" for s in splits), "",
             f"Losses {config.losses} (scale {config.reference_scale}); ALW "
             + (_alw_text(config) if config.alw.enabled else "off"), "",
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
    path = run_dir / layout.REPORT_MD
    path.write_text("\n".join(lines) + "\n")
    return path


# -- the command line ---------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk distill CONFIG`: run the distillation (flags override the config) and print the
    teacher's and the students' scores per split."""
    config = load_config(args.config, DistillConfig)
    updates = {k: v for k, v in (("run_dir", args.run_dir), ("seeds", args.seeds))
               if v is not None}
    if updates:
        config = parse_config({**config.model_dump(), **updates}, args.config, DistillConfig)
    outcome = run_distill(config, console=console, progress=not args.no_progress,
                          overwrite=args.overwrite)
    out = results_console()
    splits = list(outcome.teacher)
    metric = outcome.metric
    table = Table(title=f"distillation: {config.name} ({metric})")
    table.add_column("model")
    for s in splits:
        table.add_column(f"{s} {metric}", justify="right")
    table.add_row("teacher", *(f"{outcome.teacher[s][metric]:.4f}" for s in splits))
    for mode, label in (("baseline", "student, no KD"), ("kd", "student + KD")):
        cells = [outcome.summary.get(f"{mode}/{s}") for s in splits]
        if all(cells):
            table.add_row(f"{label} (n={len(config.seeds)})",
                          *(f"{c['mean']:.4f} ± {c['std']:.4f}" for c in cells))
    out.print(table)
    out.print(f"report: {outcome.report}")
    return 0
