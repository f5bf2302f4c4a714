"""Saving and loading plain weights: CPU state dicts that load with ``weights_only=True``, and
loading that names the first tensor that does not fit."""

from __future__ import annotations

import errno
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nastk.core.errors import NastkError, RunStoppingError

__all__ = ["TMP_SUFFIX", "DiskFullError", "clean_temp_files", "load_file", "load_matching",
           "read_weights", "save_state", "save_weights", "write_atomic"]

#: suffix of the temporary sibling :func:`write_atomic` writes before renaming it into place
TMP_SUFFIX = ".tmp"

#: what a file nastk reads weights from should be
EXPECTED_FILE = ("expected a file written by nastk: a weights-only state dict (a trial "
                 "checkpoint, an export's model.pt, a saved path filter) or a supernet "
                 "checkpoint")


class DiskFullError(RunStoppingError):
    """The disk filled up while nastk wrote a file; nothing of that write was kept."""


def _no_space(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) says the device or quota is full."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


def write_atomic(path: str | Path, data: bytes | Callable[[Path], None]) -> Path:
    """Write ``data`` (bytes, or a function writing the file it is given) to ``path`` through a
    temporary sibling renamed into place: a killed write never leaves a truncated file, and a
    failed one removes its temporary file (a full disk raises :class:`DiskFullError`, another
    operating-system error a :class:`NastkError`; both name the file)."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        tmp.replace(path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if _no_space(err):
            raise DiskFullError(
                f"no space left on device writing {path}; nothing of it was kept (an earlier "
                "version, if any, is untouched); free space, then run the command again (with "
                "--resume, a search or a supernet training continues from its last saved "
                "point)") from err
        if isinstance(err, OSError):
            raise NastkError(f"cannot write {path}: {err}") from err
        raise
    return path


def save_state(state: Any, path: str | Path) -> Path:
    """``torch.save(state)`` to ``path`` atomically; ``state`` should hold only plain values and
    tensors so that it loads with ``weights_only=True``."""

    def write(tmp: Path) -> None:
        # through a Python file, so that a full disk surfaces as OSError(ENOSPC) (torch's own
        # writer reports it as an unexplained "unexpected pos" RuntimeError)
        with open(tmp, "wb") as f:
            torch.save(state, f)

    return write_atomic(path, write)


def clean_temp_files(*folders: str | Path) -> list[Path]:
    """Remove the temporary files a killed or failed :func:`write_atomic` left in ``folders``
    (a run folder's are :meth:`nastk.run.layout.RunLayout.written_folders`); returns the files
    removed. Call it only while no other process writes there (hold the run's lock,
    :mod:`nastk.run.lock`)."""
    removed = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob(f"*{TMP_SUFFIX}")):
            if p.is_file() or p.is_symlink():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def save_weights(model: nn.Module, path: str | Path) -> Path:
    """Save ``model``'s state dict as CPU tensors, atomically."""
    return save_state({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def load_file(path: str | Path, what: str = "checkpoint", missing_hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU, with errors that name ``what`` and
    the path (``missing_hint`` is appended when the file does not exist) and say what is wrong
    with a file that is not a nastk checkpoint (empty, not a torch file, not loadable
    weights-only)."""
    p = Path(path)
    if not p.is_file():
        raise NastkError(f"{what} {p} not found{missing_hint}")
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(4)
    except OSError as err:
        raise NastkError(f"cannot read {what} {p}: {err.strerror or err}") from err
    if size == 0:
        raise NastkError(f"{what} {p} is not a nastk checkpoint: the file is empty (0 bytes). "
                         f"{EXPECTED_FILE}")
    try:
        return torch.load(p, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if refused:
            raise NastkError(
                f"{what} {p} is not a nastk checkpoint: it cannot be loaded weights-only, it "
                f"holds a {refused.group(1)} object besides tensors and plain values (a whole "
                f"pickled model or object rather than a state dict?). {EXPECTED_FILE}") from None
        raise NastkError(f"{what} {p} is not a nastk checkpoint: not a file written by "
                         f"torch.save. {EXPECTED_FILE}") from None
    except MemoryError:
        raise
    except Exception as err:
        if not head.startswith(b"PK"):  # torch's reasons for such files are noise (': 101')
            raise NastkError(f"{what} {p} is not a nastk checkpoint: not a file written by "
                             f"torch.save. {EXPECTED_FILE}") from None
        raise NastkError(f"cannot read {what} {p}: a damaged or incomplete torch file "
                         f"({type(err).__name__}: {err}). {EXPECTED_FILE}") from err


def read_weights(path: str | Path, what: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Load a state dict saved by :func:`save_weights` (``weights_only=True``, on the CPU)."""
    p = Path(path)
    state = load_file(p, what)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise NastkError(f"{what} {p} is not a state dict of tensors")
    return state


def load_matching(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str,
                  target: str) -> None:
    """Load ``state_dict`` into ``module`` strictly; on a mismatch raise a :class:`NastkError`
    that names the first missing, reshaped or unexpected tensor (``"<source> does not fit
    <target>: ..."``)."""
    own = module.state_dict()
    hint = "Was it trained with other space or task options?"
    for name, tensor in own.items():
        if name not in state_dict:
            raise NastkError(f"{source} does not fit {target}: tensor {name!r} (shape "
                             f"{tuple(tensor.shape)}) is missing from the checkpoint. {hint}")
        theirs = state_dict[name]
        if tuple(theirs.shape) != tuple(tensor.shape):
            raise NastkError(f"{source} does not fit {target}: tensor {name!r} has shape "
                             f"{tuple(theirs.shape)} in the checkpoint but "
                             f"{tuple(tensor.shape)} in the model. {hint}")
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise NastkError(f"{source} does not fit {target}: unexpected tensor {extra[0]!r} in "
                         f"the checkpoint ({len(extra)} unexpected in all). {hint}")
    module.load_state_dict(state_dict)
