"""The `nastk` command line: search, list, report, compare, supernet train, path-filter fit,
distill, export, recipe, study. :func:`main` parses the arguments (:mod:`nastk.cli.parser`),
hands them to the command's module in :mod:`nastk.cli.commands` and turns the errors every
command may raise into messages and exit statuses."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from rich.console import Console
from rich.markup import escape

from nastk.cli.parser import build_parser
from nastk.core.errors import NastkError
from nastk.run.signals import exit_status, interrupt_name, stop_on_signals

#: a command's handler: parsed arguments and the stderr console in, exit status out
Handler = Callable[[argparse.Namespace, Console], int]


def handler(module: str) -> Handler:
    """``run`` of the command module ``nastk.cli.commands.<module>``, imported now: command
    modules import torch and the engine, which `nastk --help` does not need."""
    return importlib.import_module(f"nastk.cli.commands.{module}").run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `nastk` command; returns the exit status: the command's own (0 when
    it succeeded), 2 for a :class:`NastkError` (an input mistake, printed without a
    traceback), ``128 + signal`` when Ctrl-C, SIGTERM or SIGHUP stopped it (130, 143, 129;
    see :mod:`nastk.run.signals`: a second signal exits at once)."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)
    try:
        with stop_on_signals():
            return int(handler(args.handler)(args, console))
    except NastkError as err:
        console.print(f"[bold red]error:[/bold red] {escape(str(err))}", highlight=False,
                      soft_wrap=True)
        return 2
    except KeyboardInterrupt as err:  # a command without its own resume hint
        console.print(f"interrupted ({interrupt_name(err)})", highlight=False)
        return exit_status(err)


if __name__ == "__main__":
    sys.exit(main())
