"""TransNAS-Bench-101: the micro and macro spaces and the tabular look-up of its seven tasks."""

import itertools
import json
import math
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nastk.core.errors import BenchmarkDataError, InvalidArchitectureError
from nastk.search_spaces import tnb101
from nastk.search_spaces.tnb101 import (
    TASKS,
    TNB101Bench,
    TNB101Evaluator,
    TNB101MacroSpace,
    TNB101MicroSpace,
    find_data_dir,
    tnb101_data_missing,
)

MISSING = tnb101_data_missing()
needs_data = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

#: the best value of every task over the whole space (micro, macro), as ../shared/TASKS.md
#: lists them from the same dumps
PUBLISHED_BEST = {
    "segmentsemantic": (94.61, 94.86), "normal": (0.5873, 0.6435),
    "autoencoder": (0.5772, 0.7488), "room_layout": (-0.601, -0.582),
    "class_scene": (54.94, 57.41), "class_object": (45.59, 47.42), "jigsaw": (95.37, 97.02),
}


def test_micro_space_codes_strings_and_size():
    sp = TNB101MicroSpace()
    assert sp.size() == 4096
    a = sp.from_codes((1, 3, 0, 3, 2, 1))
    assert a["edge_1_0"] == "skip_connect" and a["edge_2_1"] == "none"
    assert a["edge_3_2"] == "skip_connect" and a["edge_3_1"] == "nor_conv_1x1"
    assert sp.to_string(a) == "64-41414-1_30_321"
    assert sp.from_string("64-41414-1_30_321") == a
    assert sp.codes(a) == (1, 3, 0, 3, 2, 1)


def test_macro_space_enumerates_the_benchmark_rules():
    sp = TNB101MacroSpace()
    archs = sp.enumerate()
    assert len(archs) == sp.size() == 3256
    lengths = [len(sp.codes(a)) for a in archs]
    assert lengths.count(4) == 210 and lengths.count(5) == 750 and lengths.count(6) == 2296
    a = sp.from_string("64-41414-basic")
    assert sp.codes(a) == (4, 1, 4, 1, 4) and a["module_5"] == "none"
    assert sp.to_string(a) == "64-41414-basic"
    rng = np.random.default_rng(0)
    for _ in range(50):
        b = sp.sample(rng)
        assert sp.is_valid(b) and sp.is_valid(sp.mutate(b, rng))


@pytest.mark.parametrize(("space", "text", "fragment"), [
    ("micro", "64-41414-4_33_333", "codes in 0..3"),
    ("micro", "64-41414-3_3_3333", "a_bc_def"),
    ("macro", "64-1111-basic", "0 downsampling modules"),
    ("macro", "64-4444-basic", "4 channel-doubling"),
    ("macro", "64-41-basic", "4 to 6 codes"),
    ("macro", "64-41414", "-basic"),
])
def test_bad_strings_name_the_problem(space, text, fragment):
    sp = TNB101MicroSpace() if space == "micro" else TNB101MacroSpace()
    with pytest.raises(InvalidArchitectureError, match=re.escape(fragment)):
        sp.from_string(text)


def test_a_gap_in_the_macro_stack_is_refused():
    sp = TNB101MacroSpace()
    values = dict(sp.from_string("64-412134-basic"))
    values["module_4"] = "none"  # module_5 stays 'down_double'
    with pytest.raises(InvalidArchitectureError, match="after an empty module_4"):
        sp.validate(values)


def test_missing_data_says_where_to_put_it(tmp_path):
    with pytest.raises(BenchmarkDataError, match="NASTK_TNB101_DIR"):
        find_data_dir(tmp_path)
    folder = tmp_path / tnb101.DATA_FOLDER
    folder.mkdir()
    for kind, name in tnb101.FILES.items():
        with zipfile.ZipFile(folder / name, "w") as z:
            z.writestr(f"zen/benchmark--transbench101_{kind}--class_scene--0.json",
                       json.dumps([{"arch": "(1, 3, 0, 3, 2, 1)", "val_accuracy": 50.0}]))
    with pytest.raises(BenchmarkDataError, match="expected 4096"):
        TNB101Bench(tmp_path, "micro")


@needs_data
def test_lookups_equal_the_raw_dump():
    """Values read straight from the zip members equal what the bench answers."""
    root = find_data_dir() / tnb101.DATA_FOLDER
    micro, macro = TNB101Bench.load(kind="micro"), TNB101Bench.load(kind="macro")
    assert len(micro) == 4096 and len(macro) == 3256
    assert set(a.key for a in macro.archs()) == set(a.key for a in TNB101MacroSpace().enumerate())
    compared = 0
    for bench, kind in ((micro, "micro"), (macro, "macro")):
        with zipfile.ZipFile(root / tnb101.FILES[kind]) as z:
            for member in [m for m in z.namelist() if m.endswith(".json")][:14]:
                task = member.split("--")[2]
                for row in json.loads(z.read(member))[:3]:
                    codes = tuple(int(c) for c in row["arch"].strip("()").split(","))
                    arch = bench.space.from_codes(codes)
                    assert bench.value(arch, task) == row["val_accuracy"]
                    compared += 1
    assert compared == 2 * 14 * 3  # the loops above did compare
    a = micro.space.from_string("64-41414-3_33_333")
    assert micro.value(a, "class_scene") == pytest.approx(53.6723747)
    assert micro.value(a, "room_layout") == pytest.approx(-0.7344431)
    b = macro.space.from_codes((3, 3, 2, 2, 2, 1))
    assert macro.value(b, "room_layout") == pytest.approx(-0.7882004)


@needs_data
@pytest.mark.parametrize("task", list(TASKS))
def test_best_architecture_of_each_task(task):
    for i, kind in enumerate(("micro", "macro")):
        bench = TNB101Bench.load(kind=kind)
        best = bench.best(task)
        assert bench.value(best, task) == bench.optimum(task)
        assert bench.optimum(task) == pytest.approx(PUBLISHED_BEST[task][i], abs=0.006)
        assert all(v <= bench.optimum(task) for v in bench.column(task).values())
    micro_best = {"class_scene": "64-41414-3_32_132", "jigsaw": "64-41414-3_30_132",
                  "autoencoder": "64-41414-1_20_310"}
    if task in micro_best:
        bench = TNB101Bench.load(kind="micro")
        assert bench.space.to_string(bench.best(task)) == micro_best[task]


@needs_data
def test_evaluator_and_functions_report_the_task_metric():
    ev = TNB101Evaluator("segmentsemantic", "micro")
    a = ev.bench.space.from_string("64-41414-3_13_022")
    r = ev.evaluate(a)
    assert r.ok and r.metrics == {"pixel_acc": pytest.approx(94.6125183)}
    assert r.info["tnb101"] == "64-41414-3_13_022" and ev.queries == 1
    assert r.costs == tnb101.micro_costs(a, "segmentsemantic")
    assert tnb101.micro_normal(a) == ({"ssim": ev.bench.value(a, "normal")},
                                      tnb101.micro_costs(a, "normal"))
    macro = TNB101MacroSpace().from_codes((3, 3, 2, 2, 2, 1))
    assert tnb101.macro_jigsaw(macro) == ({"top1": TNB101Bench.load(kind="macro").value(
        macro, "jigsaw")}, {})
    with pytest.raises(ValueError, match="unknown; use one of"):
        TNB101Evaluator("depth")


@needs_data
def test_the_example_search_runs_through_the_cli(tmp_path, capsys):
    from nastk.cli.main import main
    from nastk.run.sqlite_store import RunStore

    example = Path(__file__).resolve().parents[1] / "examples" / "tnb101_search.yaml"
    code = main(["search", str(example), "--run-dir", str(tmp_path / "run"), "--trials", "60",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    bench = TNB101Bench.load(kind="micro")
    with RunStore.open_existing(tmp_path / "run") as store:
        trials = store.finished()
    assert len(trials) == 60 and len({TNB101MicroSpace().validate(t.arch).key
                                      for t in trials}) == 60
    for t in trials:
        assert t.result.metrics["top1"] == bench.value(t.arch, "class_scene")
    report = (tmp_path / "run" / "report.md").read_text()
    assert "64-41414-" in report  # the benchmark's strings in the leaderboard


def test_micro_costs_by_hand():
    """Base of the task's network plus one term per edge: edges leaving the input node (1-0,
    2-0, 3-0) cost more FLOPs per convolution but fewer parameters than the inner ones, and
    their skip is a strided projection; jigsaw has its own FLOPs."""
    space = TNB101MicroSpace()
    allconv = space.from_string("64-41414-3_33_333")
    assert tnb101.micro_costs(allconv) == {
        "params": 51_807 + 3 * 6_124_544 + 3 * 7_672_832,
        "flops": 91_824_128 + 3 * 1_286_242_304 + 3 * 1_512_505_344}
    assert tnb101.micro_costs(allconv)["flops"] == 8_488_067_072  # NASLib: 8488.067072 M
    mixed = space.from_string("64-41414-1_02_300")  # skip 1-0, 1x1 2-1, 3x3 3-0
    assert tnb101.micro_costs(mixed, "class_object") == {
        "params": 70_788 + 173_824 + 857_088 + 6_124_544,
        "flops": 91_843_072 + 26_083_328 + 170_328_064 + 1_286_242_304}
    assert tnb101.micro_costs(mixed, "jigsaw") == {
        "params": 4_628_488 + 173_824 + 857_088 + 6_124_544,
        "flops": 10_383_872 + 1_630_208 + 10_645_504 + 80_390_144}
    empty = space.from_string("64-41414-0_00_000")
    assert tnb101.micro_costs(empty, "normal") == {"params": 22_891_347,
                                                   "flops": 1_714_225_152}
    # the space costs the network of its `task` option (path_filter_search reads it)
    assert TNB101MicroSpace(task="jigsaw").arch_costs(mixed) == tnb101.micro_costs(mixed,
                                                                                   "jigsaw")
    assert space.arch_costs(mixed) == tnb101.micro_costs(mixed, "class_scene")
    with pytest.raises(ValueError, match="unknown; use one of"):
        TNB101MicroSpace(task="depth")


@needs_data
def test_micro_costs_equal_the_published_counts():
    """Every (architecture, task) of zc_transbench101_micro.json: the additive model gives
    NAS-Bench-Suite-Zero's FLOPs and parameter counts (millions, 6 decimals) exactly."""
    path = find_data_dir() / tnb101.DATA_FOLDER / "zc_transbench101_micro.json"
    data = json.loads(path.read_text())
    space, n = TNB101MicroSpace(), 0
    assert set(data) == set(TASKS)
    for task, rows in data.items():
        for codes, row in rows.items():
            costs = tnb101.micro_costs(space.from_codes(tnb101._codes(codes, path, task)), task)
            assert costs["flops"] == round(row["flops"]["score"] * 1e6), (task, codes)
            assert costs["params"] == round(row["params"]["score"] * 1e6), (task, codes)
            n += 1
    assert n == 711 * 7


@needs_data
def test_path_filter_search_prunes_the_micro_space_by_the_task_costs():
    """After its warm-up, path_filter_search keeps what a brute force over all 4,096
    architectures keeps: FLOPs of the task's network (segmentsemantic, not the space's default
    class_scene), cut into the filter's cost buckets at midpoints of the warm-up's FLOPs, and in
    each bucket the architectures the filter scores at least as high as the
    ceil(keep_ratio * n_b)-th best of the n_b of its n_samples draws (seeded alike) in it."""
    from nastk.core.objective import Objective
    from nastk.run.tabular import run_tabular
    from nastk.strategies.path_filter_search import PathFilterSearch

    objective = Objective(metric="pixel_acc")
    ev = TNB101Evaluator("segmentsemantic")
    space = TNB101MicroSpace(task="segmentsemantic")
    strategy = PathFilterSearch(space, objective, 0, warmup=20, n_samples=400,
                                filter_options={"steps": 100})
    traj = run_tabular(strategy, ev, objective, 40)
    assert strategy.pruned is not None
    filt, keep_ratio = strategy.path_filter, strategy.options.keep_ratio

    def flops(arch):
        return tnb101.micro_costs(arch, "segmentsemantic")["flops"]

    warm = sorted({flops(a) for a in traj.archs[:20]})
    edges = [float(e) for e in filt.edges]
    assert edges and set(edges) <= {(lo + hi) / 2 for lo, hi in itertools.pairwise(warm)}, edges

    every = [space.from_codes(c) for c in itertools.product(range(4), repeat=6)]
    costs = np.array([flops(a) for a in every])
    bucket = np.array([sum(e <= c for e in edges) for c in costs])
    score = dict(zip((a.key for a in every), filt.score(every, costs), strict=True))
    rng = np.random.default_rng(0)
    draws = [space.sample(rng) for _ in range(400)]
    threshold = {}
    for b in set(bucket):
        drawn = sorted((score[a.key] for a in draws if sum(e <= flops(a) for e in edges) == b),
                       reverse=True)
        threshold[b] = drawn[math.ceil(keep_ratio * len(drawn)) - 1] if drawn else -math.inf
    margin = np.array([score[a.key] - threshold[b] for a, b in zip(every, bucket, strict=True)])
    kept = {a.key for a, m in zip(every, margin, strict=True) if m >= 0}

    # the pruned space's thresholds are these, and it judges like this (on a quarter of the
    # space, drawn at random: one at a time, its judgements cost 4 ms each); a score computed in
    # another batch may differ in its last bits, so ties are left out
    np.testing.assert_allclose(strategy.pruned.thresholds[sorted(threshold)],
                               [threshold[b] for b in sorted(threshold)], rtol=0, atol=1e-6)
    some = np.random.default_rng(1).choice(len(every), size=len(every) // 4, replace=False)
    some = [i for i in some if abs(margin[i]) > 1e-6]
    assert len(some) > len(every) // 4 - 2 * len(threshold)
    assert [strategy.pruned.is_kept(every[i]) for i in some] == [every[i].key in kept
                                                                 for i in some]
    assert 0.15 < len(kept) / len(every) < 0.35  # about keep_ratio = 0.25 of the space
    assert all(0 < sum(k in kept for k in (a.key for a, bb in zip(every, bucket, strict=True)
                                              if bb == b)) < (bucket == b).sum()
               for b in threshold)  # every bucket keeps some and prunes some
    assert all(a.key in kept for a in traj.archs[20:])  # the search stayed inside
