"""A run's identity and what an edited config changed in it.

Every kind of run (a search, a supernet training, a recipe stage) is started from a config;
the part of it that must not change when the run is resumed or its output reused is the
config's *identity* (its schema's ``identity()``: a search leaves out budget, name, run folder,
checkpoints kept and executor; a supernet training leaves out the number of workers and where
they run). This module compares a stored identity with a config, after re-validating the
stored one with today's schema (so settings added since the run started, at their defaults, do
not look changed), and says what differs, leaf by leaf, in one format everywhere::

    in ['evaluator', 'seed']: evaluator.train.lr: 0.005 -> 0.01; seed: 0 -> 1
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol

from pydantic import BaseModel, ValidationError

__all__ = ["NOT_SET", "HasIdentity", "canonical_hash", "changed_fields", "changes",
           "describe_changes", "identity_differences", "normalized"]

#: how a leaf that one side lacks is shown
NOT_SET = "(not set)"


class HasIdentity(Protocol):
    """A validated config whose ``identity()`` is the JSON data a resumed run must share."""

    def identity(self) -> dict[str, Any]: ...


def canonical_hash(data: Any) -> str:
    """sha256 of the canonical JSON of ``data`` (sorted keys, no spaces)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def changes(before: Any, after: Any, path: str = "") -> list[str]:
    """``field.path: <before> -> <after>`` for every leaf that differs (mappings are compared
    key by key; a key one side lacks shows as ``(not set)``)."""
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{key}" if path else str(key)
            out += changes(before.get(key, NOT_SET), after.get(key, NOT_SET), sub)
        return out
    if before == after:
        return []
    shown = [v if v is NOT_SET else repr(v) for v in (before, after)]
    return [f"{path or '(config)'}: {shown[0]} -> {shown[1]}"]


def changed_fields(found: list[str]) -> list[str]:
    """The top-level fields named by :func:`changes`' lines, sorted."""
    return sorted({c.split(":")[0].split(".")[0] for c in found})


def describe_changes(found: list[str], most: int = 6) -> str:
    """The first ``most`` changes joined, and how many more there are."""
    return "; ".join(found[:most]) + (f"; and {len(found) - most} more"
                                      if len(found) > most else "")


def normalized(schema: type[BaseModel], stored: dict[str, Any]) -> dict[str, Any]:
    """A stored identity re-validated by ``schema`` (whose instances have ``identity()``), so
    that settings added since it was stored compare at their defaults; as stored when it no
    longer validates (it then differs, and the differences are shown as they are)."""
    try:
        return schema.model_validate(stored).identity()  # type: ignore[attr-defined]
    except (ValidationError, ValueError, TypeError):
        return stored


def identity_differences(stored: dict[str, Any], config: HasIdentity,
                         excluded: tuple[str, ...] = ()) -> str | None:
    """``None`` when the stored identity is ``config``'s, else the differences in words
    (``in [fields]: path: old -> new; ...``). ``excluded`` top-level keys of ``stored`` are
    dropped first (identities written by older versions kept some of them)."""
    current = config.identity()
    if isinstance(config, BaseModel):
        stored = normalized(type(config), {k: v for k, v in stored.items()
                                           if k not in excluded})
    found = changes(stored, current)
    if not found:
        return None
    return f"in {changed_fields(found)}: {describe_changes(found)}"
