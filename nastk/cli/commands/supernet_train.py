"""`nastk supernet train`: train a supernet from a config into a run directory, resumably."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nastk.cli.console import results_console
from nastk.config.schema import SupernetConfig, load_config, parse_config
from nastk.config.supernet_trainer import build_supernet_trainer
from nastk.core.errors import ConfigError, StoreError
from nastk.core.weights import clean_temp_files
from nastk.report.progress import ProgressView
from nastk.run.layout import RunLayout
from nastk.run.lock import lock_run_dir
from nastk.run.signals import exit_status, interrupt_name
from nastk.training.supernet import SupernetTrainer, best_epoch_text, write_history


@dataclass
class SupernetOutcome:
    run_dir: Path
    checkpoint: Path
    history: list[dict[str, Any]]


def train_supernet(config: SupernetConfig, *, resume: bool = False,
                   console: Console | None = None, progress: bool = True) -> SupernetOutcome:
    """Train (or resume) the supernet a config describes; the checkpoint is rewritten
    atomically after every epoch, so a killed run resumes from its last finished epoch."""
    console = console or Console(stderr=True)
    run_dir = config.resolved_run_dir()
    ckpt = RunLayout(run_dir).supernet_checkpoint
    if run_dir.exists() and not run_dir.is_dir():
        raise StoreError(f"run_dir {run_dir} is a file, not a folder; choose another "
                         "--run-dir")
    if ckpt.exists() and not resume:
        raise StoreError(f"{ckpt} already exists. Pass --resume to continue that training, or "
                         "choose another run_dir (--run-dir).")
    if resume and not ckpt.is_file():
        raise StoreError(f"--resume: no checkpoint at {ckpt}; start the training without "
                         "--resume (nothing was written)")
    # on Ray the workers train; this process only checks (on its CPU: it may have no GPU, the
    # workers' devices are checked against the cluster's GPUs before they start)
    trainer = build_supernet_trainer(config, run_dir, on_driver=config.on_ray)
    if resume and config.on_ray:  # refuse a foreign checkpoint before starting any worker
        trainer.load_checkpoint(ckpt)
    lock = lock_run_dir(run_dir, create=not resume)  # one live process per run folder
    try:
        if resume:
            # left by a checkpoint write that died
            clean_temp_files(*RunLayout(run_dir).written_folders())
        RunLayout(run_dir).config_json.write_text(
            json.dumps(config.model_dump(mode="json"), indent=2))
        metric = trainer.task.primary_metric
        if config.on_ray:
            history = _train_on_ray(config, resume, console, progress, metric, trainer.epoch)
        else:
            history = _train_here(trainer, config, resume, console, progress, metric, run_dir)
        if history:
            from nastk import report  # matplotlib only once training ends

            console.print(best_epoch_text(history, trainer.objective), highlight=False)
            report.plot_supernet_history(history, RunLayout(run_dir).history_png, metric)
    finally:
        lock.release()
    return SupernetOutcome(run_dir, ckpt, history)


def _epoch_info(metric: str, rec: dict[str, Any]) -> str:
    return (f"{metric} largest {rec[f'val_{metric}_largest']:.3f} / smallest "
            f"{rec[f'val_{metric}_smallest']:.3f}")


def _train_on_ray(config: SupernetConfig, resume: bool, console: Console, progress: bool,
                  metric: str, done: int) -> list[dict[str, Any]]:
    """Data-parallel training on Ray Train, its progress read from rank 0's progress file."""
    from nastk.executors.ray_train import train_on_ray

    workers = config.training.workers
    with ProgressView(console, enabled=progress) as view:
        epochs = view.add(f"supernet {config.name} ({workers} workers)",
                          total=config.training.total_epochs, completed=done, unit="epochs")
        steps = view.add("steps", total=None, unit="steps", percent=0)
        seen: dict[str, Any] = {"attempt": 1, "rebased": False}

        def on_progress(state: dict[str, Any]) -> None:
            if state.get("attempt", 1) != seen["attempt"]:
                seen["attempt"] = state["attempt"]
                console.print(f"a worker failed: the worker group restarted from the last "
                              f"checkpoint (epoch {state['epoch']}, attempt {state['attempt']})")
            if not seen["rebased"]:  # epochs done before a resume do not count in the ETA
                view.update(epochs, completed=state["epoch"], rebase=True)
                seen["rebased"] = True
            record = state.get("record")
            if record is not None:
                if seen.get("steps"):  # the epoch's steps are all done
                    view.update(steps, completed=seen["steps"], total=seen["steps"])
                view.update(epochs, completed=record["epoch"], info=_epoch_info(metric, record))
            elif state.get("step") is not None:
                seen["steps"] = state["steps"]
                view.update(epochs, completed=state["epoch"])
                view.update(steps, completed=state["step"], total=state["steps"])

        return train_on_ray(config, resume=resume, on_progress=on_progress)


def _train_here(trainer: SupernetTrainer, config: SupernetConfig, resume: bool,
                console: Console, progress: bool, metric: str,
                run_dir: Path) -> list[dict[str, Any]]:
    """Training in this process."""
    with ProgressView(console, enabled=progress) as view:
        epochs = view.add(f"supernet {config.name}", total=config.training.total_epochs,
                          completed=trainer.epoch, unit="epochs")
        steps = view.add("steps", total=None, unit="steps", percent=0)
        started = [False]

        def on_step(step: int, total: int) -> None:
            if not started[0]:  # epochs done before a resume do not count in the ETA
                view.update(epochs, completed=trainer.epoch, rebase=True)
                started[0] = True
            view.update(steps, completed=step, total=total)

        def on_epoch(rec: dict[str, Any]) -> None:
            view.update(epochs, completed=rec["epoch"], info=_epoch_info(metric, rec))
            write_history(run_dir, trainer.history)

        history = trainer.train(resume=resume, on_epoch=on_epoch, on_step=on_step)
    write_history(run_dir, history)
    return history


# -- the command line ---------------------------------------------------------------------------
def _config_from_args(args: argparse.Namespace) -> SupernetConfig:
    """The config file with the flags (``--run-dir``, ``--workers``, ``--executor``,
    ``--address``) applied, validated again."""
    config = load_config(args.config, SupernetConfig)
    updates: dict[str, Any] = {}
    if args.run_dir is not None:
        updates["run_dir"] = args.run_dir
    if args.workers is not None:
        updates["training"] = {**config.training.model_dump(), "workers": args.workers}
    if args.executor is not None or args.address is not None:
        kind = args.executor or "ray"
        if kind == "local" and args.address is not None:
            raise ConfigError(f"--address {args.address} is for the ray executor; drop it or "
                              "use --executor ray")
        updates["executor"] = {**config.executor.model_dump(), "kind": kind,
                               **({"address": args.address} if args.address else {})}
    if updates:
        config = parse_config({**config.model_dump(), **updates}, args.config, SupernetConfig)
    if config.executor.kind == "local" and args.executor == "local" and \
            config.training.workers > 1:
        raise ConfigError(f"--executor local trains in this process, but training.workers is "
                          f"{config.training.workers}; data-parallel workers run on Ray: drop "
                          "--executor local or pass --workers 1")
    return config


def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk supernet train CONFIG`: train (or resume), then print the epochs' history, the
    resumes and restarts, and the checkpoint. Stopped by Ctrl-C, SIGTERM or SIGHUP, it says
    which epoch the checkpoint holds and how to continue (exit status ``128 + signal``)."""
    config = _config_from_args(args)
    try:
        outcome = train_supernet(config, resume=args.resume, console=console,
                                 progress=not args.no_progress)
    except KeyboardInterrupt as err:
        ckpt = RunLayout(config.resolved_run_dir()).supernet_checkpoint
        held = (f"the checkpoint {ckpt} holds the last finished epoch" if ckpt.is_file()
                else "no epoch had finished, so there is no checkpoint")
        again = ["nastk supernet train", args.config, "--resume"]
        if args.run_dir is not None:
            again += ["--run-dir", args.run_dir]
        console.print(f"interrupted ({interrupt_name(err)}): {held}; "
                      + (f"continue with `{' '.join(again)}`" if ckpt.is_file()
                         else "start it again without --resume"), highlight=False,
                      soft_wrap=True)
        return exit_status(err)
    out = results_console()
    table = Table(title=f"supernet training: {config.name}")
    keys: list[str] = []
    for rec in outcome.history:
        keys += [k for k, v in rec.items() if k not in keys and not isinstance(v, dict)]
    for key in keys:
        table.add_column(key.replace("_", " "), justify="right")
    for rec in outcome.history:
        table.add_row(*(f"{rec[k]:.4g}" if isinstance(rec.get(k), float)
                        else str(rec.get(k, "")) for k in keys))
    out.print(table)
    for rec in outcome.history:
        for what in ("resumed", "restarted"):
            if what in rec:
                note = rec[what]
                out.print(f"epoch {rec['epoch']}: {what} from epoch {note['from_epoch']} on "
                          f"{note['workers']} worker(s)"
                          + (f" (attempt {note['attempt']}, {note['cause']})"
                             if what == "restarted" else ""))
    out.print(f"checkpoint: {outcome.checkpoint}  (use it as evaluator.supernet.checkpoint)")
    return 0
