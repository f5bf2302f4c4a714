"""ONNX and torch.export equality: the largest absolute difference from the PyTorch model, on
three input sizes other than the export's, of each built-in task's model (default options and
input size) on a sampled architecture of a space it is searched with, through
``nastk.nn.deploy`` (what `nastk export --format onnx` runs).

    python benchmarks/onnx_equality.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nastk.config.compose import build_space_and_task
from nastk.config.schema import parse_config
from nastk.nn.deploy import deployment_sizes, export_onnx, export_program

CASES = [
    ("classification", "ofa_mbv3", {"stages": [16, 24, 32, 48, 64], "final_channels": 128}),
    ("segmentation", "ofa_mbv3", {}),
    ("saliency", "salnas", {}),
    ("detection", "ofa_mbv3", {}),
]


def main() -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, torch {torch.__version__}")
    print("| task | space | input | sizes checked | torch.export max abs diff | ONNX opset | "
          "ONNX Runtime max abs diff |")
    print("| --- | --- | --- | --- | ---: | ---: | ---: |")
    for task_name, space_name, options in CASES:
        config = parse_config({"space": {"name": space_name, "options": options},
                               "task": task_name})
        space, task = build_space_and_task(config)
        assert task is not None
        arch = space.sample(np.random.default_rng(0))
        model = task.build_model(space, arch).eval()
        example = torch.rand(2, *task.input_shape, generator=torch.Generator().manual_seed(0))
        sizes = deployment_sizes(task.input_shape)
        with tempfile.TemporaryDirectory() as tmp:
            program = export_program(model, example, Path(tmp) / "m.pt2", sizes)
            onnx = export_onnx(model, example, Path(tmp) / "m.onnx", sizes)
        print(f"| {task_name} | {space_name} | {'x'.join(map(str, task.input_shape))} | "
              f"{', '.join(program['max_abs_diff'])} | "
              f"{max(program['max_abs_diff'].values()):.1e} | {onnx['opset']} | "
              f"{max(onnx['max_abs_diff'].values()):.1e} |")


if __name__ == "__main__":
    main()
