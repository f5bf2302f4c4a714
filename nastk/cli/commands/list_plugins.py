"""`nastk list [KIND]`: the registered plugins (spaces, tasks, strategies, predictors) with
where each comes from; for one kind, each plugin's options with their types and defaults."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from nastk.cli.console import results_console
from nastk.config.compose import import_plugins
from nastk.core import registry
from nastk.core.errors import NastkError


def _options_table(name: str, obj: object) -> Table:
    """Plugin ``name``'s options: name, type, default, description."""
    rows = registry.options_table(obj)
    options = Table(title=f"{name}: options", title_justify="left")
    for col in ("option", "type", "default", "description"):
        options.add_column(col, style="bold" if col == "option" else None)
    for row in rows:
        options.add_row(*(escape(cell) for cell in row))
    if not rows:
        options.add_row("(none)", "", "", "")
    return options


def space_size(name: str, exact: bool = False) -> str:
    """How many architectures search space ``name`` holds with its default options: the count
    (its order of magnitude when it is long, unless ``exact``); why not, when the space cannot
    be built without options."""
    try:
        size = registry.instantiate(registry.SEARCH_SPACES, name, {}).size()
    except Exception as err:  # a space that needs options (a table, a file) says which
        return f"(needs options: {type(err).__name__})"
    if size < 10 ** 9:
        return f"{size:,}"
    return f"{size:,} ({size:.1e})" if exact else f"{size:.1e}"


def preset_sizes(name: str, obj: object) -> list[str]:
    """One line per preset a space declares (``presets``, each a ``preset`` option): its
    exact size and, when the space counts it (``largest_params``), its largest body's
    parameters."""
    lines = []
    for preset in getattr(obj, "presets", ()):
        space = registry.instantiate(registry.SEARCH_SPACES, name, {"preset": preset})
        size = space.size()
        text = f"{name}: {size:,} ({size:.1e}) architectures with `preset: {preset}`"
        if hasattr(space, "largest_params"):
            text += f", largest subnet {space.largest_params():,} params (body, no head)"
        lines.append(text)
    return lines


def run(args: argparse.Namespace, console: Console) -> int:
    """Print a table of plugins per kind (``args.kind``: only that kind, with every plugin's
    options), after importing the modules of ``--plugins``. A plugin that does not load is
    listed with the reason."""
    if args.plugins:
        import_plugins(args.plugins)
    kinds = registry.ALL if args.kind is None else {args.kind: registry.ALL[args.kind]}
    out = results_console()
    for kind, reg in kinds.items():
        table = Table(title=kind, title_justify="left", show_lines=False)
        table.add_column("name", style="bold")
        table.add_column("what it is")
        spaces = reg is registry.SEARCH_SPACES
        if spaces:
            table.add_column("size", no_wrap=True)  # architectures, default options
        table.add_column("from", style="dim")
        loaded = {}
        for name in reg.names():
            try:
                loaded[name] = reg.get(name)
                summary = registry.summary(loaded[name])
            except NastkError as err:
                summary = f"[red]cannot load: {escape(str(err))}[/red]"
            size = [space_size(name) if name in loaded else ""] if spaces else []
            table.add_row(name, summary, *size, reg.source(name))
        if not reg.names():
            table.add_row("(none)", "", "")
        out.print(table)
        if args.kind is None:
            continue
        for name, obj in loaded.items():  # a kind asked for: each plugin's options
            if spaces:
                out.print(f"{name}: {space_size(name, exact=True)} architectures with the "
                          "default options", highlight=False)
                for line in preset_sizes(name, obj):
                    out.print(line, highlight=False)
            out.print(_options_table(name, obj))
    if args.kind is None:
        out.print("`nastk list KIND` (spaces, tasks, strategies, predictors) shows each "
                  "plugin's options", highlight=False)
    return 0
