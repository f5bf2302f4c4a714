"""Performance predictors: each learns a known function of the architecture, uncertainty grows
away from the data, the input checks name the fix, and the ranking metrics match hand-computed
values."""


import numpy as np
import pytest
from conftest import all_architectures

from nastk import Categorical, IntRange, SearchSpace
from nastk.core.errors import ConfigError
from nastk.core.registry import PREDICTORS, instantiate
from nastk.predictors import (
    MLPPredictor,
    NotFittedError,
    PredictorError,
    RidgePredictor,
    bucketed_kendall_tau,
    evaluate_predictor,
    kendall_tau,
    precision_at_top_k,
    spearman,
)
from nastk.predictors.buckets import bucket_index, kept_count, quantile_edges
from nastk.predictors.metrics import summarize

NAMES = ["gbdt", "random_forest", "gp", "ridge", "mlp", "ensemble"]

A_VALUES = {0: 0.0, 1: 1.5, 2: -0.5, 3: 2.0}
B_VALUES = {"x": 0.0, "y": -1.0, "z": 1.0}
D_VALUES = {"p": 0.3, "q": 0.0, "r": -0.8, "s": 1.1}


def toy_space() -> SearchSpace:
    return SearchSpace([Categorical("a", [0, 1, 2, 3]), Categorical("b", ["x", "y", "z"]),
                        IntRange("c", 0, 6), Categorical("d", ["p", "q", "r", "s"])], name="toy")


def toy_score(arch) -> float:
    """A sum of per-dimension values (``c`` contributes linearly)."""
    return A_VALUES[arch["a"]] + B_VALUES[arch["b"]] + 0.4 * arch["c"] + D_VALUES[arch["d"]]


@pytest.fixture(scope="module")
def split():
    space = toy_space()
    archs = all_architectures(space)  # 336
    order = np.random.default_rng(0).permutation(len(archs))
    train = [archs[i] for i in order[:120]]
    test = [archs[i] for i in order[120:]]
    return space, train, test


@pytest.mark.parametrize("name", NAMES)
def test_predictor_learns_additive_function(split, name):
    space, train, test = split
    opts = {"n_members": 3} if name == "ensemble" else {}
    pred = instantiate(PREDICTORS, name, opts, space, seed=0)
    assert not pred.is_fitted
    assert pred.fit(train, [toy_score(a) for a in train]) is pred
    assert pred.is_fitted
    y = np.array([toy_score(a) for a in test])
    p = pred.predict(test)
    assert p.shape == (len(test),) and p.dtype == np.float64
    assert kendall_tau(y, p) > 0.8, name
    # predictions are on the scores' scale, not the standardized one
    assert abs(p.mean() - y.mean()) < 0.5


@pytest.mark.parametrize("name", ["gbdt", "random_forest", "mlp", "ensemble"])
def test_predictors_are_deterministic_given_the_seed(split, name):
    space, train, test = split
    y = [toy_score(a) for a in train]
    opts = {"n_members": 2} if name == "ensemble" else {}
    a = instantiate(PREDICTORS, name, opts, space, seed=3).fit(train, y).predict(test)
    b = instantiate(PREDICTORS, name, opts, space, seed=3).fit(train, y).predict(test)
    np.testing.assert_array_equal(a, b)


def test_predict_before_fit_names_the_fix(split):
    space, _, test = split
    with pytest.raises(NotFittedError, match=r"call fit\(archs, scores\)"):
        MLPPredictor(space).predict(test)


def test_fit_refuses_bad_input(split):
    space, train, _ = split
    pred = RidgePredictor(space)
    with pytest.raises(PredictorError, match="at least 2"):
        pred.fit([], [])
    with pytest.raises(PredictorError, match="3 architectures but 2 scores"):
        pred.fit(train[:3], [1.0, 2.0])
    with pytest.raises(PredictorError, match=r"score #1 is nan.*drop failed"):
        pred.fit(train[:3], [1.0, float("nan"), 2.0])
    with pytest.raises(PredictorError, match="does not belong to search space 'toy'"):
        pred.fit([{"a": 0, "b": "x"}, {"a": 1, "b": "y"}], [1.0, 2.0])
    assert not pred.is_fitted


def test_options_are_validated_through_the_registry(split):
    space = split[0]
    with pytest.raises(ConfigError, match="n_estimators"):
        instantiate(PREDICTORS, "gbdt", {"n_estimators": 0}, space)
    with pytest.raises(ConfigError, match="bogus"):
        instantiate(PREDICTORS, "mlp", {"bogus": 1}, space)
    assert {*NAMES, "path_filter"} <= set(PREDICTORS.names())


def test_predict_with_std_needs_an_uncertain_predictor(split):
    space, train, test = split
    pred = RidgePredictor(space).fit(train, [toy_score(a) for a in train])
    with pytest.raises(PredictorError, match="'ensemble' or 'gp'"):
        pred.predict_with_std(test)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ensemble", "gp"])
def test_uncertainty_grows_away_from_the_data(name):
    """Trained where a in {0, 1} and c <= 2; the std on the training points is well below the
    std on architectures with a in {2, 3} and c = 6 (never seen)."""
    space = toy_space()
    archs = all_architectures(space)
    near = [a for a in archs if a["a"] in (0, 1) and a["c"] <= 2]
    far = [a for a in archs if a["a"] in (2, 3) and a["c"] == 6]
    pred = instantiate(PREDICTORS, name, {}, space, seed=0)
    pred.fit(near, [toy_score(a) for a in near])
    mean_near, std_near = pred.predict_with_std(near)
    _, std_far = pred.predict_with_std(far)
    np.testing.assert_allclose(mean_near, pred.predict(near))
    assert np.all(std_near >= 0) and np.all(std_far >= 0)
    assert std_far.mean() > 2 * std_near.mean(), (std_near.mean(), std_far.mean())


def test_ensemble_member_options_and_errors(split):
    space, train, test = split
    y = [toy_score(a) for a in train]
    ens = instantiate(PREDICTORS, "ensemble", {"member": "ridge", "n_members": 3,
                                               "bootstrap": True}, space, seed=0)
    ens.fit(train, y)
    _, std = ens.predict_with_std(test)
    assert len(ens.members) == 3 and std.mean() > 0  # bootstraps make ridge members differ
    with pytest.raises(PredictorError, match="needs costs"):
        instantiate(PREDICTORS, "ensemble", {"member": "path_filter"}, space)


def test_mlp_state_dict_round_trip(split):
    space, train, test = split
    pred = MLPPredictor(space, seed=1).fit(train, [toy_score(a) for a in train])
    other = MLPPredictor(space, seed=1)
    other.load_state_dict(pred.state_dict())
    np.testing.assert_array_equal(other.predict(test), pred.predict(test))


# -- metrics ---------------------------------------------------------------------------------------


def test_kendall_and_spearman_of_known_permutations():
    y = [1, 2, 3, 4]
    assert kendall_tau(y, [1, 3, 2, 4]) == pytest.approx(4 / 6)  # 5 concordant, 1 discordant
    assert kendall_tau(y, [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman(y, [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))  # 0.8
    assert np.isnan(kendall_tau(y, [5, 5, 5, 5]))
    with pytest.raises(PredictorError, match="one prediction per true score"):
        kendall_tau(y, [1, 2])


def test_precision_at_top_k_of_a_known_case():
    y_true = [5, 4, 3, 2, 1]  # true top-2: items 0, 1
    y_pred = [5, 1, 4, 2, 3]  # predicted top-2: items 0, 2
    assert precision_at_top_k(y_true, y_pred, 2) == 0.5
    assert precision_at_top_k(y_true, y_pred, 1) == 1.0
    assert precision_at_top_k(y_true, y_pred, 5) == 1.0
    with pytest.raises(PredictorError, match="k=6"):
        precision_at_top_k(y_true, y_pred, 6)


def test_bucketed_kendall_tau_of_a_known_case():
    costs = [1, 1, 1, 1, 9, 9]  # two buckets: four cheap, two expensive
    y_true = [1, 2, 3, 4, 5, 6]
    y_pred = [1, 2, 3, 4, 6, 5]  # cheap bucket perfect (tau 1), expensive reversed (tau -1)
    assert bucketed_kendall_tau(y_true, y_pred, costs, n_buckets=2) == pytest.approx(
        (4 * 1 + 2 * -1) / 6)
    # the same predictions across the whole set rank far better than within the buckets
    assert kendall_tau(y_true, y_pred) == pytest.approx(13 / 15)
    # a single-architecture bucket is left out
    assert bucketed_kendall_tau([1, 2, 3], [1, 2, 3], [1, 1, 5], n_buckets=2) == 1.0


def test_buckets_and_kept_count():
    edges = quantile_edges(np.arange(10), 5)
    np.testing.assert_allclose(edges, [1.5, 3.5, 5.5, 7.5])
    assert bucket_index(np.arange(10), edges).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    # equal costs share a bucket; ties merge buckets, down to one when all costs are equal
    assert quantile_edges([1, 1, 1, 1, 9, 9], 2).tolist() == [5.0]
    assert quantile_edges([1, 1, 9, 9, 9, 9], 2).tolist() == [5.0]
    assert quantile_edges([1, 1, 1, 1, 1, 9], 3).tolist() == [5.0]
    assert quantile_edges([3, 3, 3, 3], 4).size == 0
    assert kept_count(10, 0.3) == 3  # 0.3 * 10 is not rounded up to 4
    assert kept_count(7, 0.3) == 3 and kept_count(2, 0.01) == 1 and kept_count(0, 0.5) == 0


def test_evaluate_predictor_rows(split):
    space, train, test = split
    pool_y = [toy_score(a) for a in train]
    pool_c = [a["c"] for a in train]
    rows = evaluate_predictor(lambda seed: RidgePredictor(space, seed=seed), train, pool_y,
                              pool_c, [10, 100], test, [toy_score(a) for a in test],
                              [a["c"] for a in test], seeds=[0, 1])
    assert [(r["train_size"], r["seed"]) for r in rows] == [(10, 0), (100, 0), (10, 1),
                                                            (100, 1)]
    assert {"kendall_tau", "spearman", "precision_at_top", "bucketed_tau", "fit_s"} <= set(rows[0])
    table = {r["train_size"]: r for r in summarize(rows)}
    assert table[100]["n_seeds"] == 2
    assert table[100]["kendall_tau"] > 0.95 and table[100]["kendall_tau"] > table[10]["kendall_tau"]
    with pytest.raises(PredictorError, match="exceed the training pool"):
        evaluate_predictor(lambda seed: RidgePredictor(space), train, pool_y, pool_c, [1000],
                           test, [0.0] * len(test), [0.0] * len(test))
