"""Our zero-cost proxies against NAS-Bench-Suite-Zero's, on NAS-Bench-201 architectures.

``zc_nasbench201.json`` (``../shared/data/nas-bench-suite-zero-naslib/``) holds, for about 725
NAS-Bench-201 architectures per data set, the proxy values NASLib computed (on real CIFAR /
ImageNet16 batches) and the architecture's validation accuracy. For ``--n`` of them (drawn with
``--seed``), this computes our proxies on the NAS-Bench-201 network with a classification head,
one batch of ``--batch-size`` generated images (``--task-dataset``, 32x32, 3 channels, as many
classes as the data set has up to 16; we have no CIFAR images offline), weights initialised with
the same seed for every architecture, and prints per proxy: Spearman's rho of our values with
theirs (do we compute the same thing?), of ours with the validation accuracy and of theirs with
it over the same architectures (is the proxy as useful?), and our seconds per architecture.

Run: ``python benchmarks/zero_cost_proxies.py`` (defaults: cifar10, 100 architectures, batch 64,
seed 0); ``--datasets cifar10 cifar100 ImageNet16-120`` for all three.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nastk.core import registry
from nastk.predictors.zero_cost.scorer import ZeroCostScorer
from nastk.search_spaces.nb201 import NB201Space, from_naslib
from nastk.search_spaces.tnb101 import DATA_FOLDER, find_data_dir

PROXIES = ["synflow", "jacov", "nwot", "snip", "grad_norm", "params", "flops"]
CLASSES = {"cifar10": 10, "cifar100": 16, "ImageNet16-120": 16}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["cifar10"])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task-dataset", default="glyphs", choices=["glyphs", "synthetic"])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = find_data_dir() / DATA_FOLDER / "zc_nasbench201.json"
    data = json.loads(path.read_text())
    space = NB201Space()
    print(f"# {' '.join(shlex.quote(a) for a in sys.argv)}")
    for dataset in args.datasets:
        rows = data[dataset]
        keys = sorted(rows)
        pick = np.random.default_rng(args.seed).permutation(len(keys))[:args.n]
        archs = [from_naslib(space, keys[i]) for i in pick]
        theirs = {p: np.array([rows[keys[i]][p]["score"] for i in pick]) for p in PROXIES}
        acc = np.array([rows[keys[i]]["val_accuracy"] for i in pick])
        task = registry.instantiate(
            registry.TASKS, "classification",
            {"dataset": args.task_dataset, "image_size": 32, "channels": 3,
             "num_classes": CLASSES[dataset], "n_samples": max(400, 4 * args.batch_size)},
            where="task.options")
        scorer = ZeroCostScorer(space, task, PROXIES, batch_size=args.batch_size,
                                seed=args.seed)
        start = time.perf_counter()
        ours = scorer.scores(archs)
        per_arch = (time.perf_counter() - start) / len(archs)
        print(f"\n## {dataset}: {len(archs)} architectures, batch {args.batch_size} of "
              f"{args.task_dataset} 32x32, seed {args.seed}, {per_arch:.2f} s per architecture "
              f"(all {len(PROXIES)} proxies, {args.threads} thread)\n")
        print("| proxy | rho(ours, NASLib's) | rho(ours, val acc) | rho(NASLib's, val acc) |")
        print("|---|---|---|---|")
        for j, p in enumerate(PROXIES):
            mine = ours[:, j]
            print(f"| {p} | {spearmanr(mine, theirs[p]).statistic:.3f} | "
                  f"{spearmanr(mine, acc).statistic:.3f} | "
                  f"{spearmanr(theirs[p], acc).statistic:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
