"""The immutable, hashable architecture value that flows through every strategy and store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        raise TypeError("architecture values must be scalars or (nested) lists, not mappings")
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return value.item()
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class Architecture(Mapping[str, Any]):
    """A frozen mapping from dimension name to value.

    Lists are stored as tuples so the architecture is hashable; :attr:`key` is a stable string
    (independent of insertion order and of the Python process) used for de-duplication.
    """

    __slots__ = ("_key", "_values")

    def __init__(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        merged = dict(values or {}, **kwargs)
        frozen = {str(k): _freeze(v) for k, v in sorted(merged.items())}
        object.__setattr__(self, "_values", frozen)
        object.__setattr__(self, "_key", json.dumps(self.to_dict(frozen), sort_keys=True,
                                                    separators=(",", ":")))

    @staticmethod
    def to_dict(values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: _thaw(v) for k, v in values.items()}

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Architecture is immutable; use .replace(...)")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Architecture):
            return self._key == other._key
        return NotImplemented

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Architecture({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Architecture, (dict(self._values),))

    @property
    def key(self) -> str:
        """Canonical JSON text; equal architectures have equal keys."""
        return self._key

    @property
    def short_id(self) -> str:
        """First 10 hex digits of the key's SHA-1, handy in tables and file names."""
        return hashlib.sha1(self._key.encode()).hexdigest()[:10]

    def replace(self, **changes: Any) -> Architecture:
        """A copy with some dimensions changed."""
        return Architecture({**self._values, **changes})

    def to_json(self) -> str:
        return self._key

    @classmethod
    def from_json(cls, text: str | bytes) -> Architecture:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"an architecture's JSON must be an object, got {type(data).__name__}")
        return cls(data)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return self.to_dict(self._values)
