"""Where a latency table's timings are taken: torch on the CPU (``cpu``), torch on a CUDA
device with synchronisation (``cuda``), or an ONNX Runtime session (``onnxruntime``, each
module exported to ONNX first).

Every back end times batch-1 forward passes in eval mode, many modules at once in interleaved
rounds (:meth:`Backend.measure_all`): after ``warmup`` untimed passes of each, every round runs
each module once untimed and then ``repeats / rounds`` timed passes (by default one), module
after module, and a module's latency is the smallest of its rounds' medians. A shared machine
slows down and speeds up for seconds at a time (other work, frequency changes); interleaving
puts every module under the same slow and fast phases, and the fastest round is what the
module costs when nothing else interferes. On this project's shared 2-core VM, timing 25
once-for-all networks (224x224, one thread) twice so gave a test-retest Spearman's rho of 0.99
(1.4 % mean difference) with 20 rounds of one pass, 0.91 (3.9 %) with 5 rounds of 4, and
0.66 (19 %) for one block of 20 passes per network (160x160).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import logging
import math
import os
import platform
import statistics
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nastk.core.cpus import ThreadCount, resolve_threads
from nastk.core.errors import ConfigError
from nastk.core.version import __version__
from nastk.evaluation.cost import MAX_LATENCY_SPREAD, spread_of, time_passes
from nastk.training.threads import torch_threads

__all__ = ["BACKENDS", "Backend", "Measured", "cpu_model", "make_backend"]

#: the back ends a table can be profiled on
BACKENDS: tuple[str, ...] = ("cpu", "cuda", "onnxruntime")

#: ``(done, total)`` after each module of each round
RoundProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class Measured:
    """One module's latency: ``ms``, the smallest of its rounds' medians; ``spread``, the
    interquartile range of all its timed passes over their median; ``busy``, that spread
    exceeded :data:`~nastk.evaluation.cost.MAX_LATENCY_SPREAD` (other work shared the
    device for much of the time)."""

    ms: float
    spread: float
    busy: bool


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


class Backend:
    """Times modules on one device; :meth:`device` describes it for the table and
    :meth:`same_device` says whether a table was profiled on it. ``repeats`` timed passes per
    module in all, spread over ``rounds`` interleaved rounds (see the module docstring)."""

    name: ClassVar[str] = "cpu"
    #: what must agree for two timings to be of the same device
    identity_keys: ClassVar[tuple[str, ...]] = ("backend", "cpu", "threads")

    def __init__(self, threads: ThreadCount = "auto", repeats: int = 20, warmup: int = 5,
                 rounds: int = 20) -> None:
        self.threads_option = threads
        self.repeats = int(repeats)
        self.warmup = int(warmup)
        self.rounds = max(1, min(int(rounds), self.repeats))
        n = resolve_threads(threads)
        self.threads = int(n) if n is not None else torch.get_num_threads()

    # -- what a back end provides -----------------------------------------------------------
    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], Any]:
        """A call that runs one batch-1 forward pass of ``module`` and returns when it is
        done."""
        module = module.eval()
        x = torch.zeros(1, *input_shape)
        return lambda: module(x)

    @contextmanager
    def session(self) -> Iterator[None]:
        """Around the timing: torch's threads and inference mode."""
        with torch_threads(self.threads), torch.inference_mode():
            yield

    # -- timing -----------------------------------------------------------------------------
    def measure_all(self, items: Sequence[tuple[nn.Module, tuple[int, ...]]],
                    progress: RoundProgress | None = None) -> list[Measured]:
        """The latency of each ``(module, input_shape)``, timed in interleaved rounds."""
        per_round = max(1, math.ceil(self.repeats / self.rounds))
        with self.session():
            calls = [self.prepare(m, tuple(shape)) for m, shape in items]
            for call in calls:
                for _ in range(self.warmup):
                    call()
            medians: list[list[float]] = [[] for _ in calls]
            passes: list[list[float]] = [[] for _ in calls]
            total, done = self.rounds * len(calls), 0
            for _ in range(self.rounds):
                for i, call in enumerate(calls):
                    call()  # its caches back after the other modules ran
                    times = time_passes(call, per_round)
                    medians[i].append(statistics.median(times))
                    passes[i].extend(times)
                    done += 1
                    if progress is not None:
                        progress(done, total)
        out = []
        for rounds, times in zip(medians, passes, strict=True):
            spread = spread_of(times)
            out.append(Measured(min(rounds), spread, spread > MAX_LATENCY_SPREAD))
        return out

    def measure(self, module: nn.Module, input_shape: tuple[int, ...]) -> Measured:
        """The latency of ``module`` on a batch-1 input of ``input_shape``."""
        return self.measure_all([(module, input_shape)])[0]

    # -- the device -------------------------------------------------------------------------
    def device(self) -> dict[str, Any]:
        """The device and software the timings were taken with."""
        return {"backend": self.name, "cpu": cpu_model(), "threads": self.threads,
                "cpus": os.cpu_count(), "torch": torch.__version__, "nastk": __version__,
                "platform": platform.platform(), "rounds": self.rounds}

    def same_device(self, recorded: dict[str, Any]) -> str | None:
        """``None`` when a table whose :meth:`device` was ``recorded`` was profiled on this
        device with this back end, else what differs."""
        mine = self.device()
        diffs = [f"{k} {recorded.get(k)!r} here {mine.get(k)!r}"
                 for k in self.identity_keys if recorded.get(k) != mine.get(k)]
        return "; ".join(diffs) or None


class CudaBackend(Backend):
    """Torch on a CUDA device: inputs and module on the GPU, each pass synchronised."""

    name: ClassVar[str] = "cuda"
    identity_keys: ClassVar[tuple[str, ...]] = ("backend", "gpu")

    def __init__(self, threads: ThreadCount = "auto", repeats: int = 20, warmup: int = 5,
                 rounds: int = 20, device: str = "cuda") -> None:
        if not torch.cuda.is_available():
            raise ConfigError("--backend cuda: torch sees no CUDA device here (this torch "
                              f"{torch.__version__} is "
                              f"{'a CPU build' if torch.version.cuda is None else 'CUDA'}); "
                              "profile on the GPU machine, or use --backend cpu")
        super().__init__(threads, repeats, warmup, rounds)
        self.torch_device = torch.device(device)

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], Any]:
        module = copy.deepcopy(module).to(self.torch_device).eval()
        x = torch.zeros(1, *input_shape, device=self.torch_device)
        device = self.torch_device

        def call() -> None:
            module(x)
            torch.cuda.synchronize(device)

        return call

    def device(self) -> dict[str, Any]:
        return {**super().device(), "backend": self.name,
                "gpu": torch.cuda.get_device_name(self.torch_device),
                "cuda": torch.version.cuda}


ORT_HINT = ('--backend onnxruntime needs onnx, onnxscript and onnxruntime: pip install -e '
            '".[onnx]" (from a clone) or pip install onnx onnxscript onnxruntime')


@contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The ONNX exporter's log warnings (optional torchvision ops it skips) kept off stderr."""
    log = logging.getLogger("torch.onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations
            yield
    finally:
        log.setLevel(level)


class OnnxRuntimeBackend(Backend):
    """An ONNX Runtime session (CPU execution provider, ``threads`` intra-op threads) on each
    module exported to ONNX at its input size."""

    name: ClassVar[str] = "onnxruntime"
    identity_keys: ClassVar[tuple[str, ...]] = ("backend", "cpu", "threads", "onnxruntime")

    def __init__(self, threads: ThreadCount = "auto", repeats: int = 20, warmup: int = 5,
                 rounds: int = 20) -> None:
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime")
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(f"{ORT_HINT} (missing: {', '.join(missing)})")
        super().__init__(threads, repeats, warmup, rounds)

    def prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Callable[[], Any]:
        import onnxruntime as ort

        module = module.eval()
        x = torch.zeros(1, *input_shape)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        with tempfile.TemporaryDirectory(prefix="nastk-ort-") as scratch, \
                torch.inference_mode(False), _quiet_exporter(), \
                redirect_stdout(io.StringIO()):  # the exporter prints its progress
            path = Path(scratch) / "unit.onnx"  # its weights may go to unit.onnx.data beside
            torch.onnx.export(module, (x,), str(path), dynamo=True, input_names=["input"])
            session = ort.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        return lambda: session.run(None, feed)

    @contextmanager
    def session(self) -> Iterator[None]:
        with nullcontext():
            yield

    def device(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {**super().device(), "backend": self.name, "onnxruntime": ort.__version__}


_KINDS: dict[str, type[Backend]] = {"cpu": Backend, "cuda": CudaBackend,
                                    "onnxruntime": OnnxRuntimeBackend}


def make_backend(name: str, threads: ThreadCount = "auto", repeats: int = 20,
                 warmup: int = 5, rounds: int = 20) -> Backend:
    """The back end ``name`` (one of :data:`BACKENDS`)."""
    if name not in _KINDS:
        raise ConfigError(f"latency back end {name!r} unknown; use one of {list(BACKENDS)}")
    if repeats < 1 or warmup < 0 or rounds < 1:
        raise ConfigError(f"repeats and rounds must be >= 1 and warmup >= 0, got {repeats}, "
                          f"{rounds} and {warmup}")
    return _KINDS[name](threads, repeats, warmup, rounds)
