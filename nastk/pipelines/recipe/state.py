"""A recipe's state: ``run_dir/recipe.json``, rewritten atomically after every change, holds per
stage its status, the hash of its resolved config, its resolved config, its outputs, and its
start and end times. It is what lets a recipe run again skip its finished stages and resume a
cut-off one."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nastk.core.errors import StoreError
from nastk.core.weights import write_atomic
from nastk.run import layout

if TYPE_CHECKING:
    from nastk.pipelines.recipe.plan import ResolvedStage

#: the ``format`` field of ``recipe.json``
STATE_FORMAT = "nastk.recipe/1"


def json_safe(value: Any) -> Any:
    """Outputs as JSON data: paths as strings, NaN as None."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return value


class RecipeState:
    """``run_dir/recipe.json``: per stage its ``kind``, ``status`` (``running``: started, not
    finished; ``done``), ``hash`` and ``resolved`` config, ``outputs``, ``started`` and
    ``finished`` times, ``wall_s`` (summed over sessions), ``sessions`` and the last ``error``."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data or {"format": STATE_FORMAT, "stages": {}}

    @classmethod
    def load(cls, run_dir: Path) -> RecipeState:
        """The state in ``run_dir`` (an empty one when there is none yet)."""
        path = run_dir / layout.RECIPE_STATE
        if not path.is_file():
            return cls(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise StoreError(f"{path}: cannot read the recipe's state ({err}); move it aside to "
                             "start the recipe afresh") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StoreError(f"{path} is not a nastk recipe state (format {STATE_FORMAT!r})")
        return cls(path, data)

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        return self.data["stages"]

    def entry(self, name: str) -> dict[str, Any] | None:
        """Stage ``name``'s record, or None if it never started."""
        return self.stages.get(name)

    def save(self) -> None:
        """Rewrite the file atomically."""
        write_atomic(self.path, (json.dumps(self.data, indent=2, allow_nan=False) + "\n")
                     .encode())

    def start(self, stage: ResolvedStage) -> None:
        """Record ``stage`` as running (a new session of it)."""
        old = self.stages.get(stage.name) or {}
        self.stages[stage.name] = {
            "kind": stage.kind, "status": "running", "hash": stage.digest,
            "resolved": stage.data, "outputs": None, "started": time.time(), "finished": None,
            "wall_s": float(old.get("wall_s") or 0.0), "sessions": int(old.get("sessions") or 0)
            + 1}
        self.save()

    def stop(self, name: str, wall_s: float, outputs: dict[str, Any] | None = None,
             error: str | None = None) -> None:
        """Record the end of stage ``name``'s session: done with ``outputs``, or cut off by
        ``error``."""
        entry = self.stages[name]
        entry["wall_s"] = float(entry.get("wall_s") or 0.0) + wall_s
        if outputs is not None:
            entry.update(status="done", outputs=json_safe(outputs), finished=time.time(),
                         error=None)
        else:
            entry["error"] = error
        self.save()

    def forget(self, name: str) -> None:
        """Drop stage ``name``'s record (``--redo``)."""
        self.stages.pop(name, None)
        self.save()
