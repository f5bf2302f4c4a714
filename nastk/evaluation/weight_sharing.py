"""Score architectures with weights inherited from a trained supernet (no training)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from pydantic import ConfigDict, Field

from nastk.core.cpus import THREADS_HELP, Threads
from nastk.core.errors import RunStoppingError
from nastk.core.options import QuietDefaults
from nastk.core.result import Result
from nastk.core.streams import Stream
from nastk.core.weights import save_weights
from nastk.data.loaders import calibration_batches, loader_workers, make_loader
from nastk.evaluation.base import format_error
from nastk.evaluation.cost import TableCosts, model_costs
from nastk.nn.batchnorm import recalibrate_bn
from nastk.nn.supernet import SupernetModel
from nastk.space.architecture import Architecture
from nastk.training.precision import Precision, autocast, autocast_model, device_for
from nastk.training.threads import torch_threads

if TYPE_CHECKING:
    from nastk.latency.predictor import LatencyPredictor


class WeightSharingConfig(QuietDefaults):
    """``evaluator.supernet`` in a search config."""

    model_config = ConfigDict(extra="forbid")
    # runs stored before formats existed dump (and are identified) as they were
    quiet_defaults: ClassVar[tuple[str, ...]] = ("format",)

    checkpoint: Path = Field(description="supernet checkpoint written by `nastk supernet "
                                         "train` (or any file with the same layout)")
    format: Literal["nastk", "ofa"] = Field(
        "nastk", description="nastk: a checkpoint of `nastk supernet train`; ofa: "
        "once-for-all's own OFAMobileNetV3 file (space ofa_mbv3_full), searched as it is: "
        "every tensor of the task's model, head included, must be in it (a classification "
        "task with head_hidden 1280 and the file's classes); for another task, fine-tune it "
        "first with `nastk supernet train` and training.init {from: FILE, format: ofa}")
    calib_batches: int = Field(10, ge=1, description="training batches for BN recalibration")
    calib_batch_size: int = Field(64, ge=1)
    eval_batch_size: int = Field(256, ge=1)
    eval_split: str = "val"
    latency: bool = Field(False, description="measure latency_ms of the extracted subnet")
    latency_repeats: int = Field(10, ge=1)
    num_threads: Threads = Field("auto", description="torch CPU threads while scoring; "
                                 + THREADS_HELP)
    device: str = Field("cpu", description="torch device to score on, e.g. 'cpu' or 'cuda'")
    precision: Precision = Field(
        "fp32", description="numeric precision of the scoring and BN-recalibration forward "
        "passes: fp32, bf16 (CPU or CUDA) or fp16 (CUDA only); metrics are computed in float32")


class WeightSharingEvaluator:
    """Evaluates a candidate by activating it in the supernet, recalibrating batch norm on a
    fixed set of training batches (the same for every candidate), and scoring the evaluation
    split. Nothing is rebuilt between candidates; costs come from the extracted subnet (params
    and FLOPs from the space's cost table when it has one, :class:`TableCosts`)."""

    #: predicts ``latency_ms`` instead of timing the network (``latency: {table: FILE}``;
    #: set by the composition root)
    latency_predictor: LatencyPredictor | None = None

    def __init__(self, model: SupernetModel, config: WeightSharingConfig, seed: int = 0, *,
                 where: str = "evaluator.supernet") -> None:
        self.model = model
        self.config = config
        self.task = model.task
        self.device = device_for(config.device, config.precision, where)
        self.model.to(self.device).eval()
        splits = self.task.splits()
        if config.eval_split not in splits:
            raise ValueError(f"eval_split {config.eval_split!r} not in the task's splits "
                             f"{sorted(splits)}")
        self.calibration: list[torch.Tensor] = calibration_batches(
            self.task, splits["train"], config.calib_batch_size, config.calib_batches,
            Stream.BN_CALIBRATION.seed(seed), device=self.device)
        self.eval_loader = make_loader(self.task, splits[config.eval_split],
                                       config.eval_batch_size)
        #: params and FLOPs from the space's cost table, when it has one (no subnet counted)
        self.table = TableCosts(getattr(model, "space", None), self.task.input_shape,
                                self._subnet)

    def _subnet(self, arch: Architecture) -> torch.nn.Module:
        """The extracted task network of ``arch`` on the CPU in eval mode (what is costed)."""
        return self.model.extract(arch).cpu().eval()

    @torch.no_grad()
    def predict(self, arch: Architecture, inputs: torch.Tensor,
                checkpoint: Path | None = None) -> Any:
        """The network's outputs for ``inputs`` with ``arch`` active (batch norm recalibrated
        on the calibration batches first, as for scoring), in eval mode."""
        self.model.set_active(arch)
        self._recalibrate()
        self.model.eval()
        return autocast_model(self.model, self.device, self.config.precision)(
            inputs.to(self.device))

    def _recalibrate(self) -> None:
        with autocast(self.device, self.config.precision):
            recalibrate_bn(self.model, self.calibration)

    def evaluate(self, arch: Architecture, checkpoint: Path | None = None) -> Result:
        t0 = time.perf_counter()
        info: dict[str, Any] = {"evaluator": "weight_sharing"}
        with torch_threads(self.config.num_threads,
                           loader_workers=loader_workers(self.task, self.eval_loader.dataset)):
            try:
                self.model.set_active(arch)
                self._recalibrate()
                metrics = self.task.evaluate(
                    autocast_model(self.model, self.device, self.config.precision),
                    self.eval_loader)
                counts = self.table(arch)
                predicted = self.latency_predictor
                measure = self.config.latency and predicted is None
                if counts is not None and not measure and checkpoint is None:
                    costs = dict(counts)  # the space's cost table: nothing to build
                else:
                    sub = self.model.extract(arch).eval()
                    costs = model_costs(sub.cpu(), self.task.input_shape, latency=measure,
                                        repeats=self.config.latency_repeats, info=info,
                                        counts=counts)
                    if checkpoint is not None:
                        save_weights(sub, checkpoint)
                if predicted is not None:  # latency: {table: FILE}
                    predicted.apply(arch, costs, info)
            except RunStoppingError:  # a full disk, an unreadable data file
                raise
            except Exception as err:
                return Result.failed(format_error(err), duration_s=time.perf_counter() - t0)
        bad = {k: v for k, v in metrics.items() if v != v}
        if bad:
            return Result.failed(f"non-finite metrics {bad}", costs, time.perf_counter() - t0)
        return Result.complete(metrics, costs, time.perf_counter() - t0,
                               info=info)
