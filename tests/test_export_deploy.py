"""Exports that deploy: a torch.export program and an ONNX model that take any batch and image
size, checked here independently of the checks the export records (ONNX Runtime run by the
test on a size the export did not try, against the checkpoint's PyTorch model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from nastk.cli.commands.export import _postprocess, load_exported
from nastk.cli.main import main
from nastk.core.registry import TASKS


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    cfg = {"name": "seg", "run_dir": str(tmp / "run"), "space": "small_cnn",
           "task": {"name": "segmentation", "options": {"n_samples": 40, "size": 48}},
           "strategy": "random", "evaluator": {"train": {"epochs": 1, "latency": False}},
           "budget": {"trials": 2}, "keep_checkpoints": 1}
    path = tmp / "seg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["search", str(path), "--no-progress"]) == 0
    return tmp / "run"


def test_the_program_takes_other_image_sizes(seg_run):
    """Exported at 48x48, run at 96x128 and other batch and image sizes."""
    assert main(["export", str(seg_run), "--out", str(seg_run / "torch_only")]) == 0
    out = seg_run / "torch_only"
    model = load_exported(out / "model.pt")
    program = torch.export.load(out / "model.pt2").module()
    for shape in ((1, 3, 96, 128), (4, 3, 48, 64), (2, 3, 80, 160)):
        x = torch.rand(shape)
        with torch.no_grad():
            torch.testing.assert_close(program(x), model(x), rtol=0, atol=1e-5)
    record = json.loads((out / "arch.json").read_text())
    assert record["exports"]["torch.export"]["within_tolerance"]
    assert not (out / "model.onnx").exists()
    assert record["output"]["postprocess"] is None  # segmentation: the map is the output


def test_onnx_export_equals_pytorch_on_any_size(seg_run, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime as ort

    assert main(["export", str(seg_run), "--format", "onnx"]) == 0
    assert "opset" in capsys.readouterr().out
    out = seg_run / "export"
    record = json.loads((out / "arch.json").read_text())
    onnx_check = record["exports"]["onnx"]
    assert isinstance(onnx_check["opset"], int) and onnx_check["opset"] >= 17
    assert len(onnx_check["max_abs_diff"]) == 3 and onnx_check["within_tolerance"]
    assert all(v <= 1e-4 for v in onnx_check["max_abs_diff"].values())
    model = load_exported(out / "model.pt")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for shape in ((5, 3, 112, 96), (1, 3, 48, 80)):  # sizes the export did not check
        x = torch.rand(shape)
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
        with torch.no_grad():
            want = model(x).numpy()
        assert got.shape == want.shape and got.shape[-2:] == shape[-2:]  # the full map
        assert np.abs(got - want).max() <= 1e-4


def test_without_onnxruntime_the_export_says_how_to_install(seg_run, monkeypatch, capsys):
    monkeypatch.setattr("nastk.cli.commands.export.missing_onnx", lambda: ["onnxruntime"])
    target = seg_run / "never"
    assert main(["export", str(seg_run), "--format", "onnx", "--out", str(target)]) != 0
    err = capsys.readouterr().err
    assert 'pip install -e ".[onnx]"' in err and "onnxruntime" in err
    assert not target.exists()


def test_detection_names_its_post_processing_and_segmentation_has_none():
    det = TASKS.get("detection")()
    assert _postprocess(det).endswith(".postprocess")
    assert _postprocess(TASKS.get("segmentation")()) is None
    assert _postprocess(TASKS.get("saliency")()) is None
