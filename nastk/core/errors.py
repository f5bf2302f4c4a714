"""Exceptions raised by nastk, each carrying a message that names the bad value and the fix."""

from __future__ import annotations


class NastkError(Exception):
    """Base class for every error nastk raises on purpose."""


class RunStoppingError(NastkError):
    """Something that is not the candidate's fault went wrong while it was evaluated (the disk
    filled up, a data-set file cannot be read): the search stops at once instead of recording
    a failed trial the strategy would learn from; the candidate is recorded as interrupted and
    evaluated again when the run is resumed after the cause is fixed."""


class InvalidArchitectureError(NastkError, ValueError):
    """An architecture does not belong to its search space."""


class ConfigError(NastkError, ValueError):
    """A user-written configuration is invalid."""


class RegistryError(NastkError, KeyError):
    """A plugin name is unknown or registered twice."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it verbatim
        return str(self.args[0]) if self.args else ""


class StoreError(NastkError, RuntimeError):
    """A run store cannot be opened or does not match the run being started."""


class BenchmarkDataError(NastkError, FileNotFoundError):
    """A tabular benchmark's data files are missing or malformed."""
