"""`nastk distill`: a teacher trained first (or loaded), students with and without KD, the
report; a teacher checkpoint of another shape is refused with the tensor named."""

import json

import numpy as np
import pytest
import torch
import yaml

from nastk.cli.main import main
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError
from nastk.search_spaces.nas_segm import NasSegmSpace
from nastk.training.distill import DistillConfig

TINY = dict(stem_channels=8, encoder_widths=[8, 8, 8], encoder_depths=[1, 1, 1],
            decoder_channels=8, agg_channels=8, n_layers=2, n_stride_layers=1, max_repeats=2)
WIDE = dict(TINY, decoder_channels=16, agg_channels=16)


def _config(tmp_path, **over):
    arch = dict(NasSegmSpace(**TINY).sample(np.random.default_rng(0)))
    cfg = {
        "name": "kd", "run_dir": str(tmp_path / "kd"),
        "task": {"name": "segmentation", "options": {"n_samples": 40, "size": 16,
                                                      "num_classes": 3}},
        "student": {"space": {"name": "nas_segm", "options": TINY}, "arch": arch},
        "teacher": {"space": {"name": "nas_segm", "options": WIDE}, "arch": arch,
                    "checkpoint": str(tmp_path / "teacher.pt"),
                    "train": {"steps": 6, "batch_size": 8, "latency": False}},
        "losses": {"pixel_kd": 1.0, "icsd": 1.0},
        "alw": {"schedule": "linear", "start": 0.9, "end": 0.1},
        "train": {"steps": 4, "batch_size": 8, "latency": False},
        "seeds": [0, 1],
    }
    cfg.update(over)
    path = tmp_path / "kd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_distill_trains_teacher_then_students_and_reports(tmp_path, capsys):
    path = _config(tmp_path)
    assert main(["distill", str(path), "--no-progress"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "teacher" in out and "student + KD (n=2)" in out and "student, no KD" in out
    assert (tmp_path / "teacher.pt").is_file()
    record = json.loads((tmp_path / "kd" / "distill.json").read_text())
    runs = record["runs"]
    assert [(r["seed"], r["mode"]) for r in runs] == [(0, "baseline"), (0, "kd"),
                                                      (1, "baseline"), (1, "kd")]
    assert all(set(r["scores"]) == {"val", "test"} for r in runs)
    assert runs[1]["teacher_share"][0] == pytest.approx(0.9)
    assert runs[0]["teacher_share"] is None
    for r in runs:  # weights-only checkpoints
        state = torch.load(r["checkpoint"], weights_only=True)
        assert all(isinstance(v, torch.Tensor) for v in state.values())
    # same seed, same initial weights and data order: KD is the only difference, so the
    # baseline of a seed is reproduced exactly by a second run
    report = (tmp_path / "kd" / "report.md").read_text()
    assert "| 0 | baseline |" in report and "mean ± std" in report

    # the teacher checkpoint now exists: it is loaded, not trained again
    before = (tmp_path / "teacher.pt").stat().st_mtime_ns
    assert main(["distill", str(path), "--no-progress", "--run-dir", str(tmp_path / "kd2"),
                 "--seeds", "0"]) == 0
    assert (tmp_path / "teacher.pt").stat().st_mtime_ns == before
    again = json.loads((tmp_path / "kd2" / "distill.json").read_text())["runs"]
    assert again[0]["scores"] == runs[0]["scores"]  # baseline seed 0 reproduced exactly


def test_teacher_checkpoint_of_another_shape_is_refused(tmp_path, capsys):
    path = _config(tmp_path)
    torch.save({"encoder.stem.0.weight": torch.zeros(1)}, tmp_path / "teacher.pt")
    assert main(["distill", str(path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "teacher checkpoint" in err and "does not fit" in err and "missing" in err


def test_config_errors_name_the_problem(tmp_path):
    data = yaml.safe_load(_config(tmp_path).read_text())
    bad = dict(data, losses={"pixel_kd": -1.0})
    with pytest.raises(ConfigError, match="must be >= 0"):
        parse_config(bad, "kd.yaml", DistillConfig)
    both = dict(data, student=dict(data["student"], arch_from="runs/x"))
    with pytest.raises(ConfigError, match="exactly one of `arch`"):
        parse_config(both, "kd.yaml", DistillConfig)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(yaml.safe_dump(dict(data, losses={"feature_kd": 1.0})))
    assert main(["distill", str(unknown), "--no-progress"]) == 2


def test_student_arch_from_a_missing_run_says_what_to_do(tmp_path, capsys):
    data = yaml.safe_load(_config(tmp_path).read_text())
    data["student"] = {"space": data["student"]["space"], "arch_from": str(tmp_path / "nope")}
    path = tmp_path / "missing.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["distill", str(path), "--no-progress"]) == 2
    assert "does not exist; run the search" in capsys.readouterr().err
