"""Zero-cost proxies: hand-computed values on tiny networks, determinism, agreement with
NAS-Bench-Suite-Zero's values on NAS-Bench-201, and the predictors built on them."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from nastk.core import registry
from nastk.core.errors import ConfigError
from nastk.predictors.zero_cost import proxies as P
from nastk.predictors.zero_cost.predictors import signed_log
from nastk.predictors.zero_cost.scorer import ZeroCostScorer
from nastk.search_spaces.small_cnn import SmallCNNSpace


def mse(out, target):
    return ((out - target) ** 2).sum()


def linear(w):
    net = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([w]))
    return net


X = torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
Y = torch.tensor([[1.0], [0.0], [2.0]])


def test_gradient_proxies_by_hand():
    """L = sum (x.w - y)^2, dL/dw = 2 sum (x.w - y) x; w = (1, -2): residuals -4, 5, -2.5."""
    # 2 * (-4 * (1, 2) + 5 * (3, -1) - 2.5 * (0.5, 0.5)) = (19.5, -28.5)
    assert P.grad_norm(linear([1.0, -2.0]), X, Y, mse) == pytest.approx(math.hypot(19.5, 28.5))
    assert P.snip(linear([1.0, -2.0]), X, Y, mse) == pytest.approx(1 * 19.5 + 2 * 28.5)


def test_synflow_by_hand():
    """|w| on an all-ones input: R = |w1| + |w2|, dR/dw = 1, so the score is sum |w|; batch
    norm is removed first (it would centre the single input to zero)."""
    assert P.synflow(linear([1.0, -2.0]), X, Y, mse) == pytest.approx(3.0)
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.BatchNorm1d(2), nn.Linear(2, 1,
                                                                                 bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.5]]))
        net[2].weight.copy_(torch.tensor([[3.0, -4.0]]))
    # R = 3 * (1 + 1) + 4 * (2 + 0.5) = 16; sum |w * dR/dw| = 3*2 + 4*2.5 + (3+3+8+2) = 32
    assert P.synflow(net, X, Y, mse) == pytest.approx(32.0)
    assert isinstance(net[1], nn.BatchNorm1d)  # the caller's network is left alone


def test_jacov_by_hand():
    """A linear network has the same Jacobian (w) for every input: the correlation matrix is
    all ones, with eigenvalues (n, 0, ..., 0)."""
    n, k = 3, 1e-5
    expected = -((math.log(n + k) + 1 / (n + k)) + (n - 1) * (math.log(k) + 1 / k))
    assert P.jacov(linear([1.0, -2.0]), X, Y, mse) == pytest.approx(expected, rel=1e-6)


def test_nwot_by_hand():
    """One ReLU layer with units x and -x: inputs 1, 2, -1 have codes (1,0), (1,0), (0,1);
    the kernel counts agreeing units: [[2,2,0],[2,2,0],[0,0,2]] (singular), so we add a
    third unit x - 1.5 that separates 1 from 2."""
    net = nn.Sequential(nn.Linear(1, 3), nn.ReLU())
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [-1.0], [1.0]]))
        net[0].bias.copy_(torch.tensor([0.0, 0.0, -1.5]))
    x = torch.tensor([[1.0], [2.0], [-1.0]])
    # codes (1,0,0), (1,0,1), (0,1,0): agreements [[3,2,1],[2,3,0],[1,0,3]]
    kernel = np.array([[3, 2, 1], [2, 3, 0], [1, 0, 3]], dtype=float)
    assert P.nwot(net, x, None, mse) == pytest.approx(math.log(np.linalg.det(kernel)))
    with pytest.raises(ValueError, match="no activation module"):
        P.nwot(linear([1.0, 1.0]), X, Y, mse)


def small_task():
    return registry.instantiate(registry.TASKS, "classification",
                                {"dataset": "glyphs", "n_samples": 200}, where="task.options")


def test_scores_are_seeded_and_deterministic():
    space = SmallCNNSpace()
    arch = space.sample(np.random.default_rng(0))
    names = ["grad_norm", "snip", "synflow", "jacov", "nwot", "params", "flops"]
    first = ZeroCostScorer(space, small_task(), names, batch_size=16, seed=3).score(arch)
    ZeroCostScorer._cache.clear()
    again = ZeroCostScorer(space, small_task(), names, batch_size=16, seed=3).score(arch)
    assert again == first
    other = ZeroCostScorer(space, small_task(), names, batch_size=16, seed=4).score(arch)
    assert other["params"] == first["params"] and other["flops"] == first["flops"]
    assert other["grad_norm"] != first["grad_norm"] and other["nwot"] != first["nwot"]
    # another task (here: more classes, so another head) is another cache entry
    wider = registry.instantiate(registry.TASKS, "classification",
                                 {"dataset": "glyphs", "n_samples": 200, "num_classes": 20},
                                 where="task.options")
    assert (ZeroCostScorer(space, wider, ["params"], batch_size=16, seed=3).score(arch)["params"]
            > first["params"])
    with pytest.raises(ValueError, match="unknown"):
        ZeroCostScorer(space, small_task(), ["zen"])


def test_zero_cost_predictor_ranks_by_the_proxy_and_with_proxies_wraps_a_regressor():
    space = SmallCNNSpace()
    rng = np.random.default_rng(1)
    archs = [space.sample(rng) for _ in range(6)]
    task = {"name": "classification", "options": {"dataset": "glyphs", "n_samples": 200}}
    zc = registry.instantiate(registry.PREDICTORS, "zero_cost",
                              {"proxy": "synflow", "task": task, "batch_size": 16}, space)
    raw = ZeroCostScorer(space, small_task(), ["synflow"], batch_size=16).scores(archs)[:, 0]
    np.testing.assert_allclose(zc.fit(archs[:2], [0.0, 1.0]).predict(archs), signed_log(raw))
    wp = registry.instantiate(registry.PREDICTORS, "with_proxies",
                              {"proxies": ["params", "synflow"], "inner": "ridge",
                               "task": task, "batch_size": 16}, space)
    scores = signed_log(raw)  # a target the proxy features explain exactly
    pred = wp.fit(archs, scores).predict(archs)
    assert np.corrcoef(pred, scores)[0, 1] > 0.99
    assert not wp.has_uncertainty
    with pytest.raises(ConfigError, match="task"):
        registry.instantiate(registry.PREDICTORS, "zero_cost", {"proxy": "nwot"}, space,
                             where="strategy.options.predictor_options")


@pytest.mark.slow
def test_nb201_proxies_rank_like_nas_bench_suite_zero():
    """12 NAS-Bench-201 architectures of zc_nasbench201.json (cifar10): our data-free and
    cheap proxies order them as NASLib's values do (which used real CIFAR-10 batches; ours a
    generated one). benchmarks/zero_cost_proxies.py measures all proxies on more."""
    import json

    from scipy.stats import spearmanr

    from nastk.search_spaces.nb201 import NB201Space, from_naslib
    from nastk.search_spaces.tnb101 import DATA_FOLDER, find_data_dir, tnb101_data_missing

    if tnb101_data_missing():
        pytest.skip(tnb101_data_missing())
    rows = json.loads((find_data_dir() / DATA_FOLDER / "zc_nasbench201.json").read_text())
    rows = rows["cifar10"]
    keys = sorted(rows)[::60][:12]
    space = NB201Space()
    task = registry.instantiate(registry.TASKS, "classification",
                                {"dataset": "glyphs", "image_size": 32, "channels": 3,
                                 "num_classes": 10, "n_samples": 200}, where="task.options")
    names = ["synflow", "nwot", "params"]
    ours = ZeroCostScorer(space, task, names, batch_size=32).scores(
        [from_naslib(space, k) for k in keys])
    for j, name in enumerate(names):
        theirs = [rows[k][name]["score"] for k in keys]
        assert spearmanr(ours[:, j], theirs).statistic > 0.9, name
