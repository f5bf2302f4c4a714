"""`nastk export`: a run's best architecture (or, with ``--front``, every trial on its Pareto
front) as its JSON, a weights-only checkpoint, and a torch.export file.

The best trial is picked by the objective the run recorded in its store; the model is built
from the run's space and task, and the evaluator only when the trial's weights must be
rebuilt: extracted from the supernet for a weight-sharing run (what the weight-sharing
evaluator scored: the sub-network after batch-norm recalibration), trained again otherwise.

``model.pt`` holds plain data and tensors only (loads with ``torch.load(..., weights_only=True)``)
and rebuilds with :func:`load_exported`; ``model.pt2`` is a ``torch.export`` program that loads
with plain torch (``torch.export.load``), no nastk needed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from nastk.cli.console import results_console
from nastk.config.compose import build_evaluator, build_from_refs, build_space_and_task
from nastk.config.schema import SearchConfig
from nastk.core.errors import ConfigError, NastkError
from nastk.core.objective import Objective
from nastk.core.pareto import pareto_front
from nastk.core.trial import Trial
from nastk.core.weights import load_file, read_weights, save_weights, write_atomic
from nastk.nn.batchnorm import recalibrate_bn
from nastk.nn.deploy import (
    ONNX_HINT,
    TOLERANCE,
    deployment_sizes,
    export_onnx,
    export_program,
    missing_onnx,
)
from nastk.report.formatting import format_cost, format_metric
from nastk.run import layout
from nastk.run.layout import RunLayout
from nastk.run.record import RunRecord, open_run
from nastk.space.architecture import Architecture
from nastk.space.search_space import SearchSpace
from nastk.task.contract import Task

FORMAT = "nastk.export/1"
FRONT_FORMAT = "nastk.front/1"


@dataclass
class Exported:
    """Paths written by :func:`export_run` (one per point for :func:`export_front`)."""

    trial: Trial
    arch_json: Path
    checkpoint: Path | None = None
    program: Path | None = None
    onnx: Path | None = None
    #: per format (``torch.export``, ``onnx``): opset, dynamic axes, max |diff| per input size
    exports: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def export_run(run_dir: str | Path, out_dir: str | Path | None = None,
               trial_id: int | None = None, formats: Sequence[str] = ("torch",)) -> Exported:
    """Export the best trial of ``run_dir`` (or trial ``trial_id``) into ``out_dir``
    (default ``run_dir/export``). Weights come from the trial's checkpoint; when it was not
    kept, a weight-sharing run's candidate is extracted from the supernet again (batch norm
    recalibrated as when it was scored, no training), and any other candidate is trained again
    with the run's evaluator (training is seeded by the architecture, so it reproduces the
    recorded weights on the same machine). ``formats`` with ``"onnx"`` writes ``model.onnx``
    too (refused before anything is written when onnx or onnxruntime is missing)."""
    run_dir = Path(run_dir)
    if "onnx" in formats and missing_onnx():
        raise ConfigError(f"{ONNX_HINT} (missing: {', '.join(missing_onnx())})")
    run, trial = _load_trial(run_dir, trial_id)
    out = Path(out_dir) if out_dir is not None else run_dir / "export"
    return _export_trial(run, trial, out, _ModelSource(run), formats)


def export_front(run_dir: str | Path, out_dir: str | Path | None = None,
                 formats: Sequence[str] = ("torch",)) -> list[Exported]:
    """Export every trial on the Pareto front of ``run_dir`` (the run's objective metric
    against its costs, see :func:`pareto_front`) into ``out_dir/trial_<id>/`` (default
    ``run_dir/front``), each with the files of :func:`export_run`, and write
    ``out_dir/front.json`` listing each point's trial, architecture, metric and costs. Space,
    task and (for trials whose checkpoint was not kept) the evaluator are built once: a
    weight-sharing run loads its supernet once and extracts each candidate from it."""
    run_dir = Path(run_dir)
    record = open_run(run_dir)
    front = pareto_front(record.finished, record.objective)
    if not front:
        raise NastkError(f"{run_dir} has no successful trial to export")
    out = Path(out_dir) if out_dir is not None else run_dir / layout.FRONT_DIR
    source = _ModelSource(record)
    if "onnx" in formats and missing_onnx():
        raise ConfigError(f"{ONNX_HINT} (missing: {', '.join(missing_onnx())})")
    exported = [_export_trial(record, t, out / layout.trial_folder_name(t.id), source,
                              formats)
                for t in front]
    objective = record.objective
    points = []
    for e in exported:
        result = e.trial.result
        assert result is not None
        points.append({"trial": e.trial.id, "arch": e.trial.arch.as_dict(),
                       "arch_key": e.trial.arch.key,
                       "metric": result.value(objective.metric),
                       "costs": {c: result.value(c) for c in objective.costs},
                       "all_costs": dict(result.costs), "metrics": dict(result.metrics),
                       "dir": e.arch_json.parent.name,
                       "model": e.checkpoint.name if e.checkpoint else None,
                       "program": e.program.name if e.program else None})
    doc = {"format": FRONT_FORMAT, "run_dir": str(run_dir),
           "objective": objective.model_dump(mode="json"), "points": points}
    write_atomic(out / layout.FRONT_JSON, (json.dumps(doc, indent=2) + "\n").encode())
    return exported


class _ModelSource:
    """A run's space and task, and its evaluator when a trial's weights must be rebuilt, each
    built once (a weight-sharing evaluator loads its supernet once for a whole front)."""

    def __init__(self, run: RunRecord) -> None:
        self.run = run
        self._space_task: tuple[SearchSpace, Task | None] | None = None
        self._evaluator: Any = None

    def space_and_task(self) -> tuple[SearchSpace, Task | None]:
        if self._space_task is None:
            self._space_task = build_space_and_task(self.run.config)
        return self._space_task

    def evaluator(self) -> Any:
        if self._evaluator is None:
            space, task = self.space_and_task()
            self._evaluator = build_evaluator(self.run.config, space, task)
        return self._evaluator

    def weights(self, trial: Trial, out: Path) -> tuple[Path, str | None]:
        """The trial's weights file, and a note when it had to be rebuilt."""
        ckpt = RunLayout(self.run.run_dir).trial_checkpoint(trial.id)
        if ckpt.is_file():
            return ckpt, None
        evaluator = self.evaluator()
        from nastk.evaluation.weight_sharing import WeightSharingEvaluator

        if isinstance(evaluator, WeightSharingEvaluator):
            ckpt = out / layout.trial_checkpoint_name(trial.id, "_extracted")
            model = evaluator.model
            model.set_active(trial.arch)
            recalibrate_bn(model, evaluator.calibration)  # what the evaluator scored
            save_weights(model.extract(trial.arch).eval().cpu(), ckpt)
            return ckpt, (f"no checkpoint kept for trial {trial.id}; extracted its sub-network "
                          f"from the supernet {self.run.config.evaluator.supernet.checkpoint}"
                          " (batch norm recalibrated as when it was scored; no training)")
        ckpt = out / layout.trial_checkpoint_name(trial.id, "_retrained")
        retrained = evaluator.evaluate(trial.arch, checkpoint=ckpt)
        if not retrained.ok:
            raise NastkError(f"re-training trial {trial.id} failed: {retrained.error}")
        return ckpt, (f"no checkpoint kept for trial {trial.id}; ran its evaluation again to "
                      "rebuild the weights")


def _export_trial(run: RunRecord, trial: Trial, out: Path, source: _ModelSource,
                  formats: Sequence[str] = ("torch",)) -> Exported:
    config = run.config
    out.mkdir(parents=True, exist_ok=True)
    assert trial.result is not None
    record = {"arch": trial.arch.as_dict(), "arch_key": trial.arch.key, "trial": trial.id,
              "metrics": trial.result.metrics, "costs": trial.result.costs,
              "space": config.space.model_dump(), "task": config.task.model_dump()
              if config.task else None, "run_dir": str(run.run_dir)}
    arch_path = out / layout.ARCH_JSON
    arch_path.write_text(json.dumps(record, indent=2) + "\n")
    result = Exported(trial, arch_path)
    if config.task is None:
        result.notes.append("this run scored architectures with a function; there is no model "
                            "to export, only its architecture")
        return result
    space, task = source.space_and_task()
    assert task is not None
    record["input"] = input_record(task)
    arch_path.write_text(json.dumps(record, indent=2) + "\n")
    ckpt, note = source.weights(trial, out)
    if note:
        result.notes.append(note)
    model = task.build_model(space, trial.arch)
    model.load_state_dict(read_weights(ckpt, f"checkpoint of trial {trial.id}"))
    model.eval()
    payload: dict[str, Any] = {
        "format": FORMAT, "arch": trial.arch.to_json(),
        "space": json.dumps(config.space.model_dump()),
        "task": json.dumps(config.task.model_dump() if config.task else None),
        "plugins": list(config.plugins), "input_shape": list(task.input_shape),
        "input": input_record(task),
        "metrics": dict(trial.result.metrics), "costs": dict(trial.result.costs),
        "state_dict": model.state_dict(),
    }
    result.checkpoint = out / layout.EXPORT_MODEL
    torch.save(payload, result.checkpoint)
    example = torch.rand(2, *task.input_shape, generator=torch.Generator().manual_seed(0))
    sizes = deployment_sizes(task.input_shape)
    exports: dict[str, Any] = {}
    try:
        result.program = out / layout.EXPORT_PROGRAM
        exports["torch.export"] = export_program(model, example, result.program, sizes)
    except Exception as err:  # some user models are not exportable; the checkpoint still is
        result.program = None
        result.notes.append(f"torch.export could not trace the model ({type(err).__name__}: "
                            f"{err}); only model.pt was written")
    if "onnx" in formats:
        try:
            result.onnx = out / layout.EXPORT_ONNX
            exports["onnx"] = export_onnx(model, example, result.onnx, sizes)
        except Exception as err:
            result.onnx = None
            result.notes.append(f"ONNX export failed ({type(err).__name__}: {err})")
    for name, check in exports.items():
        worst = max(check["max_abs_diff"].values())
        check["tolerance"] = TOLERANCE
        check["within_tolerance"] = worst <= TOLERANCE
        if worst > TOLERANCE:
            result.notes.append(f"{name}: outputs differ from PyTorch's by up to {worst:.2e} "
                                f"(tolerance {TOLERANCE:g})")
    post = _postprocess(task)
    record["exports"] = exports
    record["output"] = ({"postprocess": post, "note": "the exported network returns the "
                         "head's raw outputs; decode them with this function"}
                        if post else {"postprocess": None, "note": "the network's output is "
                                      "the prediction (e.g. the full-resolution map)"})
    arch_path.write_text(json.dumps(record, indent=2) + "\n")
    result.exports = exports
    return result


def _postprocess(task: Task) -> str | None:
    """``module:Class.postprocess`` when the task decodes the network's outputs after it
    (detection: boxes and non-maximum suppression), else ``None``."""
    from nastk.task.contract import Task as Contract

    own = type(task).postprocess
    if own is getattr(Contract, "postprocess", None):
        return None
    return f"{type(task).__module__}:{type(task).__qualname__}.postprocess"


def input_record(task: Task) -> dict[str, Any]:
    """What the exported model takes: its input shape, the value range of its images, and the
    normalisation the model applies itself (its first layer; ``None`` when it applies none),
    for code that prepares images for it."""
    norm = getattr(task, "normalization", None)
    return {"shape": list(task.input_shape), "range": [0.0, 1.0],
            "normalize": None if norm is None else {"mean": list(norm.mean),
                                                   "std": list(norm.std),
                                                   "applied_by_the_model": True}}


def best_trial(run_dir: str | Path, trial_id: int | None = None) -> tuple[SearchConfig, Trial]:
    """The config of the search run in ``run_dir`` and its best successful trial (by the
    run's objective, read from its store), or trial ``trial_id``."""
    record, trial = _load_trial(Path(run_dir), trial_id)
    return record.config, trial


def _load_trial(run_dir: Path, trial_id: int | None) -> tuple[RunRecord, Trial]:
    record = open_run(run_dir)
    return record, _pick(record.finished, record.objective, trial_id, run_dir)


def _pick(trials: list[Trial], objective: Objective, trial_id: int | None, run_dir: Path) -> Trial:
    if trial_id is not None:
        for t in trials:
            if t.id == trial_id:
                if t.result is None or not t.result.ok:
                    raise NastkError(f"trial {trial_id} of {run_dir} failed; export a complete "
                                     "one")
                return t
        raise NastkError(f"{run_dir} has no finished trial {trial_id}")
    best = objective.best(trials, key=lambda t: (
        objective.value(t.result) if t.result is not None else None))
    if best is None:
        raise NastkError(f"{run_dir} has no successful trial to export")
    return best


def load_exported(path: str | Path) -> nn.Module:
    """Rebuild the model saved by :func:`export_run` (weights-only load)."""
    payload = load_file(Path(path), "exported model",
                        "; export one with `nastk export RUN_DIR`")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NastkError(f"{path} is not a nastk export (expected format {FORMAT!r})")
    space, task = build_from_refs(payload["plugins"], json.loads(payload["space"]),
                                  json.loads(payload["task"]))
    assert task is not None
    arch = space.validate(Architecture.from_json(payload["arch"]))
    model = task.build_model(space, arch)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


# -- the command line ---------------------------------------------------------------------------
def run(args: argparse.Namespace, console: Console) -> int:
    """`nastk export RUN_DIR`: export the best trial (or ``--trial``, or with ``--front`` every
    trial on the Pareto front) and print what was written."""
    if args.front:
        if args.trial is not None:
            raise ConfigError("--front exports every trial on the Pareto front; drop --trial")
        _print_front(export_front(args.run_dir, args.out,
                                  ("torch", "onnx") if args.format == "onnx" else ("torch",)))
        return 0
    formats = ("torch", "onnx") if args.format == "onnx" else ("torch",)
    exported = export_run(args.run_dir, args.out, args.trial, formats)
    out = results_console()
    for note in exported.notes:
        out.print(f"note: {note}")
    out.print(f"trial {exported.trial.id}: {exported.trial.arch.key}")
    out.print(f"architecture: {exported.arch_json}")
    if exported.checkpoint:
        out.print(f"checkpoint:   {exported.checkpoint}  (nastk.cli.commands.export.load_exported)")
    if exported.program:
        out.print(f"program:      {exported.program}  (torch.export.load, no nastk needed; "
                  "any batch and image size)")
    if exported.onnx:
        check = exported.exports["onnx"]
        worst = max(check["max_abs_diff"].values())
        out.print(f"onnx:         {exported.onnx}  (opset {check['opset']}, any batch and image "
                  f"size; ONNX Runtime vs PyTorch on {len(check['max_abs_diff'])} sizes: max "
                  f"|diff| {worst:.1e})")
    return 0


def _print_front(exported: list[Exported]) -> None:
    """The exported Pareto front as a table (metrics, costs, folder), its notes and front.json."""
    out = results_console()
    first = exported[0]
    table = Table(title=f"Pareto front: {len(exported)} trials", title_justify="left")
    table.add_column("trial", justify="right")
    metrics = list(first.trial.result.metrics) if first.trial.result else []
    costs = sorted({c for e in exported for c in (e.trial.result.costs if e.trial.result
                                                  else {})})
    for name in (*metrics[:3], *costs):
        table.add_column(name, justify="right")
    table.add_column("folder")
    for e in exported:
        r = e.trial.result
        table.add_row(str(e.trial.id), *(format_metric(r.metrics.get(m)) for m in metrics[:3]),
                      *(format_cost(c, r.costs.get(c)) for c in costs),
                      str(e.arch_json.parent))
    out.print(table)
    for e in exported:
        for note in e.notes:
            out.print(f"note: trial {e.trial.id}: {note}")
    out.print(f"front: {first.arch_json.parent.parent / layout.FRONT_JSON}")
