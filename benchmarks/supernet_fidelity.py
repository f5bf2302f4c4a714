"""Does a supernet rank architectures the way stand-alone training does?

For a trained supernet (its ``nastk supernet train`` config and checkpoint), sample ``--n``
architectures uniformly from the whole space (plus, with ``--population RUN_DIR``, the ``--top``
best of a search's trials), score each by weight sharing (the search's evaluator: inherited
weights, batch norm recalibrated on training batches, the validation split), train each one
stand-alone from scratch with ``--seeds`` seeds (the train evaluator, the quickstart's settings
unless told otherwise), and print:

- Kendall tau and Spearman rho of the weight-sharing scores against the stand-alone mean;
- the noise ceiling: Kendall tau between stand-alone seeds (averaged over seed pairs), and the
  weight-sharing tau as a fraction of it (undefined when the ceiling is not positive);
- the same correlations for the FLOPs and the params baselines;
- the top-k overlap of the weight-sharing and the stand-alone rankings;
- the architecture spread (sample std of the stand-alone means across architectures) over the
  seed noise (the pooled sample std across seeds of one architecture), and the ratio.

Raw numbers and statistics go to ``--json``. ``--ray`` trains the stand-alone candidates on a
local Ray (``--ray-cpus``), one candidate per CPU.

    nastk supernet train examples/supernet_train.yaml
    python benchmarks/supernet_fidelity.py --supernet examples/supernet_train.yaml
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# -- statistics ---------------------------------------------------------------------------------
def fidelity_stats(ws: np.ndarray, standalone: np.ndarray, flops: np.ndarray,
                   params: np.ndarray, k: int = 5) -> dict[str, float]:
    """The benchmark's figures from the raw numbers: ``ws[n]`` weight-sharing scores,
    ``standalone[n, seeds]`` stand-alone scores (larger is better for both), costs ``[n]``."""
    from predictors.metrics import kendall_tau, spearman

    ws = np.asarray(ws, dtype=float)
    sa = np.asarray(standalone, dtype=float)
    if sa.ndim != 2 or sa.shape[1] < 2 or sa.shape[0] != ws.shape[0]:
        raise ValueError(f"standalone must be [n, seeds >= 2] with n = {ws.shape[0]}, got "
                         f"{sa.shape}")
    mean = sa.mean(axis=1)
    pairs = list(itertools.combinations(range(sa.shape[1]), 2))
    ceiling = float(np.mean([kendall_tau(sa[:, i], sa[:, j]) for i, j in pairs]))
    tau = kendall_tau(mean, ws)
    k = min(k, len(ws))
    top_ws = set(np.argsort(-ws, kind="stable")[:k].tolist())
    top_sa = set(np.argsort(-mean, kind="stable")[:k].tolist())
    spread = float(np.std(mean, ddof=1))
    noise = float(np.sqrt(np.mean(np.var(sa, axis=1, ddof=1))))
    return {
        "n": float(len(ws)), "seeds": float(sa.shape[1]),
        "ws_tau": tau, "ws_spearman": spearman(mean, ws),
        "noise_ceiling_tau": ceiling,
        # undefined when the seeds of one architecture do not agree (ceiling <= 0)
        "ws_tau_over_ceiling": tau / ceiling if ceiling > 0 else np.nan,
        "flops_tau": kendall_tau(mean, flops), "flops_spearman": spearman(mean, flops),
        "params_tau": kendall_tau(mean, params), "params_spearman": spearman(mean, params),
        "ws_flops_tau": kendall_tau(flops, ws),
        "top_k": float(k), "top_k_overlap": float(len(top_ws & top_sa)),
        "spread": spread, "seed_noise": noise,
        "spread_over_noise": spread / noise if noise > 0 else np.inf,
        "ws_range": float(np.ptp(ws)), "standalone_range": float(np.ptp(mean)),
    }


def format_stats(s: dict[str, float]) -> str:
    rows = [
        ("architectures x stand-alone seeds", f"{int(s['n'])} x {int(s['seeds'])}"),
        ("weight sharing vs stand-alone: Kendall tau", f"{s['ws_tau']:.3f}"),
        ("weight sharing vs stand-alone: Spearman rho", f"{s['ws_spearman']:.3f}"),
        ("noise ceiling (tau between stand-alone seeds)", f"{s['noise_ceiling_tau']:.3f}"),
        ("weight-sharing tau / ceiling",
         f"{s['ws_tau_over_ceiling']:.2f}" if np.isfinite(s["ws_tau_over_ceiling"])
         else "undefined (the stand-alone seeds do not agree: ceiling <= 0)"),
        ("FLOPs vs stand-alone: tau / rho", f"{s['flops_tau']:.3f} / {s['flops_spearman']:.3f}"),
        ("params vs stand-alone: tau / rho",
         f"{s['params_tau']:.3f} / {s['params_spearman']:.3f}"),
        ("weight sharing vs FLOPs: tau", f"{s['ws_flops_tau']:.3f}"),
        (f"top-{int(s['top_k'])} overlap", f"{int(s['top_k_overlap'])} of {int(s['top_k'])}"),
        ("architecture spread (std of means)", f"{s['spread']:.4f}"),
        ("seed noise (pooled std)", f"{s['seed_noise']:.4f}"),
        ("spread / noise", f"{s['spread_over_noise']:.2f}"),
        ("score range: weight sharing / stand-alone",
         f"{s['ws_range']:.4f} / {s['standalone_range']:.4f}"),
    ]
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# -- measuring -----------------------------------------------------------------------------------
def _train_one(plugins: list[str], space: dict[str, Any], task: dict[str, Any],
               train: dict[str, Any], seed: int, arch: dict[str, Any],
               metric: str) -> float:
    """One stand-alone training (also what a Ray worker runs)."""
    from nastk.build import build_from_refs
    from nastk.evaluation.train import TrainConfig, TrainEvaluator

    sp, tk = build_from_refs(plugins, space, task)
    result = TrainEvaluator(tk, sp, TrainConfig(**train), seed=seed).evaluate(sp.validate(arch))
    if not result.ok:
        raise RuntimeError(f"stand-alone training of {arch} failed: {result.error}")
    return float(result.metrics[metric])


def measure(supernet_config: Path, checkpoint: Path | None, n: int, seeds: int,
            train: dict[str, Any], sample_seed: int = 0, population: Path | None = None,
            top: int = 8, use_ray: bool = False, ray_cpus: int = 2,
            log: Any = print) -> dict[str, Any]:
    """Raw numbers: the architectures, their weight-sharing scores, costs and stand-alone
    scores per seed (scores oriented larger-is-better)."""
    from nastk.build import build_components, import_plugins
    from nastk.commands.run_record import open_run
    from nastk.commands.supernet_train import CHECKPOINT_NAME
    from nastk.config import SupernetConfig, load_config, parse_config

    sn = load_config(supernet_config, SupernetConfig)
    import_plugins(sn.plugins)
    ckpt = checkpoint or sn.resolved_run_dir() / CHECKPOINT_NAME
    if not Path(ckpt).is_file():
        raise SystemExit(f"no supernet checkpoint at {ckpt}: train it first with `nastk "
                         f"supernet train {supernet_config}` (or pass --checkpoint)")
    search = parse_config({
        "name": "fidelity", "run_dir": "unused", "seed": sn.seed, "plugins": sn.plugins,
        "space": sn.space.model_dump(mode="json"), "task": sn.task.model_dump(mode="json"),
        "strategy": "random",
        "evaluator": {"kind": "supernet",
                      "supernet": {"checkpoint": str(ckpt),
                                   "calib_batches": sn.training.bn_calib_batches}}},
        str(supernet_config))
    comps = build_components(search)
    space, task, objective, evaluator = comps.space, comps.task, comps.objective, comps.evaluator
    assert task is not None
    sign = 1.0 if objective.direction == "max" else -1.0
    rng = np.random.default_rng(sample_seed)
    archs: dict[str, Any] = {}
    tries = 0
    while len(archs) < n and tries < 100 * n:
        a = space.sample(rng)
        archs.setdefault(a.key, a)
        tries += 1
    sources = {key: "uniform" for key in archs}
    if population is not None:
        run = open_run(population)
        done = sorted((t for t in run.finished if run.objective.score(t.result) is not None),
                      key=lambda t: -run.objective.score(t.result))
        for t in done[:top]:
            a = space.validate(t.arch)
            if a.key not in archs:
                archs[a.key] = a
                sources[a.key] = "population"
    arch_list = list(archs.values())
    log(f"{len(arch_list)} architectures ({sum(v == 'population' for v in sources.values())} "
        f"from a search's population); weight sharing ...")
    ws, flops, params = [], [], []
    for a in arch_list:
        r = evaluator.evaluate(a)
        if not r.ok:
            raise RuntimeError(f"weight-sharing evaluation of {a} failed: {r.error}")
        ws.append(sign * float(r.metrics[objective.metric]))
        flops.append(float(r.costs["flops"]))
        params.append(float(r.costs["params"]))
    refs = (sn.plugins, sn.space.model_dump(mode="json"), sn.task.model_dump(mode="json"))
    jobs = [(s, a) for a in arch_list for s in range(seeds)]
    log(f"stand-alone training: {len(jobs)} runs ...")
    t0 = time.perf_counter()
    if use_ray:
        import ray

        ray.init(num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
        remote = ray.remote(num_cpus=1)(_train_one)
        futures = [remote.remote(*refs, train, s, a.as_dict(), objective.metric)
                   for s, a in jobs]
        values = ray.get(futures)
    else:
        values = []
        for i, (s, a) in enumerate(jobs):
            values.append(_train_one(*refs, train, s, a.as_dict(), objective.metric))
            if (i + 1) % max(1, len(jobs) // 10) == 0:
                done_s = time.perf_counter() - t0
                log(f"  {i + 1}/{len(jobs)} trained, {done_s:.0f} s, eta "
                    f"{done_s / (i + 1) * (len(jobs) - i - 1):.0f} s")
    standalone = (sign * np.array(values, dtype=float)).reshape(len(arch_list), seeds)
    return {"metric": objective.metric, "direction": objective.direction,
            "archs": [a.as_dict() for a in arch_list],
            "source": [sources[a.key] for a in arch_list],
            "ws": ws, "flops": flops, "params": params, "standalone": standalone.tolist(),
            "train": train, "supernet_config": str(supernet_config), "checkpoint": str(ckpt),
            "standalone_s": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", type=Path, default=ROOT / "examples" / "supernet_train.yaml",
                   help="the supernet's training config")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="default: the config's run_dir/supernet.pt")
    p.add_argument("--n", type=int, default=24, help="architectures sampled uniformly")
    p.add_argument("--seeds", type=int, default=2, help="stand-alone seeds per architecture")
    p.add_argument("--population", type=Path, default=None,
                   help="a search run whose best trials are added")
    p.add_argument("--top", type=int, default=8, help="trials taken from --population")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.005)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--k", type=int, default=5, help="top-k overlap")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--ray", action="store_true", help="train stand-alone runs on a local Ray")
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--json", type=Path, default=None, help="write raw numbers and statistics")
    args = p.parse_args(argv)
    if args.seeds < 2:
        p.error("--seeds must be at least 2 (the noise ceiling needs two)")
    train = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
             "optimizer": args.optimizer, "latency": False, "num_threads": 1}
    t0 = time.perf_counter()
    raw = measure(args.supernet, args.checkpoint, args.n, args.seeds, train,
                  sample_seed=args.sample_seed, population=args.population, top=args.top,
                  use_ray=args.ray, ray_cpus=args.ray_cpus,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    stats = fidelity_stats(np.array(raw["ws"]), np.array(raw["standalone"]),
                           np.array(raw["flops"]), np.array(raw["params"]), k=args.k)
    print(f"supernet fidelity: {raw['supernet_config']} ({raw['metric']}, "
          f"{raw['direction']})")
    print(format_stats(stats))
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"raw": raw, "stats": stats}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
