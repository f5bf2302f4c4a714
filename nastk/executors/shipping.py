"""What a driver sends its Ray workers by value, so that the nodes need no shared file system:
the files a config names (a supernet checkpoint, initial weights, a path filter) and the plugin
modules the config imports from the driver's own folders.

The driver packs a :class:`Parcel` from the config's JSON data: it reads every named file and
the source of every plugin module that is not an installed distribution (a module found
through ``PYTHONPATH`` or the working directory; an installed package is expected on every
node, as nastk itself is). The parcel travels inside what the worker is sent (Ray pickles it
into its object store); the worker :meth:`Parcel.unpack`\\ s it: the modules into a folder put
first on ``sys.path``, the files into a folder of its own, and gets back the config with those
paths in place of the driver's. Both are written once per worker process and content.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import socket
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nastk.core.errors import ConfigError, NastkError

__all__ = ["MAX_MODULE_BYTES", "WORKER_NEEDS", "Parcel", "module_files", "on_node",
           "pickle_by_value"]

#: the largest plugin package shipped by value; a larger one must be installed on every node
MAX_MODULE_BYTES = 16 * 2**20

#: what every node must provide itself (said when a worker cannot build the evaluator)
WORKER_NEEDS = ("Every node needs nastk and the packages the plugins import installed (plugin "
                "modules that are not installed packages are sent, a single-file module "
                "without the modules beside it: make them a package) and the data set at the "
                "path the config names")

#: per worker process: sha256 of shipped content -> the local copy written
_WRITTEN: dict[str, Path] = {}


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or node.get(part) is None:
            return None
        node = node[part]
    return node


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[last] = value


@functools.lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _installed(top: str) -> bool:
    """Whether ``top`` is the standard library's, built in, or belongs to an installed
    distribution (then every node is expected to have it)."""
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return True
    return bool(_distributions().get(top))


def _local_origin(top: str) -> Any:
    """The import spec of the top-level module ``top`` when it must be shipped (it is not
    installed; see the module docstring), else ``None``."""
    if _installed(top):
        return None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None  # not found (the import names it) or a namespace package
    return spec


def module_files(name: str) -> tuple[str, dict[str, bytes]] | None:
    """``(top-level name, {relative path: bytes})`` of the module or package ``name`` belongs
    to, when it must be shipped (it is not installed; see the module docstring), else
    ``None``. A package is shipped whole (its ``__pycache__`` folders and compiled files
    left out), a single-file module alone."""
    top = name.split(".")[0]
    spec = _local_origin(top)
    if spec is None:
        return None
    origin = Path(spec.origin)
    if not origin.is_file():
        return None  # imported here from a file since removed: nothing to send
    if spec.submodule_search_locations is None:  # one file
        files = {origin.name: origin.read_bytes()}
    else:
        root = origin.parent
        files = {}
        total = 0
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root)
            if (not path.is_file() or "__pycache__" in rel.parts
                    or path.suffix in (".pyc", ".pyo")
                    or any(p.startswith(".") for p in rel.parts)):
                continue
            total += path.stat().st_size
            if total > MAX_MODULE_BYTES:
                raise ConfigError(
                    f"plugins: package {top!r} at {root} is over {MAX_MODULE_BYTES // 2**20} "
                    "MiB, too large to send to the Ray workers; install it on every node "
                    "(pip install), installed packages are not sent")
            files[str(Path(top) / rel)] = path.read_bytes()
    return top, files


def _digest(parts: Iterable[tuple[str, bytes]]) -> str:
    h = hashlib.sha256()
    for name, blob in parts:
        h.update(name.encode() + b"\0" + hashlib.sha256(blob).digest())
    return h.hexdigest()


@dataclass(frozen=True)
class Parcel:
    """Files and modules a worker needs, carried by value (see the module docstring)."""

    #: dotted config field -> (file name, bytes)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    #: top-level module name -> {path relative to the folder on sys.path: bytes}
    modules: dict[str, dict[str, bytes]] = field(default_factory=dict)

    @classmethod
    def pack(cls, config: dict[str, Any], fields: Iterable[str],
             modules: Iterable[str] = ()) -> Parcel:
        """Read every file the config's ``fields`` (dotted paths into its JSON data) name
        (relative paths from this process's working directory) and the source of every
        module in ``modules`` that must be shipped."""
        files: dict[str, tuple[str, bytes]] = {}
        for dotted in fields:
            value = _get(config, dotted)
            if value is None:
                continue
            path = Path(value).expanduser()
            try:
                files[dotted] = (path.name, path.read_bytes())
            except OSError as err:
                raise ConfigError(f"{dotted.removesuffix('_')}: cannot read {path} to send it "
                                  f"to the Ray workers: {err.strerror or err}") from None
        shipped: dict[str, dict[str, bytes]] = {}
        for name in modules:
            found = module_files(name)
            if found is not None:
                shipped[found[0]] = found[1]
        return cls(files, shipped)

    def digests(self) -> dict[str, str]:
        """A digest of every shipped file and module (what a cache key needs)."""
        out = {k: hashlib.sha256(blob).hexdigest() for k, (_, blob) in self.files.items()}
        out.update({f"module:{top}": _digest(sorted(files.items()))
                    for top, files in self.modules.items()})
        return out

    def describe(self) -> str:
        """``2 files (5.1 MB) and 1 module`` (for a log line)."""
        size = sum(len(b) for _, b in self.files.values()) + sum(
            len(b) for files in self.modules.values() for b in files.values())
        n, m = len(self.files), len(self.modules)
        return (f"{n} file{'s' * (n != 1)} and {m} module{'s' * (m != 1)} "
                f"({size / 1e6:.1f} MB)")

    def install_modules(self) -> None:
        """Write the shipped modules into a folder of this process and put it first on
        ``sys.path`` (once per content)."""
        if not self.modules:
            return
        digest = _digest(sorted((f"{top}/{rel}", blob) for top, files in self.modules.items()
                                for rel, blob in files.items()))
        folder = _WRITTEN.get(digest)
        if folder is None or not folder.is_dir():
            folder = Path(tempfile.mkdtemp(prefix="nastk-modules-"))
            for files in self.modules.values():
                for rel, blob in files.items():
                    path = folder / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(blob)
            _WRITTEN[digest] = folder
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
            importlib.invalidate_caches()

    def unpack(self, config: dict[str, Any]) -> dict[str, Any]:
        """Install the modules (:meth:`install_modules`) and return a copy of ``config`` whose
        shipped fields name local copies of the files."""
        self.install_modules()
        data = copy.deepcopy(config)
        for dotted, (name, blob) in self.files.items():
            _set(data, dotted, str(_local_copy(name, blob)))
        return data


def _local_copy(name: str, blob: bytes) -> Path:
    """A file holding ``blob`` in this process's own folder (written once per content)."""
    digest = hashlib.sha256(blob).hexdigest()
    path = _WRITTEN.get(digest)
    if path is None or not path.is_file():
        folder = Path(tempfile.mkdtemp(prefix="nastk-shipped-"))
        path = folder / name
        path.write_bytes(blob)
        _WRITTEN[digest] = path
    return path


def on_node(err: NastkError) -> NastkError:
    """``err`` with this node's host name in front of its message (a worker's error about a
    per-node path, such as a data set missing on that node)."""
    text = f"on node {socket.gethostname()}: {err}"
    try:
        return type(err)(text)
    except TypeError:  # an error class with other constructor arguments
        return NastkError(text)


def pickle_by_value(*objects: Any) -> list[str]:
    """Have Ray's cloudpickle send the local modules (not installed packages) that define
    ``objects`` (a function, or an object's class) by value, so that workers on nodes without
    them can unpickle what a search built in Python sends (its evaluator); returns their
    names. ``__main__`` is sent by value already."""
    from ray import cloudpickle

    names = []
    for obj in objects:
        if obj is None:
            continue
        module = getattr(obj, "__module__", None) if callable(obj) else None
        top = (module or type(obj).__module__ or "").split(".")[0]
        if not top or top == "__main__" or top in names or top not in sys.modules:
            continue
        if _local_origin(top) is not None:
            cloudpickle.register_pickle_by_value(sys.modules[top])
            names.append(top)
    return names
