"""The `nastk` command line: search, list, report, compare, supernet train, path-filter fit,
distill, export, recipe, study."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nastk.core.errors import ConfigError, NastkError
from nastk.run.layout import RunLayout


def _stdout() -> Console:
    """Console for results: soft-wrapped lines, and a wide table when piped to a file."""
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)


def _cmd_search(args: argparse.Namespace, console: Console) -> int:
    from nastk import report
    from nastk.config.schema import load_config
    from nastk.pipelines.search import run_search_config

    config = load_config(args.config)
    updates = {}
    if args.run_dir is not None:
        updates["run_dir"] = Path(args.run_dir)
    if args.trials is not None or args.time_s is not None:
        budget = config.budget.model_copy(update={
            k: v for k, v in (("trials", args.trials), ("time_s", args.time_s)) if v is not None})
        updates["budget"] = budget
    if args.seed is not None:
        updates["seed"] = args.seed
    if args.executor is not None or args.address is not None:
        kind = args.executor or ("ray" if args.address is not None else config.executor.kind)
        if kind == "local" and args.address is not None:
            raise ConfigError(f"--address {args.address} is for the ray executor; drop it or "
                              "use --executor ray")
        changes: dict[str, object] = {"kind": kind}
        if args.address is not None:
            changes["address"] = args.address
        updates["executor"] = {**config.executor.model_dump(), **changes}
    if updates:
        from nastk.config.schema import parse_config

        config = parse_config({**config.model_dump(), **updates}, args.config)
    try:
        outcome = run_search_config(config, resume=args.resume, console=console,
                                 progress=not args.no_progress)
    except KeyboardInterrupt:
        again = ["nastk search", args.config, "--resume"]
        if args.run_dir is not None:
            again += ["--run-dir", args.run_dir]
        if args.trials is not None:
            again += ["--trials", str(args.trials)]
        run_dir = config.resolved_run_dir()
        paths = RunLayout(run_dir)
        console.print(f"interrupted: finished trials are kept in {paths.store}"
                      + (f", report {paths.report}" if paths.report.is_file()
                         else "") + f"; continue with `{' '.join(again)}`", highlight=False,
                      soft_wrap=True)
        return 130
    out = _stdout()
    out.print(report.leaderboard_table(
        outcome.trials, outcome.objective, top=args.top, title=f"leaderboard: {config.name}",
        render=outcome.space.render))
    finished = [t for t in outcome.trials if t.result is not None]
    failed = [t for t in finished if not t.result.ok]
    out.print(f"{len(finished)} trials ({len(failed)} failed); stopped: "
              f"{outcome.stop_reason}")
    out.print(f"store:  {outcome.run_dir / 'store.sqlite'}")
    out.print(f"report: {outcome.report}")
    if len(failed) == len(finished):
        why = (f"; the first failed with: {escape(str(failed[0].result.error))}" if failed
               else "")
        console.print(f"[bold red]error:[/bold red] no trial succeeded{why}", highlight=False,
                      soft_wrap=True)
        return 1
    return 0


def _cmd_list(args: argparse.Namespace, console: Console) -> int:
    from nastk.core import registry

    if args.plugins:
        from nastk.config.compose import import_plugins

        import_plugins(args.plugins)
    kinds = registry.ALL if args.kind is None else {args.kind: registry.ALL[args.kind]}
    out = _stdout()
    for kind, reg in kinds.items():
        table = Table(title=kind, title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("what it is")
        table.add_column("from", style="dim")
        loaded = {}
        for name in reg.names():
            try:
                loaded[name] = reg.get(name)
                summary = registry.summary(loaded[name])
            except NastkError as err:
                summary = f"[red]cannot load: {escape(str(err))}[/red]"
            table.add_row(name, summary, reg.source(name))
        if not reg.names():
            table.add_row("(none)", "", "")
        out.print(table)
        if args.kind is None:
            continue
        for name, obj in loaded.items():  # a kind asked for: each plugin's options
            rows = registry.options_table(obj)
            options = Table(title=f"{name}: options", title_justify="left")
            for col in ("option", "type", "default", "description"):
                options.add_column(col, style="bold" if col == "option" else None)
            for row in rows:
                options.add_row(*(escape(cell) for cell in row))
            if not rows:
                options.add_row("(none)", "", "", "")
            out.print(options)
    if args.kind is None:
        out.print("`nastk list KIND` (spaces, tasks, strategies, predictors) shows each "
                  "plugin's options", highlight=False)
    return 0


def _cmd_report(args: argparse.Namespace, console: Console) -> int:
    from nastk import report
    from nastk.cli.commands.report import report_run

    done = report_run(args.run_dir)
    record = done.record
    out = _stdout()
    out.print(report.leaderboard_table(record.trials, record.objective, top=args.top,
                                       title=f"leaderboard: {record.config.name}",
                                       render=done.render))
    if done.source == "stored":
        console.print("note: the run's plugins did not load; its strategy curves and architecture "
                  "texts come from the store")
    out.print(f"report: {done.path}")
    return 0


def _cmd_export(args: argparse.Namespace, console: Console) -> int:
    from nastk.cli.commands.export import export_front, export_run

    if args.front:
        if args.trial is not None:

            raise ConfigError("--front exports every trial on the Pareto front; drop --trial")
        return _print_front(export_front(args.run_dir, args.out), args)
    exported = export_run(args.run_dir, args.out, args.trial)
    out = _stdout()
    for note in exported.notes:
        out.print(f"note: {note}")
    out.print(f"trial {exported.trial.id}: {exported.trial.arch.key}")
    out.print(f"architecture: {exported.arch_json}")
    if exported.checkpoint:
        out.print(f"checkpoint:   {exported.checkpoint}  (nastk.cli.commands.export.load_exported)")
    if exported.program:
        out.print(f"program:      {exported.program}  (torch.export.load, no nastk needed)")
    return 0


def _print_front(exported: list, args: argparse.Namespace) -> int:
    from nastk.report.formatting import format_cost, format_metric

    out = _stdout()
    first = exported[0]
    table = Table(title=f"Pareto front: {len(exported)} trials", title_justify="left")
    table.add_column("trial", justify="right")
    metrics = list(first.trial.result.metrics) if first.trial.result else []
    costs = sorted({c for e in exported for c in (e.trial.result.costs if e.trial.result
                                                  else {})})
    for name in (*metrics[:3], *costs):
        table.add_column(name, justify="right")
    table.add_column("folder")
    for e in exported:
        r = e.trial.result
        table.add_row(str(e.trial.id), *(format_metric(r.metrics.get(m)) for m in metrics[:3]),
                      *(format_cost(c, r.costs.get(c)) for c in costs),
                      str(e.arch_json.parent))
    out.print(table)
    for e in exported:
        for note in e.notes:
            out.print(f"note: trial {e.trial.id}: {note}")
    out.print(f"front: {first.arch_json.parent.parent / 'front.json'}")
    return 0


def _cmd_recipe(args: argparse.Namespace, console: Console) -> int:
    from nastk.cli.commands.recipe import run_recipe, summary_table
    from nastk.pipelines.recipe import RecipeInterrupted

    try:
        outcome = run_recipe(args.recipe, redo=args.redo, until=args.until, only=args.only,
                             console=console, progress=not args.no_progress)
    except KeyboardInterrupt as err:
        where = (f" in stage {err.stage!r}; finished stages are recorded in "
                 f"{err.run_dir / 'recipe.json'}" if isinstance(err, RecipeInterrupted) else "")
        console.print(f"interrupted{where}; continue with `nastk recipe {args.recipe}` (it "
                      "skips finished stages and resumes the interrupted one)", highlight=False,
                      soft_wrap=True)
        return 130
    out = _stdout()
    out.print(summary_table(outcome, title=f"recipe {args.recipe}"))
    out.print(f"state: {outcome.state}")
    return 0


def _cmd_compare(args: argparse.Namespace, console: Console) -> int:
    from nastk.cli.commands.compare import compare_runs, seed_notes, summary_table, write_comparison

    objective, groups = compare_runs([Path(d) for d in args.run_dirs], by=args.by)
    path = write_comparison(Path(args.out) if args.out else None, objective, groups, by=args.by)
    out = _stdout()
    out.print(summary_table(objective, groups, by=args.by))
    for note in seed_notes(groups):
        console.print(f"note: {note}", highlight=False)
    out.print(f"comparison: {path}")
    return 0


def _cmd_supernet_train(args: argparse.Namespace, console: Console) -> int:
    from nastk.cli.commands.supernet_train import train_supernet
    from nastk.config.schema import SupernetConfig, load_config, parse_config

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
    outcome = train_supernet(config, resume=args.resume, console=console,
                             progress=not args.no_progress)
    out = _stdout()
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


def _cmd_distill(args: argparse.Namespace, console: Console) -> int:
    from nastk.cli.commands.distill import run_distill
    from nastk.config.schema import load_config, parse_config
    from nastk.training.distill import DistillConfig

    config = load_config(args.config, DistillConfig)
    updates = {k: v for k, v in (("run_dir", args.run_dir), ("seeds", args.seeds))
               if v is not None}
    if updates:
        config = parse_config({**config.model_dump(), **updates}, args.config, DistillConfig)
    outcome = run_distill(config, console=console, progress=not args.no_progress,
                          overwrite=args.overwrite)
    out = _stdout()
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


def _cmd_path_filter_fit(args: argparse.Namespace, console: Console) -> int:
    from nastk.cli.commands.path_filter import fit_from_run

    summary = fit_from_run(args.run_dir, args.out, cost=args.cost, n_buckets=args.buckets,
                           holdout=args.holdout, seed=args.seed)
    out = _stdout()
    if summary.n_holdout:
        out.print(f"held out {summary.n_holdout} of {summary.n_train} trials: Kendall tau "
                  f"within {summary.cost} buckets {summary.bucket_tau:.3f} (1 = perfect "
                  "ranking, 0 = chance)")
    out.print(f"path filter fitted on {summary.n_train} trials, {summary.n_buckets} "
              f"{summary.cost} buckets: {summary.file}")
    return 0


def _cmd_study(args: argparse.Namespace, console: Console) -> int:
    from nastk.config.schema import load_config
    from nastk.pipelines.study.config import StudyConfig
    from nastk.pipelines.study.report import write_study_report
    from nastk.pipelines.study.runner import run_study

    config = load_config(args.config, StudyConfig)
    if not args.report_only:
        try:
            outcome = run_study(config, console=console, progress=not args.no_progress,
                                executor=args.executor, source=args.config)
        except KeyboardInterrupt:
            console.print(f"interrupted: finished searches are kept under "
                          f"{config.resolved_run_dir()}; continue with `nastk study "
                          f"{args.config}` (finished searches are skipped, interrupted ones "
                          "resumed)", highlight=False, soft_wrap=True)
            return 130
        console.print(f"{outcome.started} searches run, {outcome.skipped} already finished",
                      highlight=False)
    path, summary = write_study_report(config)
    table = Table(title=f"study {config.name}: cross-task leaderboard")
    for col in ("#", "strategy", "average rank", "mean normalised regret"):
        table.add_column(col)
    for i, row in enumerate(summary["leaderboard"], start=1):
        table.add_row(str(i), row["strategy"], f"{row['average_rank']:.2f}",
                      f"{row['mean_normalised_regret']:.4f}")
    out = _stdout()
    out.print(table)
    out.print(f"report: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nastk", description="Neural architecture search: one engine, many tasks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("search", help="run (or resume) the search a YAML config describes")
    p.add_argument("config", help="experiment YAML (see examples/)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the config's run_dir where it stopped")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument("--trials", type=int, help="override budget.trials")
    p.add_argument("--time-s", type=float, help="override budget.time_s")
    p.add_argument("--seed", type=int, help="override seed")
    p.add_argument("--executor", choices=["local", "ray"],
                   help="override executor.kind: run candidates in this process (local) or on "
                        "a Ray cluster (ray)")
    p.add_argument("--address", metavar="auto|HOST:PORT",
                   help="Ray cluster to use (implies --executor ray): 'auto' for the cluster "
                        "`ray start` runs on this machine, or the head's HOST:PORT; without "
                        "it a local Ray starts with this machine's CPUs")
    p.add_argument("--top", type=int, default=10, help="leaderboard rows (default 10)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("list", help="list registered spaces, tasks, strategies, predictors")

    def list_kind(text: str) -> str:
        from nastk.core.registry import resolve_kind

        try:
            return resolve_kind(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    p.add_argument("kind", nargs="?", type=list_kind, metavar="KIND",
                   help="spaces (or search_spaces), tasks, strategies or predictors: list "
                        "only these, with each plugin's options and their defaults")
    p.add_argument("--plugins", nargs="*", default=[],
                   help="modules to import first (they register plugins)")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("report", help="(re)write a run's report.md and plots")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, default=10)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("compare", help="compare runs: best-so-far curves by strategy")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--by", choices=["strategy", "name"], default="strategy",
                   help="group runs by their strategy (default) or their name")
    p.add_argument("--out", default=None,
                   help="output folder (default: beside the runs, <their common parent>/"
                        "comparison)")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("supernet", help="weight-sharing supernets")
    supernet_sub = p.add_subparsers(dest="supernet_command", required=True)
    p = supernet_sub.add_parser("train", help="train a supernet (sandwich rule, in-place "
                                              "distillation, progressive shrinking)")
    p.add_argument("config", help="supernet YAML (see examples/supernet_train.yaml)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run_dir's checkpoint (last finished epoch)")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument("--workers", type=int, metavar="N",
                   help="override training.workers: N > 1 trains data-parallel on Ray Train "
                        "(each worker takes batch_size / N images of every step)")
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="override executor.kind: train in this process or on Ray Train")
    p.add_argument("--address", default=None,
                   help="Ray cluster (implies --executor ray): 'auto' for the cluster `ray "
                        "start` runs on this machine, HOST:PORT of its head, ray://HOST:PORT; "
                        "default: a local Ray with this machine's CPUs")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_supernet_train)

    p = sub.add_parser("path-filter", help="DetOFA path filter: rank paths within cost buckets")
    pf_sub = p.add_subparsers(dest="path_filter_command", required=True)
    p = pf_sub.add_parser("fit", help="fit a path filter on a run's results and save it (for "
                                      "`path_filter:` in a supernet config)")
    p.add_argument("run_dir", help="a finished or running search's run directory")
    p.add_argument("--out", required=True, help="file to write (e.g. runs/filter.pt)")
    p.add_argument("--cost", default="flops", help="recorded cost that defines the buckets "
                                                   "(default flops)")
    p.add_argument("--buckets", type=int, default=5, help="cost buckets (default 5)")
    p.add_argument("--holdout", type=float, default=0.2,
                   help="share of the trials held out to measure the ranking (default 0.2)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_path_filter_fit)

    p = sub.add_parser("distill", help="train a student with a teacher (and without, to "
                                       "compare)")
    p.add_argument("config", help="distillation YAML (see examples/segmentation_kd.yaml)")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument("--seeds", type=int, nargs="+", help="override seeds")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a distillation already in the run directory")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("export", help="export a run's best architecture and weights")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default RUN_DIR/export)")
    p.add_argument("--trial", type=int, help="export this trial id instead of the best")
    p.add_argument("--front", action="store_true",
                   help="export every trial on the Pareto front (objective metric vs its "
                        "costs) into OUT/trial_<id>/ with OUT/front.json (default OUT: "
                        "RUN_DIR/front)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("recipe", help="run a chain of stages (supernet train, search, "
                                      "path-filter fit, export) from one YAML file, resumably")
    p.add_argument("recipe", help="recipe YAML (stages, each fed by earlier stages' outputs)")
    p.add_argument("--redo", metavar="STAGE",
                   help="run STAGE and every later stage again (their folders are moved aside "
                        "to <stage>.old-<n>)")
    p.add_argument("--until", metavar="STAGE", help="stop after STAGE")
    p.add_argument("--only", metavar="STAGE",
                   help="run only STAGE (the stages before it must be done)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_recipe)

    p = sub.add_parser("study", help="run (or continue) a study: tasks x strategies x seeds, "
                                     "one report")
    p.add_argument("config", help="study YAML (tasks, strategies, seeds, executor)")
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="override the config's executor.kind")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report from the runs' stores without running searches")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_cmd_study)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nastk` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        return int(args.func(args, console))
    except NastkError as err:
        console.print(f"[bold red]error:[/bold red] {escape(str(err))}", highlight=False,
                      soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted; continue with `nastk search CONFIG --resume`")
        return 130


if __name__ == "__main__":
    sys.exit(main())
