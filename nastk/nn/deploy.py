"""Exporting a trained network for deployment: a ``torch.export`` program and an ONNX model,
both with dynamic batch and spatial sizes, each checked against the PyTorch model on three
input sizes (the largest absolute difference recorded)."""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "ONNX_HINT",
    "TOLERANCE",
    "check_sizes",
    "deployment_sizes",
    "export_onnx",
    "export_program",
    "missing_onnx",
]

#: the largest absolute difference to the PyTorch model accepted in float32
TOLERANCE = 1e-4
ONNX_HINT = ('--format onnx needs onnx, onnxscript and onnxruntime: pip install -e ".[onnx]" '
             "(from a clone) or pip install onnx onnxscript onnxruntime")


def missing_onnx() -> list[str]:
    """The packages ONNX export and its check need that are not installed."""
    return [m for m in ("onnx", "onnxscript", "onnxruntime")
            if importlib.util.find_spec(m) is None]


def deployment_sizes(input_shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Three inputs of other batch and spatial sizes than an export's example: the task's
    size with batch 1, twice its size with batch 2, and 32 / 64 pixels more with batch 3."""
    c, h, w = (int(v) for v in input_shape)
    return [(1, c, h, w), (2, c, 2 * h, 2 * w), (3, c, h + 32, w + 64)]


def _dynamic(example: torch.Tensor) -> tuple[dict[int, Any], ...]:
    auto = torch.export.Dim.AUTO
    return ({0: auto, **({2: auto, 3: auto} if example.dim() == 4 else {})},)


def check_sizes(reference: nn.Module, run: Any, sizes: Sequence[tuple[int, ...]],
                seed: int = 0) -> dict[str, float]:
    """``{"BxCxHxW": max |run(x) - reference(x)|}`` over ``sizes`` (``run`` maps a tensor to a
    tensor or an array)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.no_grad():
        for size in sizes:
            x = torch.rand(size, generator=gen)
            want = reference(x)
            got = torch.as_tensor(run(x))
            out["x".join(map(str, size))] = float((got - want).abs().max())
    return out


def export_program(model: nn.Module, example: torch.Tensor, path: Path,
                   sizes: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    """Save ``model`` as a ``torch.export`` program taking any batch and spatial size; returns
    ``{"max_abs_diff": {size: diff}}`` on ``sizes``."""
    program = torch.export.export(model, (example,), dynamic_shapes=_dynamic(example))
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    return {"dynamic": ["batch", "height", "width"],
            "max_abs_diff": check_sizes(model, loaded, sizes)}


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path,
                sizes: Sequence[tuple[int, ...]]) -> dict[str, Any]:
    """Save ``model`` as ONNX (the dynamo exporter, dynamic batch and spatial sizes) and run it
    with ONNX Runtime on ``sizes``; returns the opset and ``{"max_abs_diff": {size: diff}}``."""
    import onnx
    import onnxruntime as ort

    with redirect_stdout(io.StringIO()):  # the exporter prints its progress
        torch.onnx.export(model, (example,), str(path), dynamo=True,
                          dynamic_shapes=_dynamic(example), input_names=["input"],
                          output_names=["output"])
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    opset = next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                 None)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    diffs = check_sizes(model, lambda x: session.run(None, {name: x.numpy()})[0], sizes)
    return {"opset": opset, "dynamic": ["batch", "height", "width"],
            "runtime": f"onnxruntime {ort.__version__}", "max_abs_diff": diffs}
