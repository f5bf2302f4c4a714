"""ICSD, pixel KD and adaptive loss weighting, against values worked out by hand."""

import itertools
import math

import pytest
import torch
from torch import nn

from nastk.task.losses import combine_loss
from nastk.tasks.segmentation.distill import icsd_loss, icsd_matrix, pixel_kd_loss
from nastk.training.distill import ALWSchedule, distill_loss_fn

LN = math.log
# Student logits of one image, 2 classes, 1x2 pixels:
#   class 0: [0, ln 3] -> spatial distribution P0 = [1/4, 3/4]
#   class 1: [0, 0]    -> P1 = [1/2, 1/2]
STUDENT = torch.tensor([[[[0.0, LN(3)]], [[0.0, 0.0]]]])
KL_01 = 0.25 * LN(0.25 / 0.5) + 0.75 * LN(0.75 / 0.5)  # KL(P0 || P1) = 0.130812...
KL_10 = 0.5 * LN(0.5 / 0.25) + 0.5 * LN(0.5 / 0.75)  # KL(P1 || P0) = 0.143841...
TEACHER = torch.zeros(1, 2, 1, 2)  # both classes uniform: every KL is 0


def test_icsd_matrix_by_hand():
    m = icsd_matrix(STUDENT)
    expected = torch.tensor([[[0.0, KL_01], [KL_10, 0.0]]])
    assert torch.allclose(m, expected, atol=1e-6)
    assert KL_01 == pytest.approx(0.1308120, abs=1e-6) and KL_10 == pytest.approx(0.1438410,
                                                                                  abs=1e-6)


def test_icsd_matrix_temperature_by_hand():
    # T = 2 halves the logits: P0 = [1, sqrt 3] / (1 + sqrt 3), P1 = [1/2, 1/2]
    r3 = math.sqrt(3)
    p0 = [1 / (1 + r3), r3 / (1 + r3)]
    kl01 = sum(p * LN(p / 0.5) for p in p0)
    kl10 = sum(0.5 * LN(0.5 / p) for p in p0)
    m = icsd_matrix(STUDENT, temperature=2.0)
    assert torch.allclose(m, torch.tensor([[[0.0, kl01], [kl10, 0.0]]]), atol=1e-6)


def test_icsd_loss_by_hand():
    # unnormalised: mean over the 4 entries of (M_S - M_T)^2 with M_T = 0
    plain = icsd_loss(STUDENT, TEACHER, normalize=False)
    assert float(plain) == pytest.approx((KL_01**2 + KL_10**2) / 4, rel=1e-5)
    # normalised rows: [0, KL_01] -> [0, 1], [KL_10, 0] -> [1, 0]; the teacher's zero rows stay 0
    normed = icsd_loss(STUDENT, TEACHER, normalize=True)
    assert float(normed) == pytest.approx((1 + 1) / 4, rel=1e-5)


def test_icsd_is_zero_for_equal_logits_and_grows_with_divergence():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(2, 5, 6, 7, generator=g)
    other = torch.randn(2, 5, 6, 7, generator=g)
    for normalize in (False, True):
        assert float(icsd_loss(teacher.clone(), teacher, normalize=normalize)) == pytest.approx(
            0.0, abs=1e-10)
        # moving the student away from the teacher along a fixed direction
        losses = [float(icsd_loss(teacher + s * (other - teacher), teacher, normalize=normalize))
                  for s in (0.02, 0.05, 0.1, 0.2, 0.3)]
        assert all(a < b for a, b in itertools.pairwise(losses)), losses


def test_icsd_needs_no_fixed_class_count_and_spares_the_teacher():
    for classes in (2, 19, 21):
        s = torch.randn(1, classes, 4, 4, requires_grad=True)
        t = torch.randn(1, classes, 4, 4, requires_grad=True)
        loss = icsd_loss(s, t)
        loss.backward()
        assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="differ in shape"):
        icsd_loss(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4, 4))


def test_pixel_kd_by_hand():
    student = torch.zeros(1, 2, 1, 1)  # [1/2, 1/2]
    teacher = torch.tensor([0.0, LN(3)]).view(1, 2, 1, 1)  # [1/4, 3/4]
    assert float(pixel_kd_loss(student, teacher)) == pytest.approx(KL_01, rel=1e-5)
    assert float(pixel_kd_loss(teacher, teacher)) == pytest.approx(0.0, abs=1e-7)
    # T = 2: teacher [1, sqrt 3] / (1 + sqrt 3), scaled by T^2 = 4
    r3 = math.sqrt(3)
    pt = [1 / (1 + r3), r3 / (1 + r3)]
    assert float(pixel_kd_loss(student, teacher, temperature=2.0)) == pytest.approx(
        4 * sum(p * LN(p / 0.5) for p in pt), rel=1e-5)


@pytest.mark.parametrize(("schedule", "points"), [
    (dict(schedule="linear", start=0.9, end=0.1), [(0, 0.9), (0.5, 0.5), (1, 0.1), (0.25, 0.7)]),
    (dict(schedule="cosine", start=0.9, end=0.1),
     [(0, 0.9), (0.5, 0.5), (1, 0.1), (0.25, 0.1 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))]),
    (dict(schedule="linear", start=1.0, end=0.0, hold=0.5), [(0.25, 1.0), (0.5, 1.0),
                                                             (0.75, 0.5), (1.0, 0.0)]),
    (dict(schedule="step", start=0.8, end=0.2, hold=0.6), [(0.0, 0.8), (0.59, 0.8), (0.6, 0.2),
                                                           (1.0, 0.2)]),
    (dict(schedule="constant", start=0.3), [(0.0, 0.3), (0.7, 0.3), (1.0, 0.3)]),
])
def test_alw_schedules(schedule, points):
    alw = ALWSchedule(**schedule)
    for p, expected in points:
        assert alw.teacher_weight(p) == pytest.approx(expected, abs=1e-9), (p, expected)


class _Task:
    """The two pieces of a task the distillation loss uses."""

    name = "toy"

    @staticmethod
    def loss(out, target):
        return ((out - target) ** 2).mean()

    @staticmethod
    def kd_losses():
        return {"kd": lambda s, t: ((s - t) ** 2).sum(), "l1": lambda s, t: (s - t).abs().sum()}


def test_distill_loss_combines_terms_with_the_alw_share_and_freezes_the_teacher():
    teacher = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    out = torch.randn(4, 2, requires_grad=True)
    target = torch.randn(4, 2)
    alw = ALWSchedule(schedule="linear", start=0.8, end=0.2)
    trace = []
    fn = distill_loss_fn(_Task(), teacher, {"kd": 2.0, "l1": 0.5}, alw, trace)
    with torch.no_grad():
        t = teacher(x)
    for progress in (0.0, 0.5, 1.0):
        a = 0.8 - 0.6 * progress
        kd = 2.0 * ((out - t) ** 2).sum() + 0.5 * (out - t).abs().sum()
        expected = (1 - a) * _Task.loss(out, target) + a * kd
        terms = fn(out, target, x, progress)
        assert set(terms) == {"task", "distill_kd", "distill_l1"}  # named terms, summed
        assert float(terms["task"]) == pytest.approx(
            float((1 - a) * _Task.loss(out, target)), rel=1e-5)
        assert float(terms["distill_l1"]) == pytest.approx(
            float(a * 0.5 * (out - t).abs().sum()), rel=1e-5)
        got = combine_loss(terms)[0].detach()
        assert float(got) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert [round(a, 6) for _, a in trace] == [0.8, 0.5, 0.2]
    combine_loss(fn(out, target, x, 0.3))[0].backward()
    assert out.grad is not None and all(p.grad is None for p in teacher.parameters())

    off = distill_loss_fn(_Task(), teacher, {"kd": 1.0}, ALWSchedule(enabled=False))
    with torch.no_grad():
        assert float(combine_loss(off(out, target, x, 0.9))[0]) == pytest.approx(
            float(_Task.loss(out, target) + ((out - t) ** 2).sum()), rel=1e-5)


def test_unknown_distillation_term_is_named():
    from nastk.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\['icsd'\] not offered by task 'toy'.*"
                                         r"\['kd', 'l1', 'pairwise'\]"):
        distill_loss_fn(_Task(), nn.Identity(), {"icsd": 1.0}, ALWSchedule())
