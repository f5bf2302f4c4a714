"""bo on a real-valued learning rate: its continuous kernel against the 16-point grid it saw
before, and against random search, on the same seeds and budget (issue 33, item 3).

The function is tests/test_bo_continuous.py's: ``-(log10 lr + 2.5)^2 + op effect - 0.5 (wd -
0.3)^2`` over ``lr`` in [1e-5, 1e-1] (log scale), ``op`` in {a, b, c} and ``wd`` in [0, 1];
its optimum, 0.3, lies between two of the 16 grid points of ``lr``. Arms, each 40 evaluations
per seed:

* ``bo``: the ``Float`` dimensions as continuous kernel inputs (warm-up 10, pool 500);
* ``bo on the grid``: the same bo over a space whose ``lr`` and ``wd`` are categorical
  dimensions of the ``Float``'s 16 grid points, which is what bo saw before its continuous
  kernel (the whole 768-point grid enumerated);
* ``random``: uniform samples of the real-valued space.

Prints each arm's regret (optimum - best value found) per seed, its median and mean +- sample
std, and the paired two-sided Wilcoxon test of bo against each other arm.

    python benchmarks/bo_continuous.py --seeds 10
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

OPS = {"a": 0.0, "b": 0.3, "c": -0.2}
OPTIMUM = 0.3


def smooth(arch) -> float:
    return (-(math.log10(arch["lr"]) + 2.5) ** 2 + OPS[arch["op"]]
            - 0.5 * (arch["wd"] - 0.3) ** 2)


def spaces():
    from nastk.space import Categorical, Float, SearchSpace

    lr, wd = Float("lr", 1e-5, 1e-1, log=True), Float("wd", 0.0, 1.0)
    real = SearchSpace([lr, Categorical("op", list(OPS)), wd], name="lr_space")
    grid = SearchSpace([
        Categorical("lr", [lr.from_unit(i / (lr.grid - 1)) for i in range(lr.grid)]),
        Categorical("op", list(OPS)),
        Categorical("wd", [wd.from_unit(i / (wd.grid - 1)) for i in range(wd.grid)])],
        name="lr_grid")
    return real, grid


def regret(strategy, budget: int) -> float:
    from nastk.core.result import Result

    best = -math.inf
    for _ in range(budget):
        (arch,) = strategy.ask(1)
        value = smooth(arch)
        best = max(best, value)
        strategy.tell(arch, Result.complete({"score": value}))
    return OPTIMUM - best


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import wilcoxon

    from nastk.core.objective import Objective
    from nastk.strategies.bayesian import BayesianOptimisation
    from nastk.strategies.random_search import RandomSearch

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", type=int, default=40)
    args = ap.parse_args(argv)
    objective = Objective(metric="score")
    real, grid = spaces()
    arms = {
        "bo": lambda s: BayesianOptimisation(real, objective, seed=s, warmup=10, pool_size=500),
        "bo on the grid": lambda s: BayesianOptimisation(grid, objective, seed=s, warmup=10),
        "random": lambda s: RandomSearch(real, objective, seed=s),
    }
    t0 = time.perf_counter()
    out = {name: [regret(make(s), args.budget) for s in range(args.seeds)]
           for name, make in arms.items()}
    print(f"regret after {args.budget} evaluations, seeds 0..{args.seeds - 1}")
    print("| seed | " + " | ".join(out) + " |")
    print("|---|" + "---|" * len(out))
    for s in range(args.seeds):
        print(f"| {s} | " + " | ".join(f"{out[n][s]:.5f}" for n in out) + " |")
    for name, values in out.items():
        line = (f"{name}: median {statistics.median(values):.4f}, mean "
                f"{statistics.mean(values):.4f} +- {statistics.stdev(values):.4f}")
        if name != "bo":
            line += f", Wilcoxon bo vs it p = {wilcoxon(out['bo'], values).pvalue:.3g}"
        print(line)
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
