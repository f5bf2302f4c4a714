"""How well each predictor ranks NAS-Bench-201 architectures, against training-set size.

For each dataset, the 15,625 NAS-Bench-201 architectures are split once (seed ``--split-seed``)
into a held-out test set of ``--test-size`` architectures and a training pool (the rest). For
every predictor, training size and seed, ``--sizes`` architectures are drawn from the pool,
the predictor is fitted on their 12-epoch validation accuracy (the search signal; the path
filter also gets their FLOPs), and it predicts the test set. The table gives the mean over
seeds of Kendall tau, Spearman's rho, precision at the top 5 % (the share of the true top 5 %
among the predicted top 5 %), the Kendall tau within FLOPs buckets (5 quantile buckets of the
test set, weighted by size) and the fit time.

Run: ``python benchmarks/predictor_ranking.py`` (defaults: cifar10, sizes 10 100 1000, 5 seeds,
2,000 test architectures, all seven predictors). ``--datasets cifar10 cifar100
ImageNet16-120`` adds the other two datasets; ``--markdown`` prints markdown tables.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nastk.core.registry import PREDICTORS, instantiate
from nastk.predictors.metrics import evaluate_predictor, summarize
from nastk.search_spaces.nb201 import NB201Bench, NB201Space, nb201_data_missing

PREDICTOR_NAMES = ["gbdt", "random_forest", "gp", "ridge", "mlp", "ensemble", "path_filter"]
COLUMNS = [("kendall_tau", "Kendall tau"), ("spearman", "Spearman"),
           ("precision_at_top", "P@top5%"), ("bucketed_tau", "bucket tau"),
           ("fit_s", "fit s")]


def format_table(rows: list[dict[str, Any]], markdown: bool) -> str:
    header = ["predictor", "n train"] + [title for _, title in COLUMNS]
    body = []
    for r in rows:
        cells = [r["predictor"], str(r["train_size"])]
        for key, _ in COLUMNS:
            cells.append(f"{r[key]:.2f}" if key == "fit_s" else f"{r[key]:.3f}")
        body.append(cells)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(c) + " |" for c in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) for cells in body]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cifar10"],
                        choices=["cifar10", "cifar100", "ImageNet16-120"])
    parser.add_argument("--predictors", nargs="+", default=PREDICTOR_NAMES,
                        choices=PREDICTOR_NAMES)
    parser.add_argument("--sizes", nargs="+", type=int, default=[10, 100, 1000])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (training draws "
                                                             "and predictor seeds)")
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--split-seed", type=int, default=12345)
    parser.add_argument("--cost", default="flops", choices=["flops", "params"],
                        help="cost for the buckets (path filter and bucketed tau)")
    parser.add_argument("--n-buckets", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--markdown", action="store_true", help="markdown tables")
    args = parser.parse_args(argv)

    print("$ python benchmarks/predictor_ranking.py"
          + "".join(" " + shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))
    missing = nb201_data_missing()
    if missing:
        raise SystemExit(missing)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    bench = NB201Bench.load()
    space = NB201Space()
    archs = bench.archs()
    costs = np.array([bench.costs(a)[args.cost] for a in archs])
    order = np.random.default_rng(args.split_seed).permutation(len(archs))
    test_idx, pool_idx = order[:args.test_size], order[args.test_size:]
    seeds = list(range(args.seeds))
    print(f"NAS-Bench-201: {len(pool_idx)} pool / {len(test_idx)} test architectures, sizes "
          f"{args.sizes}, seeds {seeds}, buckets: {args.n_buckets} {args.cost} quantiles; "
          f"torch threads {args.threads}")
    for dataset in args.datasets:
        scores = np.array(bench.column(dataset, "val12"))
        table = []
        for name in args.predictors:
            t0 = time.perf_counter()
            rows = evaluate_predictor(
                lambda seed, name=name: instantiate(PREDICTORS, name, {}, space, seed=seed),
                [archs[i] for i in pool_idx], scores[pool_idx], costs[pool_idx], args.sizes,
                [archs[i] for i in test_idx], scores[test_idx], costs[test_idx], seeds=seeds,
                n_buckets=args.n_buckets)
            for r in summarize(rows):
                table.append({"predictor": name, **r})
            print(f"  {dataset} {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr,
                  flush=True)
        print(f"\n{dataset}, 12-epoch validation accuracy (mean over {len(seeds)} seeds):\n")
        print(format_table(table, args.markdown))
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
