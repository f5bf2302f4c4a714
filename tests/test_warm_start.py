"""Warm starts across tasks (issue 33, item 5): earlier runs' results read, weighed by measured
agreement, used by evolution, bo and predictor_guided, recorded in the store and report, and
resumed exactly."""

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from nastk.cli.main import main
from nastk.config.schema import parse_config
from nastk.core.errors import ConfigError, StoreError
from nastk.core.objective import Objective
from nastk.core.registry import STRATEGIES
from nastk.core.result import Result, Status
from nastk.pipelines.search import run_search_config
from nastk.run.sqlite_store import RunStore
from nastk.search_spaces.tnb101 import TNB101MicroSpace, tnb101_data_missing
from nastk.space.dimensions import Categorical
from nastk.space.search_space import SearchSpace
from nastk.transfer.prior import TransferPrior, fit_slope, null_tau_std
from nastk.transfer.sources import SourceTask, read_sources

MISSING = tnb101_data_missing()
needs_data = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SCENE = "nastk.search_spaces.tnb101:micro_class_scene"
OBJECT = "nastk.search_spaces.tnb101:micro_class_object"


# -- a small space and hand-made sources -----------------------------------------------------
def grid_space() -> SearchSpace:
    return SearchSpace([Categorical("a", [0, 1, 2, 3]), Categorical("b", [0, 1, 2, 3])],
                       name="grid")


def truth(arch) -> float:
    """The new task: larger a and b are better (no ties)."""
    return 4.0 * arch["a"] + arch["b"]


def all_archs(space):
    return [space.validate({"a": a, "b": b}) for a, b in itertools.product(range(4), range(4))]


def source(space, name, fn) -> SourceTask:
    archs = all_archs(space)
    return SourceTask(name, (name,), tuple(archs), np.array([fn(a) for a in archs]))


def brute_tau(x, y) -> float:
    """Kendall's tau-a by counting pairs (no ties in the data used)."""
    c = d = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
        c += s > 0
        d += s < 0
    return (c - d) / (len(x) * (len(x) - 1) / 2)


def test_weights_are_measured_agreement_less_the_null_spread():
    space = grid_space()
    same = source(space, "same", truth)
    anti = source(space, "anti", lambda a: -truth(a))
    half = source(space, "half", lambda a: 4.0 * a["b"] + a["a"])  # b matters more: partial
    prior = TransferPrior(space, [same, anti, half], min_results=4)
    archs = all_archs(space)
    order = [3, 12, 5, 9, 14, 0, 7]
    observed = [(archs[i], truth(archs[i])) for i in order]
    # before min_results the prior says nothing, whatever the sources
    assert not prior.weights(observed[:3]).any()
    assert prior.best_unseen(observed[:3], set()) is None
    w = prior.weights(observed)
    n = len(observed)
    y = [s for _, s in observed]
    for j, fn in enumerate([truth, lambda a: -truth(a), lambda a: 4.0 * a["b"] + a["a"]]):
        tau = brute_tau([fn(a) for a, _ in observed], y)
        assert w[j] == pytest.approx(max(0.0, tau - null_tau_std(n)))
    assert w[0] > 0.0 and w[0] >= w[2] and w[1] == 0.0


def test_the_null_spread_is_that_of_unrelated_rankings():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    n = 9
    taus = [kendalltau(np.arange(n), rng.permutation(n)).statistic for _ in range(20000)]
    assert np.std(taus) == pytest.approx(null_tau_std(n), rel=0.03)


def test_best_unseen_follows_the_weighted_sources_and_skips_seen_and_invalid():
    space = grid_space()
    same = source(space, "same", truth)
    prior = TransferPrior(space, [same], min_results=3)
    archs = all_archs(space)
    observed = [(archs[i], truth(archs[i])) for i in (0, 5, 10)]
    best = prior.best_unseen(observed, set())
    assert (best["a"], best["b"]) == (3, 3)
    nxt = prior.best_unseen(observed, {best.key})
    assert (nxt["a"], nxt["b"]) == (3, 2)
    top = prior.top_unseen(prior.weights(observed), {best.key}, 3)
    assert [(a["a"], a["b"]) for a in top] == [(3, 2), (3, 1), (3, 0)]


def test_an_unknown_architecture_gets_the_ridge_prediction():
    from sklearn.linear_model import Ridge

    space = grid_space()
    archs = all_archs(space)
    known = [a for a in archs if a["a"] != a["b"]]  # the diagonal left out
    src = SourceTask("part", ("part",), tuple(known), np.array([truth(a) for a in known]))
    prior = TransferPrior(space, [src], min_results=3)
    values = prior.source_values(archs)[:, 0]
    from scipy.special import ndtri
    from scipy.stats import rankdata

    z = ndtri((rankdata([truth(a) for a in known]) - 0.5) / len(known))
    ridge = Ridge(alpha=1.0).fit(np.stack([space.encode(a) for a in known]), z)
    for i, arch in enumerate(archs):
        if arch["a"] == arch["b"]:  # predicted by the ridge on the space's encoding
            assert values[i] == pytest.approx(ridge.predict(space.encode(arch)[None])[0])
        else:  # looked up: the normal quantile of its rank
            assert values[i] == pytest.approx(z[known.index(arch)])
    diagonal = [values[5 * k] for k in range(4)]
    assert diagonal == sorted(diagonal)  # the additive model orders them as the task does


def test_fit_slope_is_least_squares_and_never_negative():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert fit_slope(x, 2.0 * x + 1.0) == pytest.approx(2.0)
    assert fit_slope(x, -x) == 0.0
    assert fit_slope(np.ones(4), x) == 0.0


# -- strategies ------------------------------------------------------------------------------
def drive(strategy, n: int, fn=truth):
    """Ask one at a time and tell ``fn``'s value; the proposals' keys."""
    keys = []
    for _ in range(n):
        (arch,) = strategy.ask(1)
        keys.append(arch.key)
        strategy.tell(arch, Result(Status.COMPLETE, {"m": fn(arch)}))
    return keys


def make(name: str, space, seed: int, prior=None, **options):
    s = STRATEGIES.get(name)(space, Objective(metric="m", direction="max"), seed=seed,
                             **options)
    if prior is not None:
        s.use_warm_start(prior)
    return s


WARM = {"evolution": {"population": 8, "sample_size": 3},
        "bo": {"warmup": 8},
        "predictor_guided": {"warmup": 8, "predictor": "ridge", "acquisition": "mean",
                             "candidates": 20}}


@pytest.mark.parametrize("name", sorted(WARM))
def test_a_related_source_fills_the_warmup_with_its_best(name):
    space = grid_space()
    prior = TransferPrior(space, [source(space, "same", truth)], min_results=3)
    s = make(name, space, 0, prior, **WARM[name])
    drive(s, 3)
    (arch,) = s.ask(1)  # weights measured now: the source's best
    assert (arch["a"], arch["b"]) == (3, 3)


@pytest.mark.parametrize("name", sorted(WARM))
def test_an_anti_correlated_source_is_dropped_and_the_search_runs_cold(name):
    space = grid_space()
    anti = TransferPrior(space, [source(space, "anti", lambda a: -truth(a))], min_results=3)
    warm = drive(make(name, space, 4, anti, **WARM[name]), 10)
    cold = drive(make(name, space, 4, None, **WARM[name]), 10)
    assert warm == cold  # no weight ever: the same proposals as cold


@pytest.mark.parametrize("name", sorted(WARM))
def test_warm_started_state_resumes_exactly(name):
    space = grid_space()
    src = source(space, "half", lambda a: 4.0 * a["b"] + a["a"] + 0.5 * a["a"] * a["b"])
    whole = make(name, space, 1, TransferPrior(space, [src], 3), **WARM[name])
    drive(whole, 6)
    state = whole.state_dict()
    rest = drive(whole, 6)
    again = make(name, space, 1, TransferPrior(space, [src], 3), **WARM[name])
    again.load_state_dict(state)
    assert drive(again, 6) == rest


def test_other_strategies_refuse_a_warm_start():
    space = grid_space()
    with pytest.raises(ConfigError, match="RandomSearch does not warm-start"):
        make("random", space, 0, TransferPrior(space, [source(space, "s", truth)], 3))
    bo = make("bo", space, 0, None, **WARM["bo"])
    drive(bo, 2)
    with pytest.raises(ConfigError, match="before the first result"):
        bo.use_warm_start(TransferPrior(space, [source(space, "s", truth)], 3))


# -- reading earlier runs, the engine, the store and report ----------------------------------
def search_config(tmp_path: Path, name: str, function: str, **extra) -> dict:
    data = {"name": name, "run_dir": str(tmp_path / name), "seed": extra.pop("seed", 0),
            "space": {"name": "tnb101_micro"},
            "strategy": extra.pop("strategy", {"name": "random"}),
            "objective": {"metric": "top1", **extra.pop("objective", {})},
            "evaluator": {"kind": "function", "function": function},
            "budget": {"trials": extra.pop("trials", 20)}}
    data.update(extra)
    return data


def run(data: dict, resume: bool = False):
    return run_search_config(parse_config(data, "test"), resume=resume, progress=False)


@needs_data
def test_sources_pool_runs_by_task_with_each_runs_own_objective(tmp_path):
    from nastk.search_spaces.tnb101 import TNB101Evaluator

    study = tmp_path / "study"
    for task, fn in (("scene", SCENE), ("object", OBJECT)):
        for seed in (0, 1):
            d = search_config(tmp_path, "x", fn, seed=seed, trials=15)
            d["run_dir"] = str(study / task / "random" / f"seed_{seed}")
            run(d)
    lone = search_config(tmp_path, "lone", SCENE, trials=10,
                         objective={"direction": "min"})
    run(lone)
    space = TNB101MicroSpace()
    sources = read_sources([study, tmp_path / "lone"], space)
    assert [s.name for s in sources] == ["object", "scene", "lone"]
    scene = sources[1]
    assert len(scene.runs) == 2
    ev = TNB101Evaluator("class_scene", "micro").evaluate
    with RunStore.open_existing(study / "scene" / "random" / "seed_0") as st:
        keys0 = {t.arch.key for t in st.finished()}
    with RunStore.open_existing(study / "scene" / "random" / "seed_1") as st:
        keys1 = {t.arch.key for t in st.finished()}
    assert {a.key for a in scene.archs} == keys0 | keys1
    for arch, score in zip(scene.archs, scene.scores, strict=True):
        assert score == pytest.approx(ev(arch).metrics["top1"])
    lone_src = sources[2]  # minimised: larger-is-better scores are the negated accuracies
    for arch, score in zip(lone_src.archs, lone_src.scores, strict=True):
        assert score == pytest.approx(-ev(arch).metrics["top1"])
    only = read_sources([study], space, tasks=["object"])
    assert [s.name for s in only] == ["object"]
    assert [s.name for s in read_sources([study], space, exclude=["object"])] == ["scene"]


@needs_data
def test_bad_sources_stop_the_run_before_anything_is_written(tmp_path):
    nb = search_config(tmp_path, "nb", "nastk.search_spaces.nb201:cifar10", trials=5)
    nb["space"] = {"name": "nb201"}
    nb["objective"] = {"metric": "val_acc_12ep"}
    run(nb)
    cases = {
        "does not exist": {"from": [str(tmp_path / "nowhere")]},
        "neither a run folder": {"from": [str(tmp_path)]},
        "no architecture of this search space": {"from": [str(tmp_path / "nb")]},
        "found in none": {"from": [str(tmp_path / "nb")], "tasks": ["scene"]},
    }
    for i, (message, ws) in enumerate(cases.items()):
        data = search_config(tmp_path, f"w{i}", SCENE, strategy={"name": "evolution"},
                             warm_start=ws)
        with pytest.raises(ConfigError, match=message):
            run(data)
        assert not (tmp_path / f"w{i}").exists()
    run(search_config(tmp_path, "src", OBJECT, trials=10))
    data = search_config(tmp_path, "r", SCENE, warm_start={"from": [str(tmp_path / "src")]})
    with pytest.raises(ConfigError, match=r"strategy 'random' does not warm-start; use one of "
                                          r"\['bo', 'evolution', 'predictor_guided'\]"):
        run(data)
    assert not (tmp_path / "r").exists()


@needs_data
def test_a_warm_started_search_records_its_sources_and_resumes_exactly(tmp_path, capsys):
    run(search_config(tmp_path, "src", OBJECT, trials=40))
    ws = {"from": [str(tmp_path / "src")]}
    strategy = {"name": "evolution", "options": {"population": 10, "sample_size": 3}}
    whole = run(search_config(tmp_path, "whole", SCENE, strategy=strategy, warm_start=ws,
                              trials=24, seed=2))
    part = search_config(tmp_path, "part", SCENE, strategy=strategy, warm_start=ws, trials=12,
                         seed=2)
    run(part)
    part["budget"] = {"trials": 24}
    resumed = run(part, resume=True)
    assert [t.arch.key for t in resumed.trials] == [t.arch.key for t in whole.trials]
    # proposals after min_results come from the source's best
    with RunStore.open_existing(tmp_path / "src") as st:
        src_keys = {t.arch.key for t in st.finished()}
    assert all(t.arch.key in src_keys for t in whole.trials[5:10])
    with RunStore.open_existing(tmp_path / "whole") as st:
        recorded = st.get_meta("warm_start")
    assert recorded["sources"][0]["task"] == "src"
    assert recorded["sources"][0]["architectures"] == len(src_keys)
    report = (tmp_path / "whole" / "report.md").read_text()
    assert f"| warm start from | src ({len(src_keys)} architectures, 1 runs) |" in report
    assert "warm-start weight of src per result" in report
    # a source that changed since: the resume is refused, naming it, and nothing is written
    run(search_config(tmp_path, "src", OBJECT, trials=45), resume=True)
    part["budget"] = {"trials": 30}
    with pytest.raises(StoreError, match=r"warm-start sources .* changed"):
        run(part, resume=True)
    with RunStore.open_existing(tmp_path / "part") as st:
        assert st.count() == 24


@needs_data
def test_a_study_warm_starts_each_task_from_the_others(tmp_path):
    study = {"name": "loo", "run_dir": str(tmp_path / "loo"), "seeds": 1,
             "tasks": [{"name": n, "space": {"name": "tnb101_micro"},
                        "evaluator": {"kind": "function", "function": f},
                        "objective": {"metric": "top1"}, "budget": {"trials": 12}}
                       for n, f in (("scene", SCENE), ("object", OBJECT))],
             "strategies": [{"name": "random"}]}
    (tmp_path / "src.yaml").write_text(yaml.safe_dump(study))
    assert main(["study", str(tmp_path / "src.yaml")]) == 0
    warm = dict(study, name="warm", run_dir=str(tmp_path / "warm"),
                strategies=[{"name": "evolution", "options": {"population": 6},
                             "warm_start": {"from": [str(tmp_path / "loo")]}}])
    (tmp_path / "warm.yaml").write_text(yaml.safe_dump(warm))
    assert main(["study", str(tmp_path / "warm.yaml")]) == 0
    for task, other in (("scene", "object"), ("object", "scene")):
        with RunStore.open_existing(tmp_path / "warm" / task / "evolution" / "seed_0") as st:
            assert [s["task"] for s in st.get_meta("warm_start")["sources"]] == [other]


def test_the_config_field_reads_from_and_defaults():
    data = {"space": {"name": "tnb101_micro"}, "evaluator": {"kind": "function",
                                                             "function": SCENE},
            "objective": {"metric": "top1"},
            "warm_start": {"from": ["a", "b"], "tasks": ["x"]}}
    c = parse_config(data, "test")
    assert [str(p) for p in c.warm_start.sources] == ["a", "b"]
    assert c.warm_start.min_results == 5 and c.warm_start.exclude == []
    with pytest.raises(ConfigError, match="min_results"):
        parse_config({**data, "warm_start": {"from": ["a"], "min_results": 1}}, "test")
    assert math.isfinite(null_tau_std(5))


@needs_data
def test_the_python_api_warm_starts_and_records_it(tmp_path):
    from nastk import create_search
    from nastk.search_spaces.tnb101 import micro_class_scene

    run(search_config(tmp_path, "src", OBJECT, trials=30))
    with pytest.raises(ConfigError, match="warm_start: strategy 'random' does not warm-start"):
        create_search("tnb101_micro", micro_class_scene, objective="top1", strategy="random",
                      warm_start={"from": [str(tmp_path / "src")]})
    with create_search("tnb101_micro", micro_class_scene, objective="top1",
                       strategy="evolution", strategy_options={"population": 8},
                       storage=tmp_path / "api", budget=12,
                       warm_start={"from": [str(tmp_path / "src")]}) as search:
        search.optimize()
    with RunStore.open_existing(tmp_path / "api") as st:
        assert st.get_meta("warm_start")["sources"][0]["task"] == "src"
        keys = [t.arch.key for t in st.finished()]
    with RunStore.open_existing(tmp_path / "src") as st:
        src = {t.arch.key for t in st.finished()}
    assert all(k in src for k in keys[5:8])  # the initial population from the source's best
    assert "| warm start from | src (" in (tmp_path / "api" / "report.md").read_text()


@needs_data
@pytest.mark.slow
def test_the_warm_start_examples_run_in_order(tmp_path):
    """examples/tnb101_sources.yaml then examples/warm_start.yaml (smaller budgets, in
    tmp_path): the search reads the six other tasks from the study."""
    from nastk.pipelines.study.config import StudyConfig
    from nastk.pipelines.study.runner import run_study

    root = Path(__file__).resolve().parents[1] / "examples"
    study = yaml.safe_load((root / "tnb101_sources.yaml").read_text())
    study["run_dir"] = str(tmp_path / "sources")
    study["seeds"] = [1000]
    for t in study["tasks"]:
        t["budget"] = {"trials": 20}
    run_study(StudyConfig.model_validate(study), progress=False)
    search = yaml.safe_load((root / "warm_start.yaml").read_text())
    search["run_dir"] = str(tmp_path / "warm")
    search["warm_start"]["from"] = [str(tmp_path / "sources")]
    run(search)
    with RunStore.open_existing(tmp_path / "warm") as st:
        tasks = [s["task"] for s in st.get_meta("warm_start")["sources"]]
    assert sorted(tasks) == sorted(t["name"] for t in study["tasks"] if t["name"] != "class_scene")


@needs_data
def test_study_run_folders_given_one_by_one_are_named_by_their_task(tmp_path):
    study = tmp_path / "study"
    for task, fn in (("scene", SCENE), ("object", OBJECT)):
        d = search_config(tmp_path, "x", fn, seed=0, trials=8)
        d["run_dir"] = str(study / task / "random" / "seed_0")
        run(d)
    space = TNB101MicroSpace()
    found = read_sources([study / "scene" / "random" / "seed_0",
                          study / "object" / "random" / "seed_0"], space)
    assert [s.name for s in found] == ["scene", "object"]  # not one pooled "seed_0"
    assert found[0].describe()["from"] == [str(study)]
    # a study's tasks listed and its own task excluded (what a study's searches get)
    assert [s.name for s in read_sources([study], space, tasks=["scene", "object"],
                                         exclude=["scene"])] == ["object"]


def test_a_cold_state_loaded_into_a_warm_started_bo_continues():
    space = grid_space()
    cold = make("bo", space, 2, None, **WARM["bo"])
    keys = drive(cold, 6)  # still in the warm-up (8)
    state = cold.state_dict()
    prior = TransferPrior(space, [source(space, "same", truth)], 3)
    warm = make("bo", space, 2, prior, **WARM["bo"])
    warm.load_state_dict(state)
    (arch,) = warm.ask(1)  # the history's architectures rebuilt: the prior's best unseen
    by_key = {a.key: a for a in all_archs(space)}
    told = [(by_key[k], truth(by_key[k])) for k in keys]
    assert arch.key == prior.best_unseen(told, set(keys)).key
