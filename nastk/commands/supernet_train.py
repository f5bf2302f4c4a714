"""`nastk supernet train`: train a supernet from a config into a run directory, resumably."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nastk.build import build_supernet_model
from nastk.config import SupernetConfig
from nastk.errors import ConfigError, StoreError
from nastk.supernet.pruning import supernet_sampler_factory
from nastk.supernet.training import SupernetTrainer

CHECKPOINT_NAME = "supernet.pt"


@dataclass
class SupernetOutcome:
    run_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]]


def train_supernet(config: SupernetConfig, *, resume: bool = False,
                   console: Console | None = None, progress: bool = True) -> SupernetOutcome:
    """Train (or resume) the supernet a config describes; the checkpoint is rewritten
    atomically after every epoch, so a killed run resumes from its last finished epoch."""
    import torch

    console = console or Console(stderr=True)
    run_dir = config.resolved_run_dir()
    ckpt = run_dir / CHECKPOINT_NAME
    if ckpt.exists() and not resume:
        raise StoreError(f"{ckpt} already exists. Pass --resume to continue that training, or "
                         "choose another run_dir (--run-dir).")
    torch.manual_seed(config.seed)
    model = build_supernet_model(config)
    for name, phase in enumerate(config.training.schedule()):
        names = [d.name for d in model.space.dimensions]
        bad = [u for u in phase.unlock or [] if u not in names]
        if bad:
            raise ConfigError(f"training.phases.{name}.unlock: unknown dimensions {bad}; space "
                              f"{model.space.name!r} has {names}")
    extra: dict[str, Any] = {}
    if config.path_filter is not None:
        extra["sampler_factory"] = supernet_sampler_factory(config.path_filter, model,
                                                            seed=config.seed)
    trainer = SupernetTrainer(model, config.training, seed=config.seed, checkpoint_path=ckpt,
                              identity=config.identity(), **extra)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.model_dump(mode="json"), indent=2))
    metric = model.task.primary_metric
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=console,
                  disable=not progress) as bar:
        epochs = bar.add_task("epochs", total=config.training.total_epochs, info="")
        steps = bar.add_task("steps", total=None, info="")

        def on_step(step: int, total: int) -> None:
            bar.update(steps, completed=step, total=total)

        def on_epoch(rec: dict[str, Any]) -> None:
            bar.update(epochs, completed=rec["epoch"],
                       info=f"{metric} largest {rec[f'val_{metric}_largest']:.3f} / smallest "
                            f"{rec[f'val_{metric}_smallest']:.3f}")
            (run_dir / "history.json").write_text(json.dumps(trainer.history, indent=2))

        history = trainer.train(resume=resume, on_epoch=on_epoch, on_step=on_step)
    (run_dir / "history.json").write_text(json.dumps(history, indent=2))
    return SupernetOutcome(run_dir, ckpt, history)
