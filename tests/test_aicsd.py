"""AICSD complete: pairwise feature distillation, the method's adaptive weighting, the
reference code's loss scale, the poly schedule and teachers built by a factory — each against
values worked out by hand from the method's definitions."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from nastk.cli.main import main
from nastk.config.schema import load_config, parse_config
from nastk.core.errors import ConfigError
from nastk.evaluation.train import TrainConfig
from nastk.search_spaces.nas_segm import NasSegmSpace
from nastk.tasks.segmentation import SegmentationTask
from nastk.tasks.segmentation.deeplab_model import deeplabv3plus
from nastk.training.distill import (
    ALWSchedule,
    DistillConfig,
    PairwiseConfig,
    distill_loss_fn,
    load_factory,
    pairwise_loss,
    pairwise_similarity,
)
from nastk.training.schedule import StepwisePoly, poly_lr

LN = math.log
A, B = [1.0, 0.0], [0.0, 1.0]


def _feature(vectors, h, w):
    """[1, C, h, w] feature whose position (i, j) holds vectors[i * w + j]."""
    return torch.tensor(vectors).T.reshape(1, len(vectors[0]), h, w)


# -- pairwise distillation -------------------------------------------------------------------
def test_pairwise_similarity_is_the_cosine_of_positions():
    f = _feature([[3.0, 4.0], [4.0, 3.0]], 1, 2)
    s = pairwise_similarity(f)[0]
    assert torch.allclose(s, torch.tensor([[1.0, 24 / 25], [24 / 25, 1.0]]), atol=1e-6)


def test_pairwise_loss_by_hand_on_a_2x2_map():
    # teacher positions A B / A B: S_T[m, n] = 1 for equal types, 0 otherwise; student all A
    # (any length): S_S = 1. 8 of the 16 entries differ by 1: 8 / N^2 / B = 8 / 16 / 1
    teacher = _feature([A, B, A, B], 2, 2)
    student = 2 * _feature([A, A, A, A], 2, 2)
    assert float(pairwise_loss(student, teacher)) == pytest.approx(0.5, rel=1e-6)
    assert float(pairwise_loss(teacher * 5, teacher)) == pytest.approx(0.0, abs=1e-10)


def test_pairwise_loss_max_pools_to_half_windows_and_divides_by_the_batch():
    # 4x4 maps, windows 2x2 (half of 4): each window's per-channel max is the vector at its
    # corner (the other pixels hold a tenth of it), so image 0 pools to the map above
    # (loss 0.5); image 1's student equals its teacher (0). Total (0.5 + 0) / B with B = 2.
    teacher = torch.zeros(2, 2, 4, 4)
    pattern = [A, B, A, B]
    for k, v in enumerate(pattern):
        i, j = 2 * (k // 2), 2 * (k % 2)
        teacher[:, :, i:i + 2, j:j + 2] = 0.1 * torch.tensor(v)[:, None, None]
        teacher[:, :, i, j] = torch.tensor(v)
    student = teacher.clone()
    student[0] = 0
    student[0, 0] = 1.0  # every position A
    assert float(pairwise_loss(student, teacher)) == pytest.approx(0.5 / 2, rel=1e-6)


def test_pairwise_loss_odd_sizes_pool_in_ceil_mode():
    # 5x5, window int(2.5) = 2, ceil mode: a 3x3 grid (N = 9), the last row and column of
    # cells one pixel wide. Teacher all A but pixel (4, 4) = B, which alone fills cell (2, 2):
    # 1 cell B, 8 cells A; student all A: 2 * 8 entries differ by 1 -> 16 / 81.
    teacher = torch.zeros(1, 2, 5, 5)
    teacher[0, 0] = 1.0
    teacher[0, :, 4, 4] = torch.tensor(B)
    student = torch.zeros(1, 2, 5, 5)
    student[0, 0] = 1.0
    assert float(pairwise_loss(student, teacher)) == pytest.approx(16 / 81, rel=1e-6)


def test_pairwise_loss_spares_the_teacher_and_resizes_the_student():
    t = torch.randn(2, 8, 6, 6, requires_grad=True)
    s = torch.randn(2, 4, 12, 12, requires_grad=True)  # other channels, other size
    pairwise_loss(s, t).backward()
    assert s.grad is not None and t.grad is None


# -- the reference code's scale --------------------------------------------------------------
class _Fixed(nn.Module):
    """A teacher that always answers the same logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
def test_reference_scale_aicsd_gives_the_reference_codes_pixel_kd():
    # one pixel, 2 classes: student [1/2, 1/2], teacher [1/4, 3/4]. Ours: KL(T || S) summed over
    # classes, averaged over pixels = KL_01; the reference's KLDivLoss() averages over the B*C*H*W
    # elements: KL_01 / C. With pi_lambda = 10 the term is 10 * KL_01 / 2.
    kl_01 = 0.25 * LN(0.25 / 0.5) + 0.75 * LN(0.75 / 0.5)
    student = torch.zeros(1, 2, 1, 1)
    teacher = torch.tensor([0.0, LN(3)]).view(1, 2, 1, 1)
    task = SegmentationTask(num_classes=2, size=8)
    target = torch.zeros(1, 1, 1, dtype=torch.long)
    off = ALWSchedule(enabled=False)
    ours = distill_loss_fn(task, _Fixed(teacher), {"pixel_kd": 10.0}, off)
    ref = distill_loss_fn(task, _Fixed(teacher), {"pixel_kd": 10.0}, off,
                          reference_scale="aicsd")
    x = torch.zeros(1, 3, 1, 1)
    assert float(ours(student, target, x, 0.0)["distill_pixel_kd"]) == pytest.approx(
        10 * kl_01, rel=1e-5)
    got = float(ref(student, target, x, 0.0)["distill_pixel_kd"])
    assert got == pytest.approx(10 * kl_01 / 2, rel=1e-5)
    reference_code = nn.KLDivLoss()(F.log_softmax(student, 1), F.softmax(teacher, 1))
    assert got == pytest.approx(10 * float(reference_code), rel=1e-5)


def test_reference_scale_aicsd_divides_icsd_by_the_batch():
    # the ICSD example of test_seg_distill (student classes P0 = [1/4, 3/4], P1 = [1/2, 1/2],
    # teacher uniform), twice in a batch: normalised rows [0, 1] and [1, 0] against zero rows,
    # mean over 4 entries = 1/2 per image; the reference divides by B = 2 once more.
    one = torch.tensor([[[[0.0, LN(3)]], [[0.0, 0.0]]]])
    student = torch.cat([one, one])
    task = SegmentationTask(num_classes=2, size=8)
    target = torch.zeros(2, 1, 2, dtype=torch.long)
    x = torch.zeros(2, 3, 1, 2)
    off = ALWSchedule(enabled=False)
    teacher = _Fixed(torch.zeros(2, 2, 1, 2))
    ours = distill_loss_fn(task, teacher, {"icsd": 1.0}, off)(student, target, x, 0.0)
    ref = distill_loss_fn(task, teacher, {"icsd": 1.0}, off, reference_scale="aicsd")(
        student, target, x, 0.0)
    assert float(ours["distill_icsd"]) == pytest.approx(0.5, rel=1e-5)
    assert float(ref["distill_icsd"]) == pytest.approx(0.25, rel=1e-5)


# -- the method's adaptive weighting ---------------------------------------------------------
class _Task:
    name = "toy"

    @staticmethod
    def loss(out, target):
        return ((out - target) ** 2).mean()

    @staticmethod
    def kd_losses():
        return {"icsd": lambda s, t: ((s - t) ** 2).sum(),
                "pixel_kd": lambda s, t: (s - t).abs().sum(),
                "other": lambda s, t: (s - t).sum()}


def test_aicsd_weighting_alpha_on_ce_and_icsd_one_minus_alpha_on_pixel_kd():
    teacher = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    out = torch.randn(4, 2)
    target = torch.randn(4, 2)
    with torch.no_grad():
        t = teacher(x)
    trace = []
    alw = ALWSchedule(schedule="aicsd")
    fn = distill_loss_fn(_Task(), teacher, {"icsd": 2.0, "pixel_kd": 3.0, "other": 0.5}, alw,
                         trace)
    for p in (0.0, 0.3, 1.0):  # alpha = epoch / E = the fraction of training done
        terms = fn(out, target, x, p)
        assert float(terms["task"]) == pytest.approx(p * float(_Task.loss(out, target)),
                                                     abs=1e-6)
        assert float(terms["distill_icsd"]) == pytest.approx(
            p * 2.0 * float(((out - t) ** 2).sum()), abs=1e-5)
        assert float(terms["distill_pixel_kd"]) == pytest.approx(
            (1 - p) * 3.0 * float((out - t).abs().sum()), abs=1e-5)
        assert float(terms["distill_other"]) == pytest.approx(0.5 * float((out - t).sum()),
                                                              abs=1e-5)
    assert [round(a, 6) for _, a in trace] == [1.0, 0.7, 0.0]
    moved = ALWSchedule(schedule="aicsd", with_gt=[], fading=["icsd", "pixel_kd"])
    terms = distill_loss_fn(_Task(), teacher, {"icsd": 1.0}, moved)(out, target, x, 0.25)
    assert float(terms["distill_icsd"]) == pytest.approx(0.75 * float(((out - t) ** 2).sum()),
                                                         abs=1e-5)
    # the new fields stay out of the dump while unset (stored records unchanged)
    assert "with_gt" not in ALWSchedule().model_dump()


# -- pairwise through the distillation loss --------------------------------------------------
class _Net(nn.Module):
    """conv -> (feature) -> 1x1 classifier; names its feature ``aspp``."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.feat = nn.Conv2d(3, 4, 3, padding=1)
            self.cls = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.cls(torch.relu_(self.feat(x)))  # in place after the hooked module

    def feature_modules(self):
        return {"aspp": "feat"}


def test_pairwise_term_reads_the_named_features_of_student_and_teacher():
    student, teacher = _Net(0), _Net(1).eval()
    x = torch.randn(2, 3, 8, 8)
    target = torch.zeros(2, 8, 8, dtype=torch.long)
    fn = distill_loss_fn(SegmentationTask(num_classes=2, size=8), teacher, {"pairwise": 9500.0},
                         ALWSchedule(enabled=False), student=student,
                         pairwise=PairwiseConfig(student="aspp", teacher="feat"))
    out = student(x)
    terms = fn(out, target, x, 0.0)
    with torch.no_grad():
        expected = 9500 * pairwise_loss(student.feat(x), teacher.feat(x))  # pre-ReLU features
    assert float(terms["distill_pairwise"].detach()) == pytest.approx(float(expected), rel=1e-5)
    terms["distill_pairwise"].backward()
    assert student.feat.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    fn.release()  # the hooks come off both models
    assert not student.feat._forward_hooks and not teacher.feat._forward_hooks
    with pytest.raises(ConfigError, match=r"no feature 'nope'.*aspp"):
        distill_loss_fn(SegmentationTask(num_classes=2, size=8), teacher, {"pairwise": 1.0},
                        ALWSchedule(), student=student, pairwise=PairwiseConfig(student="nope"))


# -- poly schedule ---------------------------------------------------------------------------
def test_poly_schedule_by_hand():
    w = nn.Parameter(torch.zeros(1))
    v = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [w], "lr": 0.1}, {"params": [v], "lr": 0.01}], lr=0.1)
    sched = StepwisePoly(opt, total=10, power=0.9)
    for _ in range(5):
        opt.step()
        sched.advance()
    half = math.exp(0.9 * math.log(0.5))  # 0.5 ** 0.9 = 0.535887...
    assert half == pytest.approx(0.535887, abs=1e-6)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 * half, 0.01 * half])
    for _ in range(5):
        sched.advance()
    assert [g["lr"] for g in opt.param_groups] == [0.0, 0.0]
    assert poly_lr(1.0, 0.0) == 1.0 and poly_lr(2.0, 0.75, 2.0) == pytest.approx(0.125)
    assert "lr_schedule" not in TrainConfig().model_dump()  # stored identities unchanged
    assert TrainConfig(lr_schedule="poly").model_dump()["lr_schedule"] == "poly"


# -- teachers from a factory, end to end -----------------------------------------------------
TINY = dict(stem_channels=8, encoder_widths=[8, 8, 8], encoder_depths=[1, 1, 1],
            decoder_channels=8, agg_channels=8, n_layers=2, n_stride_layers=1, max_repeats=2)
TASK = {"n_samples": 40, "size": 32, "num_classes": 3}


def test_factory_from_a_file_and_teacher_spec_checks(tmp_path):
    src = tmp_path / "teachers.py"
    src.write_text("def make(width=4):\n    import torch\n"
                   "    return torch.nn.Conv2d(3, width, 1)\n")
    assert load_factory(f"{src}:make")(width=5).out_channels == 5
    with pytest.raises(ConfigError, match="no callable 'nope'"):
        load_factory(f"{src}:nope")
    base = {"name": "x", "task": {"name": "segmentation"},
            "student": {"space": {"name": "nas_segm"}, "arch": {}}}
    with pytest.raises(ConfigError, match="not both"):
        parse_config({**base, "teacher": {"factory": "a:b", "space": {"name": "nas_segm"},
                                          "checkpoint": "t.pt"}}, "x.yaml", DistillConfig)
    with pytest.raises(ConfigError, match="or a `factory`"):
        parse_config({**base, "teacher": {"checkpoint": "t.pt"}}, "x.yaml", DistillConfig)


def test_distill_with_a_deeplab_teacher_from_a_factory(tmp_path, capsys):
    """A searched nas_segm student learns from a DeepLabV3+ MobileNetV2 teacher loaded by
    ``module:factory`` from its checkpoint, with pairwise (student neck, teacher ASPP), pixel KD
    and ICSD at the reference scale, AICSD's weighting and the poly schedule."""
    teacher = deeplabv3plus(SegmentationTask(**TASK), backbone="mobilenet_v2", channels=16)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    arch = dict(NasSegmSpace(**TINY).sample(np.random.default_rng(0)))
    cfg = {
        "name": "aicsd", "run_dir": str(tmp_path / "kd"),
        "task": {"name": "segmentation", "options": TASK},
        "student": {"space": {"name": "nas_segm", "options": TINY}, "arch": arch},
        "teacher": {"factory": "nastk.tasks.segmentation.deeplab_model:deeplabv3plus",
                    "options": {"backbone": "mobilenet_v2", "channels": 16},
                    "checkpoint": str(tmp_path / "teacher.pt")},
        "losses": {"pairwise": 100.0, "pixel_kd": 10.0, "icsd": 1.0},
        "pairwise": {"student": "neck", "teacher": "aspp"},
        "reference_scale": "aicsd",
        "alw": {"schedule": "aicsd"},
        "train": {"steps": 3, "batch_size": 8, "latency": False, "lr_schedule": "poly",
                  "optimizer": "sgd", "lr": 0.01},
        "seeds": [0], "baseline": False,
    }
    path = tmp_path / "aicsd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["distill", str(path), "--no-progress"]) == 0, capsys.readouterr().err
    record = json.loads((tmp_path / "kd" / "distill.json").read_text())
    run = record["runs"][0]
    assert record["teacher_arch"] is None and run["mode"] == "kd"
    assert {"train_loss_distill_pairwise", "train_loss_distill_icsd",
            "train_loss_distill_pixel_kd"} <= set(run["train_loss_terms"])
    assert run["teacher_share"][0] == pytest.approx(1.0)  # alpha = 0 at the start
    report = (tmp_path / "kd" / "report.md").read_text()
    assert "nastk.tasks.segmentation.deeplab_model:deeplabv3plus" in report and "aicsd" in report

    missing = dict(cfg, teacher=dict(cfg["teacher"], checkpoint=str(tmp_path / "none.pt")),
                   run_dir=str(tmp_path / "kd2"))
    path.write_text(yaml.safe_dump(missing))
    assert main(["distill", str(path), "--no-progress"]) == 2
    assert "factory teacher is not trained here" in capsys.readouterr().err


def test_aicsd_deeplab_example_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "examples" / "aicsd_deeplab.yaml", DistillConfig)
    assert cfg.losses == {"pairwise": 9500.0, "pixel_kd": 10.0, "icsd": 1.0}
    assert cfg.reference_scale == "aicsd" and cfg.alw.schedule == "aicsd"
    assert cfg.train.lr_schedule == "poly" and cfg.task.options["head"] == "deeplabv3plus"
    assert cfg.teacher.arch == {"body": "resnet101"} and cfg.student.arch == {"body": "resnet18"}
