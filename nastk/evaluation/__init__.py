"""Evaluators turn an architecture into a Result."""

from nastk.evaluation.result import Result, Status

__all__ = ["Result", "Status"]
