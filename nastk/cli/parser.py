"""The `nastk` argument parser: every command's arguments, one function a command, assembled by
:func:`build_parser`. Each command's parser sets ``handler``: the module of
:mod:`nastk.cli.commands` whose ``run(args, console)`` carries it out (imported only when the
command runs, so `nastk --help` loads no torch)."""

from __future__ import annotations

import argparse


def list_kind(text: str) -> str:
    """``KIND`` of `nastk list`: a registry's kind, its aliases accepted (``search_spaces``)."""
    from nastk.core.registry import resolve_kind

    try:
        return resolve_kind(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _search(sub: argparse._SubParsersAction) -> None:
    """`nastk search CONFIG`: its flags override fields of the config."""
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
    p.set_defaults(handler="search")


def _list(sub: argparse._SubParsersAction) -> None:
    """`nastk list [KIND]`."""
    p = sub.add_parser("list", help="list registered spaces, tasks, strategies, predictors")
    p.add_argument("kind", nargs="?", type=list_kind, metavar="KIND",
                   help="spaces (or search_spaces), tasks, strategies or predictors: list "
                        "only these, with each plugin's options and their defaults")
    p.add_argument("--plugins", nargs="*", default=[],
                   help="modules to import first (they register plugins)")
    p.set_defaults(handler="list_plugins")


def _report(sub: argparse._SubParsersAction) -> None:
    """`nastk report RUN_DIR`."""
    p = sub.add_parser("report", help="(re)write a run's report.md and plots")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, default=10)
    p.set_defaults(handler="report")


def _dashboard(sub: argparse._SubParsersAction) -> None:
    """`nastk dashboard [DIR...]`."""
    p = sub.add_parser("dashboard", help="watch and compare runs, studies and supernet "
                                         "trainings live in a browser (read-only)")
    p.add_argument("dirs", nargs="*", metavar="DIR",
                   help="folders holding run, study or supernet folders (default: runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765)
    p.set_defaults(handler="dashboard")


def _compare(sub: argparse._SubParsersAction) -> None:
    """`nastk compare RUN_DIR...`."""
    p = sub.add_parser("compare", help="compare runs: best-so-far curves by strategy")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--by", choices=["strategy", "name"], default="strategy",
                   help="group runs by their strategy (default) or their name")
    p.add_argument("--out", default=None,
                   help="output folder (default: beside the runs, <their common parent>/"
                        "comparison)")
    p.set_defaults(handler="compare")


def _supernet(sub: argparse._SubParsersAction) -> None:
    """`nastk supernet train CONFIG`: its flags override fields of the config."""
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
    p.set_defaults(handler="supernet_train")


def _path_filter(sub: argparse._SubParsersAction) -> None:
    """`nastk path-filter fit RUN_DIR --out FILE`."""
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
    p.set_defaults(handler="path_filter")


def _distill(sub: argparse._SubParsersAction) -> None:
    """`nastk distill CONFIG`: its flags override fields of the config."""
    p = sub.add_parser("distill", help="train a student with a teacher (and without, to "
                                       "compare)")
    p.add_argument("config", help="distillation YAML (see examples/segmentation_kd.yaml)")
    p.add_argument("--run-dir", help="override the config's run_dir")
    p.add_argument("--seeds", type=int, nargs="+", help="override seeds")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a distillation already in the run directory")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler="distill")


def _export(sub: argparse._SubParsersAction) -> None:
    """`nastk export RUN_DIR`."""
    p = sub.add_parser("export", help="export a run's best architecture and weights")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output folder (default RUN_DIR/export)")
    p.add_argument("--trial", type=int, help="export this trial id instead of the best")
    p.add_argument("--front", action="store_true",
                   help="export every trial on the Pareto front (objective metric vs its "
                        "costs) into OUT/trial_<id>/ with OUT/front.json (default OUT: "
                        "RUN_DIR/front)")
    p.add_argument("--format", choices=["torch", "onnx"], default="torch",
                   help="torch: model.pt and a torch.export program (model.pt2); onnx: "
                        "model.onnx too (needs onnx, onnxscript, onnxruntime), checked with "
                        "ONNX Runtime against PyTorch on three input sizes")
    p.set_defaults(handler="export")


def _recipe(sub: argparse._SubParsersAction) -> None:
    """`nastk recipe RECIPE`."""
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
    p.set_defaults(handler="recipe")


def _study(sub: argparse._SubParsersAction) -> None:
    """`nastk study CONFIG`."""
    p = sub.add_parser("study", help="run (or continue) a study: tasks x strategies x seeds, "
                                     "one report")
    p.add_argument("config", help="study YAML (tasks, strategies, seeds, executor)")
    p.add_argument("--executor", choices=["local", "ray"], default=None,
                   help="override the config's executor.kind")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the report from the runs' stores without running searches")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler="study")


#: the commands, in the order `nastk --help` lists them
def _latency(sub: argparse._SubParsersAction) -> None:
    """`nastk latency profile CONFIG` and `nastk latency check RUN_DIR`."""
    p = sub.add_parser("latency", help="latency tables: profile this device for a space, "
                                       "check a run's predicted latency against it")
    lat_sub = p.add_subparsers(dest="latency_command", required=True)
    p = lat_sub.add_parser("profile", help="time every unit (block choice at its input size) "
                           "of a config's space on this device, and a few whole networks for "
                           "the correction, into a latency table")
    p.add_argument("config", help="a search config: its space and task (the task's input "
                   "shape and model) are profiled")
    p.add_argument("--out", required=True, help="the table file to write (JSON)")
    p.add_argument("--backend", choices=["cpu", "cuda", "onnxruntime"], default="cpu",
                   help="torch on the CPU (default), torch on CUDA (synchronised), or an ONNX "
                        "Runtime session")
    p.add_argument("--networks", type=int, default=20,
                   help="whole networks timed to fit the correction (default 20: the "
                        "smallest, the largest and random ones)")
    p.add_argument("--repeats", type=int, default=20, help="timed passes per module")
    p.add_argument("--rounds", type=int, default=20,
                   help="interleaved rounds the repeats are spread over (default 20: one "
                        "timed pass of each module per round; the fastest round counts)")
    p.add_argument("--warmup", type=int, default=5, help="untimed passes first")
    p.add_argument("--threads", default="auto",
                   help="torch (or ONNX Runtime) threads: a number, or auto (default)")
    p.add_argument("--level", type=float, default=0.9,
                   help="coverage of the predicted intervals (default 0.9)")
    p.add_argument("--seed", type=int, default=0, help="draws the random whole networks")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler="latency_profile")
    p = lat_sub.add_parser("check", help="time a run's latency front on this device and put "
                           "predicted against measured in its report")
    p.add_argument("run_dir")
    p.add_argument("--table", default=None, help="the latency table (default: the run's "
                   "latency.table)")
    p.set_defaults(handler="latency_check")


COMMANDS = (_search, _list, _report, _compare, _dashboard, _supernet, _path_filter, _distill,
            _export, _recipe, _study, _latency)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the `nastk` command line and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="nastk", description="Neural architecture search: one engine, many tasks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser
