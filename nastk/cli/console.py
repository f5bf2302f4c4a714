"""Where a command's output goes: results (tables, paths) to stdout through
:func:`results_console`; progress, notes and errors to stderr through the console that
:func:`nastk.cli.main.main` hands every command."""

from __future__ import annotations

import sys

from rich.console import Console


def results_console() -> Console:
    """Console for results: soft-wrapped lines, and a wide table when piped to a file."""
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
