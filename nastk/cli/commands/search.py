"""`nastk search CONFIG`: a search config run (or resumed) into its run folder by the run
lifecycle (:func:`nastk.pipelines.search.run_search_config`), then the leaderboard."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from nastk.run.layout import RunLayout


def resume_command(args: argparse.Namespace) -> list[str]:
    """The command that continues this run: the config, ``--resume`` and the flags that name
    the run folder and its budget."""
    again = ["nastk search", args.config, "--resume"]
    if args.run_dir is not None:
        again += ["--run-dir", args.run_dir]
    if args.trials is not None:
        again += ["--trials", str(args.trials)]
    return again


def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk search CONFIG`: run (or resume) the search with the flags applied to the config,
    then print the leaderboard, the trial counts and where the store and report are. Exit
    status 1 when no trial succeeded; on Ctrl-C, say how to continue (130)."""
    from rich.markup import escape

    from nastk import report  # matplotlib is only needed once a run ends
    from nastk.cli.console import results_console
    from nastk.config.schema import load_config, parse_config
    from nastk.core.errors import ConfigError, RunStoppingError
    from nastk.pipelines.search import run_search_config
    from nastk.run.signals import exit_status, interrupt_name

    config = load_config(args.config)
    updates = {}
    if args.run_dir is not None:
        updates["run_dir"] = Path(args.run_dir)
    if args.trials is not None or args.time_s is not None:  # validated with the config below
        updates["budget"] = {**config.budget.model_dump(), **{
            k: v for k, v in (("trials", args.trials), ("time_s", args.time_s)) if v is not None}}
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
        config = parse_config({**config.model_dump(), **updates}, args.config)
    try:
        outcome = run_search_config(config, resume=args.resume, console=console,
                                    progress=not args.no_progress)
    except KeyboardInterrupt as err:  # Ctrl-C, SIGTERM or SIGHUP
        again = resume_command(args)
        paths = RunLayout(config.resolved_run_dir())
        console.print(f"interrupted ({interrupt_name(err)}): finished trials are kept in "
                      f"{paths.store}"
                      + (f", report {paths.report}" if paths.report.is_file()
                         else "") + f"; continue with `{' '.join(again)}`", highlight=False,
                      soft_wrap=True)
        return exit_status(err)
    except RunStoppingError as err:  # the cause named; the trial in flight runs again later
        again = resume_command(args)
        console.print(f"[bold red]error:[/bold red] {escape(str(err))}\nthe search stopped: "
                      "finished trials are kept and the trials in flight are recorded as "
                      "interrupted; fix the cause, then continue with "
                      f"`{escape(' '.join(again))}`", highlight=False, soft_wrap=True)
        return 2
    out = results_console()
    out.print(report.leaderboard_table(
        outcome.trials, outcome.objective, top=args.top, title=f"leaderboard: {config.name}",
        render=outcome.space.render))
    finished = [t for t in outcome.trials if t.result is not None]
    failed = [t for t in finished if not t.result.ok]
    out.print(f"{len(finished)} trials ({len(failed)} failed); stopped: "
              f"{outcome.stop_reason}")
    out.print(f"store:  {RunLayout(outcome.run_dir).store}")
    out.print(f"report: {outcome.report}")
    if len(failed) == len(finished):
        why = (f"; the first failed with: {escape(str(failed[0].result.error))}" if failed
               else "")
        console.print(f"[bold red]error:[/bold red] no trial succeeded{why}", highlight=False,
                      soft_wrap=True)
        return 1
    return 0
