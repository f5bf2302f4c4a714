"""Serving the dashboard: loopback by default, another interface only when asked (with a
warning: the pages are unauthenticated), the extra's packages checked first."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path

__all__ = ["INSTALL_HINT", "check_installed", "is_loopback", "serve"]

INSTALL_HINT = ('nastk dashboard needs the dashboard extra: pip install -e ".[dashboard]" '
                "(starlette, uvicorn, bokeh; from a clone) or pip install starlette uvicorn "
                "bokeh")


def check_installed() -> list[str]:
    """The extra's packages that are missing."""
    return [m for m in ("starlette", "uvicorn", "bokeh") if importlib.util.find_spec(m) is None]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(roots: list[Path], host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run the dashboard until interrupted."""
    import uvicorn

    from nastk.dashboard.app import create_app

    uvicorn.run(create_app(roots), host=host, port=port, log_level="warning",
                access_log=False)
