"""Latency for a device without running every candidate on it: a table of the device's
measured layer latencies (:mod:`~nastk.latency.profile`), summed per architecture and
corrected by a model fitted on a few measured whole networks (:mod:`~nastk.latency.correction`),
which predicts a mean and an interval (:mod:`~nastk.latency.predictor`); the timing back ends
(:mod:`~nastk.latency.backends`) and the check of a run's front against the device
(:mod:`~nastk.latency.front_check`).

A space takes part by describing its networks as units (:mod:`~nastk.latency.units`): its
``latency_units(input_shape)`` returns a :class:`~nastk.latency.units.LatencyUnits`."""

from nastk.latency.backends import BACKENDS, Backend, make_backend
from nastk.latency.correction import LatencyCorrection
from nastk.latency.predictor import LatencyPredictor, Prediction
from nastk.latency.table import LatencyTable, read_table
from nastk.latency.units import LatencyUnit, LatencyUnits, latency_units

__all__ = ["BACKENDS", "Backend", "LatencyCorrection", "LatencyPredictor", "LatencyTable",
           "LatencyUnit", "LatencyUnits", "Prediction", "latency_units", "make_backend",
           "read_table"]
