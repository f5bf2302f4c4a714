"""The cost table of ``ofa_mbv3_full`` against building and counting: speed-up and equality.

For ``--archs`` random architectures (seeded) of ``ofa_mbv3_full`` at each ``--sizes`` input
(3 channels, square), in one process and interleaved per architecture, this times

(a) building the body and counting it with fvcore: ``space.build(arch, 3)`` (a fresh supernet,
    then ``extract``: what ``task.build_model`` does) + ``count_params`` + ``count_flops``;
(b) the same with the body extracted from one supernet built beforehand (what the
    weight-sharing evaluator and ``subnet_cost_fn`` did), not counting the supernet's build;
(c) the cost table, ``space.body_costs(arch, shape)``, on a fresh space: ``--table-repeats``
    passes over the architectures; the first pass includes the table's one-time construction
    for the input shape and is reported apart, the mean of the others is the figure;
(d) the engine at task level, :class:`nastk.evaluation.cost.TableCosts` for once-for-all's
    classification model (body, pooling, 1x1 conv to 1280 + h-swish, linear to 1000 classes):
    the first architecture builds and counts one model (the head's cost), the others are table
    look-ups; checked against fvcore on the built model;

and prints the per-architecture mean times, the speed-ups (a)/(c), (b)/(c), (a)/(d), and
whether every value equals fvcore's (largest absolute difference).

Run: ``python benchmarks/cost_table.py [--archs 50 --sizes 224 64 --width-mult 1.0 --seed 0
--threads 1]``.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nastk.evaluation.cost import TableCosts, count_flops, count_params
from nastk.search_spaces.ofa_mbv3 import OFAMobileNetV3FullSpace


def counted(net: nn.Module, shape: tuple[int, ...]) -> dict[str, float]:
    return {"params": float(count_params(net)), "flops": float(count_flops(net, shape))}


def classifier(space: OFAMobileNetV3FullSpace, body: nn.Module) -> nn.Module:
    """Once-for-all's classification model around ``body`` (1000 classes)."""
    return nn.Sequential(body, nn.AdaptiveAvgPool2d(1),
                         nn.Conv2d(space.final_channels, space.feature_mix_channels, 1,
                                   bias=False), nn.Hardswish(), nn.Flatten(1),
                         nn.Linear(space.feature_mix_channels, 1000))


def max_diff(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) for k in ("params", "flops"))


def run_size(size: int, args: argparse.Namespace) -> dict[str, float]:
    shape = (3, size, size)
    space = OFAMobileNetV3FullSpace(width_mult=args.width_mult)
    rng = np.random.default_rng(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    supernet = space.build_supernet(3).eval()
    t_build, t_extract, t_engine, diffs, want = [], [], [], [], []
    # the engine at task level: its first architecture builds and counts one model
    engine_space = OFAMobileNetV3FullSpace(width_mult=args.width_mult)
    engine = TableCosts(engine_space, shape,
                        lambda a: classifier(engine_space, engine_space.build(a, 3)))
    for arch in archs:
        t0 = time.perf_counter()
        built = counted(space.build(arch, 3), shape)
        t_build.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        extracted = counted(supernet.extract(arch).eval(), shape)
        t_extract.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = engine(arch)
        t_engine.append(time.perf_counter() - t0)
        assert got is not None
        model = counted(classifier(space, supernet.extract(arch)), shape)  # not timed
        diffs.append(max(max_diff(built, extracted), max_diff(got, model)))
        want.append(built)
    # the table on a fresh space: the first pass includes building the table for this shape
    fresh = OFAMobileNetV3FullSpace(width_mult=args.width_mult)
    passes = []
    for _ in range(args.table_repeats):
        t0 = time.perf_counter()
        table = [fresh.body_costs(a, shape) for a in archs]
        passes.append((time.perf_counter() - t0) / len(archs))
    first_pass = passes[0]
    diffs.extend(max_diff(t, w) for t, w in zip(table, want, strict=True))
    t_table = statistics.mean(passes[1:] or passes)  # the table built: look-ups only
    build, extract = statistics.mean(t_build), statistics.mean(t_extract)
    engine_mean = statistics.mean(t_engine)
    print(f"\n3x{size}x{size}, width {args.width_mult}, {len(archs)} archs "
          f"(per-architecture means):")
    sd_build, sd_extract = statistics.stdev(t_build), statistics.stdev(t_extract)
    print(f"  (a) build + fvcore      {build * 1e3:10.2f} ms (sd {sd_build * 1e3:.2f})")
    print(f"  (b) extract + fvcore    {extract * 1e3:10.2f} ms (sd {sd_extract * 1e3:.2f})")
    print(f"  (c) table               {t_table * 1e6:10.2f} us (mean of passes 2-"
          f"{args.table_repeats}; the first pass, with the table's construction: "
          f"{first_pass * 1e6:.2f} us)")
    print(f"  (d) engine, task model  {engine_mean * 1e3:10.3f} ms (first arch "
          f"{t_engine[0] * 1e3:.1f} ms builds the head's cost, the rest "
          f"{statistics.mean(t_engine[1:]) * 1e6:.2f} us)")
    print(f"  speed-up (a)/(c) {build / t_table:,.0f}x, (b)/(c) {extract / t_table:,.0f}x, "
          f"(a)/(c first pass) {build / first_pass:,.0f}x, (a)/(d) {build / engine_mean:,.1f}x")
    ok = max(diffs) == 0
    print(f"  equal to fvcore: {'yes' if ok else 'NO'} (max abs difference {max(diffs):g}, "
          f"{len(archs)} bodies and task models)")
    return {"build": build, "extract": extract, "table": t_table, "ok": float(ok)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=50, help="random architectures")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 64],
                        help="input sides (3 channels)")
    parser.add_argument("--width-mult", type=float, default=1.0)
    parser.add_argument("--table-repeats", type=int, default=20,
                        help="passes of the table over the architectures")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("command: python benchmarks/cost_table.py "
          + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    print(f"torch {torch.__version__}, python {platform.python_version()}, "
          f"{args.threads} torch thread(s)")
    results = [run_size(s, args) for s in args.sizes]
    worst = min(r["build"] / r["table"] for r in results)
    print(f"\nsmallest speed-up (a)/(c): {worst:,.0f}x (target >= 50x: "
          f"{'met' if worst >= 50 else 'missed'}); every value equal: "
          f"{'yes' if all(r['ok'] for r in results) else 'NO'}")


if __name__ == "__main__":
    main()
