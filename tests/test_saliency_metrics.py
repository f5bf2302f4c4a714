"""Saliency metrics against values worked out by hand on tiny maps, their edge cases, the blur,
the streaming SaliencyMeter (means, skips, shuffled AUC's negatives) and the composite loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nastk.tasks.saliency.auc import auc_borji, auc_judd, auc_shuffled
from nastk.tasks.saliency.baseline import CenterBias, uniform_baseline
from nastk.tasks.saliency.blur import gaussian_blur, gaussian_kernel1d
from nastk.tasks.saliency.distribution import EPS, cc, information_gain, kld, nss, sim
from nastk.tasks.saliency.geometry import rescale_points, resize_to
from nastk.tasks.saliency.losses import saliency_loss
from nastk.tasks.saliency.meter import SaliencyMeter

T = torch.tensor


def fix(*points: tuple[int, int]) -> torch.Tensor:
    return torch.tensor(points, dtype=torch.long).reshape(-1, 2)


NO_FIX = torch.zeros((0, 2), dtype=torch.long)


# -- resize_to, rescale_points ----------------------------------------------------------------
def test_resize_bilinear_half_pixel_centres():
    out = resize_to(T([[0.0, 1.0], [2.0, 3.0]]), (4, 4))
    # align_corners=False: output col x samples source col (x + 0.5) / 2 - 0.5, clamped:
    # -0.25 -> 0, 0.25, 0.75, 1.25 -> 1; rows likewise, and the map is 2 * row + col
    expected = T([[0.00, 0.25, 0.75, 1.00],
                  [0.50, 0.75, 1.25, 1.50],
                  [1.50, 1.75, 2.25, 2.50],
                  [2.00, 2.25, 2.75, 3.00]])
    assert torch.allclose(out, expected)


def test_resize_keeps_leading_dims_constants_and_same_shape():
    x = torch.rand(3, 1, 5, 7)
    assert resize_to(x, (10, 14)).shape == (3, 1, 10, 14)
    assert resize_to(x, (5, 7)) is x
    c = torch.full((1, 3, 3), 0.1)
    out = resize_to(c, (7, 11))
    assert bool((out == c[0, 0, 0]).all())  # exactly constant, not merely close
    mixed = torch.stack([torch.full((3, 3), 0.3), torch.rand(3, 3)])
    out = resize_to(mixed, (5, 5))
    assert bool((out[0] == mixed[0, 0, 0]).all()) and out[1].std() > 0
    assert resize_to(np.ones((2, 2), dtype=np.int64), (3, 3)).dtype == torch.float32


def test_resize_is_differentiable():
    """Its gradient is the true one: autograd's Jacobian against central finite differences."""
    x = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: resize_to(v, (6, 6)), (x,))


def test_rescale_points():
    # row' = floor(row * H_n / H_m), col' = floor(col * W_n / W_m)
    assert rescale_points(fix((1, 3)), (2, 4), (4, 8)).tolist() == [[2, 6]]
    assert rescale_points(fix((479, 639), (0, 0)), (480, 640), (240, 320)).tolist() == [
        [239, 319], [0, 0]]  # 479 * 240 / 480 = 239.5 -> 239
    assert rescale_points(fix((2, 2)), (4, 4), (2, 2)).tolist() == [[1, 1]]
    # floats: floor(1.7 * 8 / 4) = floor(3.4) = 3, floor(2.2 * 2) = 4
    out = rescale_points(np.array([[1.7, 2.2]]), (4, 4), (8, 8))
    assert isinstance(out, np.ndarray) and out.tolist() == [[3, 4]]
    assert isinstance(rescale_points(fix((0, 0)), (2, 2), (3, 3)), torch.Tensor)
    assert rescale_points(NO_FIX, (2, 2), (3, 3)).shape == (0, 2)
    with pytest.raises(ValueError, match="outside the 2x2 map"):
        rescale_points(fix((2, 0)), (2, 2), (4, 4))


def test_bad_fixation_arrays_are_refused():
    with pytest.raises(ValueError, match=r"\[k, 2\]"):
        auc_judd(torch.rand(3, 3), torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="outside the 3x3 map"):
        nss(torch.rand(3, 3), fix((0, 3)))
    with pytest.raises(ValueError, match="outside"):
        nss(torch.rand(3, 3), fix((-1, 0)))
    with pytest.raises(ValueError, match="non-finite"):
        nss(T([[0.0, float("nan")], [1.0, 2.0]]), fix((0, 0)))
    # a float coordinate is truncated to its pixel: (1.9, 0.2) is pixel (1, 0)
    m = T([[0.0, 1.0], [2.0, 3.0]])
    assert nss(m, np.array([[1.9, 0.2]])) == nss(m, fix((1, 0)))


# -- AUC-Judd ---------------------------------------------------------------------------------
def test_auc_judd_by_hand():
    s = T([[0.1, 0.4], [0.3, 0.9]])
    # positives 0.1 (0,0) and 0.9 (1,1); negatives 0.4, 0.3. Thresholds 0.9, 0.1:
    # t=0.9: TP 1/2, FP 0; t=0.1: TP 1, FP 1. Curve (0,0) (0,.5) (1,1) (1,1):
    # area = 0 + (1 - 0) * (0.5 + 1) / 2 = 0.75 (the Mann-Whitney value would be 2/4 = 0.5)
    assert auc_judd(s, fix((0, 0), (1, 1))) == pytest.approx(0.75, abs=1e-12)
    # a repeated fixation counts once (the binary fixation map)
    assert auc_judd(s, fix((0, 0), (0, 0), (1, 1))) == pytest.approx(0.75, abs=1e-12)


def test_auc_judd_tie_gets_half_credit():
    # positive 1 at (0,0); negatives 1, 0, 0. Threshold 1: TP 1, FP 1/3.
    # area = (1/3) * (0 + 1) / 2 + (2/3) * 1 = 1/6 + 2/3 = 5/6
    assert auc_judd(T([[1.0, 1.0], [0.0, 0.0]]), fix((0, 0))) == pytest.approx(5 / 6)


def test_auc_judd_rank_invariant_and_resized():
    s = torch.rand(5, 6, generator=torch.Generator().manual_seed(1))
    f = fix((0, 1), (3, 4), (4, 5))
    assert auc_judd(torch.exp(3 * s) - 7, f) == pytest.approx(auc_judd(s, f), abs=1e-12)
    small = T([[0.0, 1.0], [2.0, 3.0]])
    # the metrics resize in float64 (float32 rounding could break ties)
    assert auc_judd(small, f, shape=(5, 6)) == auc_judd(resize_to(small.double(), (5, 6)), f)


def test_auc_judd_edge_cases():
    assert auc_judd(torch.full((4, 4), 0.3), fix((1, 1), (2, 3))) == 0.5
    with pytest.raises(ValueError, match="no fixations"):
        auc_judd(torch.rand(3, 3), NO_FIX)
    with pytest.raises(ValueError, match="no negatives"):
        auc_judd(torch.rand(1, 2), fix((0, 0), (0, 1)))


# -- AUC-Borji --------------------------------------------------------------------------------
#: min-max normalised already; one fixation on the 0.5 pixel. With k = 1 negative drawn:
#: neg 0 or 0.25 -> AUC 1; neg 0.5 (a tie: TP and FP jump together at t = 0.5) -> 0.5;
#: neg 1 -> the curve goes (0,0) -> (1,0) at t = 1 -> (1,1): AUC 0.
ROW = T([[0.0, 0.25, 0.5, 1.0]])
ROW_AUC_BY_NEG = {0: 1.0, 1: 1.0, 2: 0.5, 3: 0.0}


def test_auc_borji_expectation_by_hand():
    # expectation over a uniform negative: (1 + 1 + 0.5 + 0) / 4 = 0.625
    assert auc_borji(ROW, fix((0, 2)), n_splits=4000, seed=3) == pytest.approx(0.625, abs=0.03)
    # the deterministic limit (all pixels negatives, all thresholds) = Mann-Whitney:
    # 0.5 beats 0 and 0.25, ties 0.5, loses to 1 -> (2 + 0.5) / 4 = 0.625
    assert auc_borji(ROW, fix((0, 2)), n_splits=None) == pytest.approx(0.625, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 7, 11])
def test_auc_borji_draws_are_the_documented_seeded_ones(seed):
    # one split: the negative is pixel default_rng(seed).integers(0, H * W, (1, k))
    drawn = int(np.random.default_rng(seed).integers(0, 4, size=(1, 1))[0, 0])
    assert auc_borji(ROW, fix((0, 2)), n_splits=1, seed=seed) == ROW_AUC_BY_NEG[drawn]
    assert auc_borji(ROW, fix((0, 2)), n_splits=50, seed=seed) == auc_borji(
        ROW, fix((0, 2)), n_splits=50, seed=seed)


def test_auc_borji_min_max_normalises_first():
    # the same ranking at another scale and offset scores the same, split for split
    assert auc_borji(ROW * 10 + 5, fix((0, 2)), seed=1) == auc_borji(ROW, fix((0, 2)), seed=1)


def test_auc_borji_edge_cases():
    const = torch.full((3, 3), 2.0)
    assert auc_borji(const, fix((0, 0), (2, 1))) == 0.5
    assert auc_borji(const, fix((0, 0)), n_splits=None) == 0.5
    with pytest.raises(ValueError, match="no fixations"):
        auc_borji(torch.rand(3, 3), NO_FIX)
    with pytest.raises(ValueError, match="n_splits"):
        auc_borji(torch.rand(3, 3), fix((0, 0)), n_splits=0)
    with pytest.raises(ValueError, match="step"):
        auc_borji(torch.rand(3, 3), fix((0, 0)), step=0)


# -- shuffled AUC -----------------------------------------------------------------------------
def test_auc_shuffled_known_negatives_and_step():
    m = T([[0.0, 0.5, 0.55, 1.0]])
    # positive 0.55 (col 2), the one other fixation 0.5 (col 1): the pool is no larger than
    # k = 1, so it is the negative of every split. Thresholds 1, 0.9, ..., 0.6 pass neither;
    # t = 0.5 passes both: (0,0) -> (1,1), AUC 0.5 (0.5 and 0.55 share a step)
    assert auc_shuffled(m, fix((0, 2)), fix((0, 1))) == 0.5
    # every distinct value a threshold (n_splits=None): t = 0.55 passes only the positive -> 1
    assert auc_shuffled(m, fix((0, 2)), fix((0, 1)), n_splits=None) == 1.0
    # 3 * 0.1 is the threshold 0.3 exactly: positive 0.3, negative 0.25 -> (0,1) at t = 0.3
    m2 = T([[0.0, 0.3, 0.25, 1.0]])
    assert auc_shuffled(m2, fix((0, 1)), fix((0, 2))) == 1.0


def test_auc_shuffled_samples_from_other_fixations_only():
    s = T([[0.2, 0.9], [0.5, 0.1]])
    # positive 0.9 is the maximum; whichever 1 of the 4 other fixations is drawn (all below
    # it), the negative fails the thresholds the positive passes: AUC 1 in every split
    others = fix((1, 0), (1, 0), (1, 1), (0, 0))
    assert auc_shuffled(s, fix((0, 1)), others, n_splits=10) == 1.0
    # the other image's fixation (2, 2) on a 4x4 map is pixel (1, 1) here, value 0.1
    other = rescale_points(fix((2, 2)), (4, 4), (2, 2))
    # positive 0.5 (1,0), negative 0.1: AUC 1; positive 0.1 vs negative 0.1: a tie, 0.5
    assert auc_shuffled(s, fix((1, 0)), other) == 1.0
    assert auc_shuffled(s, fix((1, 1)), other) == 0.5
    # the sampling: min(k, pool) = 1 of the 3 pool points per split, without replacement, by
    # default_rng(seed).choice. Normalised map (x - 0.1) / 0.8: the positive (1,0) is 0.5;
    # pool (0,0) 0.125 -> AUC 1, (0,1) 1.0 -> AUC 0, (1,1) 0.0 -> AUC 1
    pool = fix((0, 0), (0, 1), (1, 1))
    auc_by_pool_index = [1.0, 0.0, 1.0]
    rng = np.random.default_rng(5)
    expected = np.mean([auc_by_pool_index[int(rng.choice(3, size=1, replace=False)[0])]
                        for _ in range(8)])
    assert auc_shuffled(s, fix((1, 0)), pool, n_splits=8, seed=5) == pytest.approx(expected)
    assert 0 < expected < 1  # the seed draws both kinds, so the test sees the draws


def test_auc_shuffled_edge_cases():
    assert auc_shuffled(torch.ones(3, 3), fix((1, 1)), fix((0, 0), (2, 2))) == 0.5
    assert auc_shuffled(torch.ones(3, 3), fix((1, 1)), fix((0, 0)), n_splits=None) == 0.5
    with pytest.raises(ValueError, match="no fixations"):
        auc_shuffled(torch.rand(3, 3), NO_FIX, fix((0, 0)))
    with pytest.raises(ValueError, match="other_fix is empty"):
        auc_shuffled(torch.rand(3, 3), fix((0, 0)), NO_FIX)
    with pytest.raises(ValueError, match="rescale_points"):
        auc_shuffled(torch.rand(3, 3), fix((0, 0)), fix((5, 5)))


# -- NSS --------------------------------------------------------------------------------------
def test_nss_by_hand_population_std():
    m = T([[0.0, 1.0], [2.0, 3.0]])
    # mean 1.5; population variance (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25;
    # z(3) = 1.5 / sqrt(1.25), z(2) = 0.5 / sqrt(1.25); mean = 1 / sqrt(1.25) = 2 / sqrt(5)
    assert nss(m, fix((1, 1), (1, 0))) == pytest.approx(0.894427191, abs=1e-9)
    # with ddof 1 it would be 1 / sqrt(5 / 3) = 0.7746: not what we compute
    assert nss(m, fix((1, 1), (1, 1), (1, 0))) == pytest.approx(0.894427191, abs=1e-9)
    assert nss(m, fix((0, 0), (1, 1))) == pytest.approx(0.0, abs=1e-12)


def test_nss_edge_cases():
    assert nss(torch.full((3, 4), 0.1), fix((0, 0), (2, 3))) == 0.0
    with pytest.raises(ValueError, match="nss: the image has no fixations"):
        nss(torch.rand(3, 3), NO_FIX)


# -- CC, KLD, SIM -----------------------------------------------------------------------------
def test_cc_by_hand():
    # centred: pred [-1.5, -0.5, 0.5, 1.5], gt [-1.5, 0.5, -0.5, 1.5];
    # sum of products 2.25 - 0.25 - 0.25 + 2.25 = 4, sums of squares 5 and 5 -> 4 / 5
    assert cc(T([[1.0, 2.0], [3.0, 4.0]]), T([[1.0, 3.0], [2.0, 4.0]])) == pytest.approx(0.8)
    assert cc(T([[1.0, 2.0], [3.0, 4.0]]), T([[4.0, 3.0], [2.0, 1.0]])) == pytest.approx(-1.0)


def test_cc_resizes_the_prediction_to_the_ground_truth():
    small = T([[0.0, 1.0], [2.0, 3.0]])
    gt = resize_to(small, (4, 4))  # the bilinear map of test_resize_bilinear_half_pixel_centres
    assert cc(small, gt) == pytest.approx(1.0, abs=1e-12)


def test_cc_edge_cases():
    gt = T([[1.0, 0.0], [0.0, 2.0]])
    assert cc(torch.full((2, 2), 0.4), gt) == 0.0
    assert cc(torch.full((5, 5), 0.4), gt) == 0.0  # constant after resizing too
    with pytest.raises(ValueError, match="all zero"):
        cc(torch.rand(2, 2), torch.zeros(2, 2))


def test_kld_by_hand():
    # p = 1/4 everywhere, g = [1/2, 0, 0, 1/2]: 2 * 0.5 * ln(0.5 / 0.25) = ln 2
    assert kld(torch.ones(2, 2), T([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.693147181)
    # p = [1/4, 3/4, 0, 0], g = [1/2, 1/2, 0, 0]: 0.5 ln 2 + 0.5 ln(2/3) = 0.5 ln(4/3)
    kl = kld(T([[1.0, 3.0], [0.0, 0.0]]), T([[1.0, 1.0], [0.0, 0.0]]))
    assert kl == pytest.approx(0.143841036)
    # the direction matters: G uniform, P = [1/2, 0, 0, 1/2]; two pixels have p = 0:
    # 2 * 0.25 ln(0.25 / 0.5) + 2 * 0.25 ln(eps + 0.25 / eps) = 0.5 ln 0.5 + 0.5 ln(1.126e15)
    swapped = 0.5 * math.log(0.5) + 0.5 * math.log(EPS + 0.25 / EPS)
    assert kld(T([[1.0, 0.0], [0.0, 1.0]]), torch.ones(2, 2)) == pytest.approx(swapped)
    assert swapped == pytest.approx(16.9819, abs=1e-3)


def test_kld_normalisation_conventions():
    g = T([[0.0, 1.0], [0.0, 1.0]])
    # negative values: shifted by the minimum (+1) -> [0, 2, 0, 2] -> p = g: KLD 0
    assert kld(T([[-1.0, 1.0], [-1.0, 1.0]]), g) == pytest.approx(0.0, abs=1e-12)
    # scale-free in both maps
    assert kld(T([[1.0, 3.0], [0.0, 0.0]]) * 7, T([[5.0, 5.0], [0.0, 0.0]])) == pytest.approx(
        0.143841036)
    # an all-zero prediction is uniform (as every constant one): ln 2 as above
    assert kld(torch.zeros(2, 2), T([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.693147181)
    with pytest.raises(ValueError, match="all zero"):
        kld(torch.rand(2, 2), torch.zeros(2, 2))


def test_sim_by_hand():
    # p = [1/4, 3/4, 0, 0], g = [1/2, 1/2, 0, 0]: min -> 1/4 + 1/2 = 0.75
    assert sim(T([[1.0, 3.0], [0.0, 0.0]]), T([[1.0, 1.0], [0.0, 0.0]])) == pytest.approx(0.75)
    # no min-max step: p = [1, 2, 1, 2] / 6, g = [0, 1/2, 0, 1/2] -> 2/6 + 2/6 = 2/3
    # (min-max first would make p = g and give 1)
    assert sim(T([[1.0, 2.0], [1.0, 2.0]]), T([[0.0, 1.0], [0.0, 1.0]])) == pytest.approx(2 / 3)
    m = torch.rand(4, 5)
    assert sim(m, m) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all zero"):
        sim(torch.rand(2, 2), torch.zeros(2, 2))


# -- information gain, baselines --------------------------------------------------------------
def test_information_gain_uniform_by_hand():
    pred = T([[1.0, 3.0], [0.0, 4.0]])  # p = [1/8, 3/8, 0, 1/2], uniform b = 1/4
    # (1,1): log2(1/2) - log2(1/4) = 1; (0,1): log2(3/8) - log2(1/4) = log2(1.5) = 0.5849625
    # mean = (1 + 0.5849625) / 2
    ig = information_gain(pred, fix((1, 1), (0, 1)), uniform_baseline)
    assert ig == pytest.approx(0.7924812504, abs=1e-9)
    assert information_gain(pred, fix((1, 1), (0, 1)), uniform_baseline((2, 2))) == ig
    # a baseline equal to the prediction gains nothing
    assert information_gain(pred, fix((1, 1), (0, 1)), pred * 3) == pytest.approx(0.0)
    # a constant prediction is the uniform density: IG 0 against the uniform baseline
    assert information_gain(torch.ones(3, 3), fix((0, 0)), uniform_baseline) == pytest.approx(0)
    with pytest.raises(ValueError, match="no fixations"):
        information_gain(pred, NO_FIX, uniform_baseline)
    with pytest.raises(ValueError, match="IG baseline sums to zero"):
        information_gain(pred, fix((0, 0)), torch.zeros(2, 2))


def test_uniform_baseline():
    b = uniform_baseline((3, 5))
    assert b.shape == (3, 5) and float(b.sum()) == pytest.approx(1.0)
    assert math.log2(float(b[0, 0])) == pytest.approx(-math.log2(15))


def test_center_bias_fit_by_hand():
    cb = CenterBias(size=(2, 2)).fit([T([[1.0, 0.0], [0.0, 0.0]]),
                                      {"density": T([[0.0, 0.0], [0.0, 3.0]])}])
    # each map normalised to sum 1, then averaged: [[1/2, 0], [0, 1/2]]
    assert torch.allclose(cb((2, 2)), T([[0.5, 0.0], [0.0, 0.5]], dtype=torch.float64))
    assert cb.n_maps == 2 and "fitted on 2 maps" in repr(cb)
    up = cb((4, 6))
    assert up.shape == (4, 6) and float(up.sum()) == pytest.approx(1.0) and up.min() >= 0
    # a larger map is averaged over the cells of the grid: the 4x4 block map pools to
    # [[1, 0], [0, 0]] (mean of each 2x2 cell), normalised to [[1, 0], [0, 0]]
    big = torch.zeros(4, 4)
    big[:2, :2] = 1.0
    cb2 = CenterBias(size=(2, 2)).fit([big])
    assert torch.allclose(cb2((2, 2)), T([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64))
    # IG against it: p = [1/8, 3/8, 0, 1/2]; at (1,1) log2(1/2) - log2(1/2) = 0,
    # at (0,0) log2(1/8) - log2(1/2) = -2 -> mean -1
    assert information_gain(T([[1.0, 3.0], [0.0, 4.0]]), fix((1, 1), (0, 0)),
                            cb) == pytest.approx(-1.0)
    restored = CenterBias.from_density(cb.density)
    assert torch.allclose(restored((3, 3)), cb((3, 3)))


def test_center_bias_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        CenterBias()((3, 3))
    with pytest.raises(ValueError, match="no maps"):
        CenterBias().fit([])
    with pytest.raises(ValueError, match="sums to zero"):
        CenterBias().fit([torch.zeros(3, 3)])


# -- blur -------------------------------------------------------------------------------------
def test_blur_of_a_delta_is_a_normalised_gaussian():
    sigma, n, c = 3.0, 41, 20
    delta = torch.zeros(n, n, dtype=torch.float64)
    delta[c, c] = 1.0
    out = gaussian_blur(delta, sigma)
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-12)  # far from the borders
    rows = torch.arange(n, dtype=torch.float64)
    marg = out.sum(dim=1)
    mean = float((marg * rows).sum())
    var = float((marg * (rows - mean) ** 2).sum())
    assert mean == pytest.approx(c) and var == pytest.approx(sigma ** 2, rel=1e-3)
    # peak 1 / (2 pi sigma^2) = 1 / (18 pi) = 0.0176839
    assert float(out[c, c]) == pytest.approx(1 / (2 * math.pi * sigma ** 2), rel=1e-4)
    k = gaussian_kernel1d(sigma)  # separable: the outer product of the 1-D kernel
    r = (k.numel() - 1) // 2
    assert torch.allclose(out[c - r:c + r + 1, c - r:c + r + 1], torch.outer(k, k))
    assert k.numel() == 2 * 12 + 1  # radius ceil(4 sigma)


def test_blur_reflect_padding_and_shapes():
    sigma = 1.0
    k = gaussian_kernel1d(sigma)  # k[r + x] is the weight at offset x
    r = (k.numel() - 1) // 2
    x = torch.zeros(1, 20, dtype=torch.float64)  # H = 1: the column pass is the identity
    x[0, 1] = 1.0
    out = gaussian_blur(x, sigma)
    # reflect without repeating the edge: padded[-1] = x[1], so out[0] = k(-1) + k(+1)
    assert float(out[0, 0]) == pytest.approx(float(k[r - 1] + k[r + 1]))
    # and out[1] = k(0) + k(-2) (the mirrored delta at -1 is two pixels away)
    assert float(out[0, 1]) == pytest.approx(float(k[r] + k[r - 2]))
    # leading dims, a sigma larger than the map, constants, no-ops
    m = torch.rand(2, 1, 3, 3)
    assert gaussian_blur(m, 5.0).shape == m.shape
    c = torch.full((3, 4), 0.7, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(c, 6.0), c)
    assert gaussian_blur(m, None) is m and gaussian_blur(m, 0) is m
    with pytest.raises(ValueError, match="sigma"):
        gaussian_blur(m, -1.0)


def test_blur_is_differentiable():
    """Its gradient is the true one: autograd's Jacobian against central finite differences."""
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: gaussian_blur(v, 1.5).pow(2), (x,))


# -- SaliencyMeter ----------------------------------------------------------------------------
def _target(density, fixations) -> dict:
    return {"density": torch.as_tensor(density, dtype=torch.float32), "fixations": fixations}


def test_meter_means_over_images_and_skips_explicitly():
    a = T([[0.1, 0.4], [0.3, 0.9]])
    b = T([[1.0, 1.0], [0.0, 0.0]])
    c = T([[0.2, 0.6], [0.8, 0.4]])
    ga, gb, gc = T([[1.0, 0.0], [0.0, 1.0]]), T([[1.0, 1.0], [0.0, 0.0]]), T([[0.0, 1.0],
                                                                               [1.0, 3.0]])
    meter = SaliencyMeter(auc_splits=None)
    meter.update(torch.stack([a, b])[:, None], [_target(ga, fix((0, 0), (1, 1))),
                                                _target(gb, fix((0, 0)))])
    meter.update(c[None], [_target(gc, NO_FIX)])  # [N, H, W]; no fixations
    out = meter.compute()
    assert meter.n_images == 3 and meter.skipped_no_fixations == 1
    # AUC-Judd: 0.75 (test_auc_judd_by_hand) and 5/6 (the tie test) -> mean 19/24
    assert out["auc_judd"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert out["nss"] == pytest.approx((nss(a, fix((0, 0), (1, 1))) + nss(b, fix((0, 0)))) / 2)
    # distribution metrics over all three images
    assert out["cc"] == pytest.approx((cc(a, ga) + cc(b, gb) + cc(c, gc)) / 3)
    assert out["kld"] == pytest.approx((kld(a, ga) + kld(b, gb) + kld(c, gc)) / 3)
    assert out["sim"] == pytest.approx((sim(a, ga) + sim(b, gb) + sim(c, gc)) / 3)
    assert "ig" not in out and "ig_uniform" in out
    assert all(math.isfinite(v) for v in out.values())
    assert set(out) == {"auc_judd", "auc_borji", "sauc", "nss", "cc", "kld", "sim",
                        "ig_uniform"}


def test_meter_without_any_fixations_omits_location_metrics():
    meter = SaliencyMeter()
    meter.update(torch.rand(2, 1, 3, 3), [_target(torch.rand(3, 3), NO_FIX)] * 2)
    out = meter.compute()
    assert meter.skipped_no_fixations == 2
    assert set(out) == {"cc", "kld", "sim"}


def test_meter_sauc_uses_the_other_images_fixations():
    pa = T([[0.2, 0.9], [0.5, 0.1]])  # GT 2x2, fixation (0, 1): value 0.9, the maximum
    pb = torch.zeros(4, 4)  # GT 4x4, fixation (2, 2)
    pb[0, 2], pb[2, 2] = 1.0, 0.5
    meter = SaliencyMeter()
    meter.update(pa[None], [_target(torch.ones(2, 2), fix((0, 1)))])
    meter.update(pb[None], [_target(torch.ones(4, 4), fix((2, 2)))])
    out = meter.compute()
    # image A's one negative: B's (2, 2) on 4x4 -> (1, 1) on 2x2, value 0.1 < 0.9: sAUC 1.
    # image B's one negative: A's (0, 1) on 2x2 -> (0, 2) on 4x4, value 1 > 0.5: sAUC 0.
    # (a pool no larger than k is used whole in every split.) Mean 0.5.
    assert out["sauc"] == pytest.approx(0.5)
    assert meter.skipped_sauc_no_others == 0


def test_meter_exact_sauc_counts_a_pixel_once_per_other_image():
    a = T([[0.5, 0.9], [0.1, 0.1]])
    b = T([[0.0, 0.0], [0.0, 1.0]])
    c = torch.full((2, 2), 0.3)
    meter = SaliencyMeter(auc_splits=None)
    meter.update(torch.stack([a, b, c]), [_target(torch.ones(2, 2), fix((0, 0))),
                                          _target(torch.ones(2, 2), fix((1, 1))),
                                          _target(torch.ones(2, 2), fix((1, 1), (0, 1)))])
    # A: positive 0.5; negatives B (1,1) 0.1, C (1,1) 0.1, C (0,1) 0.9 -> beats 2 of 3: 2/3
    #    (pooling the pixels once would give 1/2)
    # B: positive 1; negatives A (0,0) 0, C (1,1) 1 (a tie), C (0,1) 0 -> (2 + 0.5) / 3 = 5/6
    # C: constant -> 0.5.  Mean (2/3 + 5/6 + 1/2) / 3 = 2/3
    assert meter.compute()["sauc"] == pytest.approx(2 / 3)


def test_meter_sauc_matches_auc_shuffled_with_the_documented_pool_and_seed():
    g = torch.Generator().manual_seed(0)
    shapes = [(6, 8), (6, 8), (9, 5)]
    preds = torch.rand(3, 1, 4, 4, generator=g)
    fixes = [fix((0, 0), (5, 7), (3, 3), (3, 3)), fix((1, 2), (4, 4), (2, 6)),
             fix((8, 4), (0, 0), (4, 2), (7, 1), (1, 3))]
    targets = [_target(torch.rand(*s, generator=g), f) for s, f in zip(shapes, fixes,
                                                                       strict=True)]
    for splits in (20, None):
        meter = SaliencyMeter(auc_splits=splits, seed=4)
        meter.update(preds, targets)
        expected = []
        for i in range(3):
            others = [rescale_points(torch.unique(fixes[j], dim=0), shapes[j], shapes[i])
                      for j in range(3) if j != i]
            s = resize_to(preds[i, 0].double(), shapes[i])
            expected.append(auc_shuffled(s, fixes[i], torch.cat(others), n_splits=splits,
                                         seed=[4, 1, i]))
        assert meter.compute()["sauc"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_meter_sauc_with_a_single_fixated_image_is_skipped():
    meter = SaliencyMeter()
    meter.update(torch.rand(2, 3, 3), [_target(torch.rand(3, 3), fix((1, 1))),
                                       _target(torch.rand(3, 3), NO_FIX)])
    out = meter.compute()
    assert "sauc" not in out and meter.skipped_sauc_no_others == 1
    assert "auc_judd" in out


def test_meter_resizes_each_prediction_to_its_ground_truth_and_blurs_there():
    g = torch.Generator().manual_seed(2)
    preds = torch.rand(2, 1, 3, 4, generator=g)
    gts = [torch.rand(6, 8, generator=g), torch.rand(5, 7, generator=g)]
    fixes = [fix((0, 0), (5, 7)), fix((4, 6), (2, 3))]
    for sigma in (None, 1.5):
        meter = SaliencyMeter(blur_sigma=sigma, sauc=False)
        meter.update(preds, [_target(gg, f) for gg, f in zip(gts, fixes, strict=True)])
        out = meter.compute()
        maps = [gaussian_blur(resize_to(preds[i, 0].double(), tuple(gts[i].shape)), sigma)
                for i in range(2)]
        assert out["cc"] == pytest.approx(np.mean([cc(m, gg) for m, gg in
                                                   zip(maps, gts, strict=True)]))
        assert out["nss"] == pytest.approx(np.mean([nss(m, f) for m, f in
                                                    zip(maps, fixes, strict=True)]))
        assert out["auc_borji"] == pytest.approx(np.mean(
            [auc_borji(m, f, seed=[0, 0, i]) for i, (m, f) in enumerate(zip(maps, fixes,
                                                                             strict=True))]))
        assert "sauc" not in out


def test_meter_is_independent_of_batching_and_seeded():
    g = torch.Generator().manual_seed(3)
    preds = torch.rand(4, 1, 5, 5, generator=g)
    targets = [_target(torch.rand(5, 5, generator=g),
                       torch.randint(0, 5, (3, 2), generator=g)) for _ in range(4)]
    one = SaliencyMeter(seed=9)
    one.update(preds, targets)
    two = SaliencyMeter(seed=9)
    two.update(preds[:1], targets[:1])
    two.update(preds[1:], targets[1:])
    assert one.compute() == two.compute()
    other = SaliencyMeter(seed=10)
    other.update(preds, targets)
    assert other.compute()["cc"] == one.compute()["cc"]


def test_meter_information_gain_with_a_baseline():
    cb = CenterBias(size=(2, 2)).fit([T([[1.0, 0.0], [0.0, 1.0]])])
    meter = SaliencyMeter(baseline=cb)
    pred = T([[1.0, 3.0], [0.0, 4.0]])
    meter.update(pred[None], [_target(torch.ones(2, 2), fix((1, 1), (0, 0)))])
    out = meter.compute()
    # as in test_center_bias_fit_by_hand: -1 bit against [[1/2, 0], [0, 1/2]]; uniform:
    # (log2(1/2) + log2(1/8)) / 2 + log2(4) = -2 + 2 = 0
    assert out["ig"] == pytest.approx(-1.0) and out["ig_uniform"] == pytest.approx(0.0)


def test_meter_errors():
    meter = SaliencyMeter()
    with pytest.raises(ValueError, match="no image"):
        meter.compute()
    with pytest.raises(ValueError, match="2 predictions but 1 targets"):
        meter.update(torch.rand(2, 1, 3, 3), [_target(torch.ones(3, 3), fix((0, 0)))])
    with pytest.raises(ValueError, match="C = 1"):
        meter.update(torch.rand(1, 3, 3, 3), [_target(torch.ones(3, 3), fix((0, 0)))])
    with pytest.raises(ValueError, match="all zero"):
        meter.update(torch.rand(1, 3, 3), [_target(torch.zeros(3, 3), fix((0, 0)))])
    with pytest.raises(ValueError, match="'density'"):
        meter.update(torch.rand(1, 3, 3), [{"fixations": fix((0, 0))}])
    with pytest.raises(ValueError, match="outside the 3x3 map"):
        meter.update(torch.rand(1, 3, 3), [_target(torch.ones(3, 3), fix((3, 0)))])


# -- the loss ---------------------------------------------------------------------------------
def test_loss_terms_by_hand():
    pred = T([[[[1.0, 2.0], [3.0, 4.0]]]]) / 10
    targets = [_target(T([[1.0, 3.0], [2.0, 4.0]]), fix((1, 1), (1, 0)))]
    out = saliency_loss(pred, targets)
    assert set(out) == {"kld", "cc", "nss"}
    # KLD: p = [.1, .2, .3, .4], g = [.1, .3, .2, .4]:
    # .3 ln(1.5) + .2 ln(2/3) = .1 ln(1.5) = 0.0405465
    assert out["kld"].item() == pytest.approx(0.0405465108, abs=1e-6)
    # CC 0.8 (test_cc_by_hand) -> 1 - 0.8
    assert out["cc"].item() == pytest.approx(0.2, abs=1e-6)
    # NSS 2 / sqrt(5) (test_nss_by_hand) -> 1 - sigmoid(0.894427): exp(-0.894427) = 0.408842,
    # 1 - 1 / 1.408842 = 1 - 0.709803 = 0.290197
    assert out["nss"].item() == pytest.approx(0.290197, abs=1e-5)


def test_loss_weights_and_constant_prediction():
    pred = torch.full((1, 1, 2, 2), 0.5, requires_grad=True)
    targets = [_target(T([[1.0, 0.0], [0.0, 1.0]]), fix((0, 0)))]
    out = saliency_loss(pred, targets)
    # uniform p vs g = [1/2, 0, 0, 1/2]: ln 2; CC 0 -> 1; NSS 0 -> 1 - sigmoid(0) = 0.5
    assert out["kld"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["cc"].item() == pytest.approx(1.0, abs=1e-6)
    assert out["nss"].item() == pytest.approx(0.5, abs=1e-6)
    # the gradient is the true one where the loss is smooth (a prediction that is not constant):
    # autograd's against central finite differences, in float64
    density = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    varied = (torch.tensor([[[[0.2, 0.7], [0.4, 0.9]]]], dtype=torch.float64)
              .requires_grad_(True))
    assert torch.autograd.gradcheck(
        lambda p: sum(saliency_loss(p, [{"density": density, "fixations": fix((0, 0))}]).values()),
        (varied,), atol=1e-5)
    w = saliency_loss(pred, targets, weights={"kld": 2.0, "cc": 0.5, "nss": 0.0, "sim": 1.0})
    assert set(w) == {"kld", "cc", "sim"}  # weight 0 drops the term
    assert w["kld"].item() == pytest.approx(2 * math.log(2), abs=1e-6)
    assert w["cc"].item() == pytest.approx(0.5, abs=1e-6)
    # SIM: min(1/4, g) -> 1/4 + 1/4 = 1/2 -> 1 - 1/2
    assert w["sim"].item() == pytest.approx(0.5, abs=1e-6)


def test_loss_averages_over_the_batch_and_resizes():
    g = torch.Generator().manual_seed(5)
    pred = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64)
    dens = [torch.rand(8, 6, generator=g, dtype=torch.float64) for _ in range(3)]
    fixes = [fix((0, 0), (7, 5)), NO_FIX, fix((3, 3))]
    targets = [{"density": d, "fixations": f} for d, f in zip(dens, fixes, strict=True)]
    out = saliency_loss(pred, targets, weights={"kld": 1.0, "cc": 1.0, "nss": 1.0, "sim": 1.0})
    maps = [resize_to(pred[i, 0], (8, 6)) for i in range(3)]
    assert out["kld"].item() == pytest.approx(np.mean([kld(m, d) for m, d in
                                                       zip(maps, dens, strict=True)]), rel=1e-6)
    assert out["cc"].item() == pytest.approx(1 - np.mean([cc(m, d) for m, d in
                                                          zip(maps, dens, strict=True)]),
                                             rel=1e-6)
    assert out["sim"].item() == pytest.approx(1 - np.mean([sim(m, d) for m, d in
                                                           zip(maps, dens, strict=True)]),
                                              rel=1e-6)
    # NSS over the two images with fixations only
    expected = np.mean([1 - 1 / (1 + math.exp(-nss(maps[i], fixes[i]))) for i in (0, 2)])
    assert out["nss"].item() == pytest.approx(expected, rel=1e-6)


def test_loss_gradients_flow():
    pred = torch.rand(2, 1, 3, 3, requires_grad=True)
    targets = [_target(torch.rand(6, 6), fix((1, 1), (5, 5))), _target(torch.rand(6, 6),
                                                                       NO_FIX)]
    loss = sum(saliency_loss(pred, targets).values())
    loss.backward()
    assert torch.isfinite(pred.grad).all() and float(pred.grad.abs().sum()) > 0
    # no fixation in the whole batch: the NSS term is 0 and still backpropagates
    p2 = torch.rand(1, 3, 3, requires_grad=True)
    out = saliency_loss(p2, [_target(torch.rand(3, 3), NO_FIX)])
    assert out["nss"].item() == 0.0
    sum(out.values()).backward()
    assert torch.isfinite(p2.grad).all()


def test_loss_errors():
    pred = torch.rand(1, 1, 2, 2)
    tgt = [_target(torch.ones(2, 2), fix((0, 0)))]
    with pytest.raises(ValueError, match="unknown terms"):
        saliency_loss(pred, tgt, weights={"auc": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        saliency_loss(pred, tgt, weights={"kld": -1.0})
    with pytest.raises(ValueError, match="every weight is 0"):
        saliency_loss(pred, tgt, weights={"kld": 0.0})
    with pytest.raises(ValueError, match="non-negative"):
        saliency_loss(pred - 2, tgt)
    with pytest.raises(ValueError, match="sums to zero"):
        saliency_loss(pred, [_target(torch.zeros(2, 2), fix((0, 0)))])
    with pytest.raises(ValueError, match="outside"):
        saliency_loss(pred, [_target(torch.ones(2, 2), fix((2, 0)))])
    with pytest.raises(ValueError, match="non-negative target"):
        saliency_loss(pred, [_target(T([[1.0, -0.5], [0.0, 1.0]]), fix((0, 0)))])
    with pytest.raises(ValueError, match="1 predictions but 2 targets"):
        saliency_loss(pred, tgt * 2)
