"""The `nastk` command line: the parser and one module per command."""

from nastk.cli.main import main

__all__ = ["main"]
