"""Evaluators turn an architecture into a Result."""

from nastk.core.result import Result, Status

__all__ = ["Result", "Status"]
