"""``nastk dashboard [DIR ...]``: the live, read-only web view of the runs, studies and
supernet trainings under the given folders (see :mod:`nastk.dashboard`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from nastk.dashboard.serve import INSTALL_HINT, check_installed, is_loopback


def run(args: argparse.Namespace, console: Console) -> int:
    missing = check_installed()
    if missing:
        console.print(f"[red]error:[/] {escape(INSTALL_HINT)} (missing: "
                      f"{', '.join(missing)})", highlight=False)
        return 2
    roots = [Path(d) for d in (args.dirs or ["runs"])]
    absent = [str(d) for d in roots if not d.is_dir()]
    if absent:
        console.print(f"[red]error:[/] no such folder: {escape(', '.join(absent))} (give the "
                      "folders that hold your run folders, e.g. runs/)", highlight=False)
        return 2
    if not is_loopback(args.host):
        console.print(f"[yellow]warning:[/] serving on {escape(args.host)}: anyone who can reach "
                      "this address sees every run under the folders given (the pages are "
                      "unauthenticated); leave --host out to serve this machine only",
                      highlight=False)
    from nastk.dashboard.folders import scan
    from nastk.dashboard.serve import serve

    found = scan(roots)
    console.print(f"nastk dashboard: {len(found)} folders under "
                  f"{escape(', '.join(map(str, roots)))} at http://{escape(args.host)}:"
                  f"{args.port}/ "
                  "(Ctrl-C stops it)", highlight=False)
    serve(roots, args.host, args.port)
    return 0
