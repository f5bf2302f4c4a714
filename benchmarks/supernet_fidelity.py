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

``--standalone-only SEARCH_CONFIG`` skips the supernet: it samples that config's space and
trains its task stand-alone (its ``evaluator.train`` settings), which says whether a task can
tell the space's architectures apart at all. ``--reuse JSON`` takes the stand-alone scores of
an earlier run of the same architectures, task and settings, so that supernet recipes are
compared against one ground truth. Raw numbers and statistics go to ``--json``. ``--ray``
trains the stand-alone candidates on a local Ray (``--ray-cpus``), one candidate per CPU.

    nastk supernet train examples/supernet_train.yaml
    python benchmarks/supernet_fidelity.py --supernet examples/supernet_train.yaml
    python benchmarks/supernet_fidelity.py --standalone-only examples/quickstart.yaml
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
def fidelity_stats(ws: np.ndarray | None, standalone: np.ndarray, flops: np.ndarray,
                   params: np.ndarray, k: int = 5) -> dict[str, float]:
    """The benchmark's figures from the raw numbers: ``ws[n]`` weight-sharing scores (None for
    a stand-alone-only run: its figures are NaN), ``standalone[n, seeds]`` stand-alone scores
    (larger is better for both), costs ``[n]``."""
    from nastk.predictors.metrics import kendall_tau, spearman

    sa = np.asarray(standalone, dtype=float)
    n = sa.shape[0] if sa.ndim == 2 else -1
    if ws is not None:
        ws = np.asarray(ws, dtype=float)
        n = ws.shape[0]
    if sa.ndim != 2 or sa.shape[1] < 2 or sa.shape[0] != n:
        raise ValueError(f"standalone must be [n, seeds >= 2] with n = {n}, got {sa.shape}")
    mean = sa.mean(axis=1)
    pairs = list(itertools.combinations(range(sa.shape[1]), 2))
    ceiling = float(np.mean([kendall_tau(sa[:, i], sa[:, j]) for i, j in pairs]))
    spread = float(np.std(mean, ddof=1))
    noise = float(np.sqrt(np.mean(np.var(sa, axis=1, ddof=1))))
    k = min(k, n)
    out = {
        "n": float(n), "seeds": float(sa.shape[1]), "noise_ceiling_tau": ceiling,
        "flops_tau": kendall_tau(mean, flops), "flops_spearman": spearman(mean, flops),
        "params_tau": kendall_tau(mean, params), "params_spearman": spearman(mean, params),
        "top_k": float(k), "spread": spread, "seed_noise": noise,
        "spread_over_noise": spread / noise if noise > 0 else np.inf,
        "standalone_range": float(np.ptp(mean)),
    }
    if ws is None:
        out.update({name: np.nan for name in ("ws_tau", "ws_spearman", "ws_tau_over_ceiling",
                                              "ws_flops_tau", "top_k_overlap", "ws_range")})
        return out
    tau = kendall_tau(mean, ws)
    top_ws = set(np.argsort(-ws, kind="stable")[:k].tolist())
    top_sa = set(np.argsort(-mean, kind="stable")[:k].tolist())
    out.update({
        "ws_tau": tau, "ws_spearman": spearman(mean, ws),
        # undefined when the seeds of one architecture do not agree (ceiling <= 0)
        "ws_tau_over_ceiling": tau / ceiling if ceiling > 0 else np.nan,
        "ws_flops_tau": kendall_tau(flops, ws),
        "top_k_overlap": float(len(top_ws & top_sa)), "ws_range": float(np.ptp(ws)),
    })
    return out


def format_stats(s: dict[str, float]) -> str:
    rows = [("architectures x stand-alone seeds", f"{int(s['n'])} x {int(s['seeds'])}")]
    has_ws = bool(np.isfinite(s["ws_tau"]))  # a stand-alone-only run has no weight sharing
    if has_ws:
        rows += [
            ("weight sharing vs stand-alone: Kendall tau", f"{s['ws_tau']:.3f}"),
            ("weight sharing vs stand-alone: Spearman rho", f"{s['ws_spearman']:.3f}")]
    rows.append(("noise ceiling (tau between stand-alone seeds)",
                 f"{s['noise_ceiling_tau']:.3f}"))
    if has_ws:
        rows.append(("weight-sharing tau / ceiling",
                     f"{s['ws_tau_over_ceiling']:.2f}" if np.isfinite(s["ws_tau_over_ceiling"])
                     else "undefined (the stand-alone seeds do not agree: ceiling <= 0)"))
    rows += [
        ("FLOPs vs stand-alone: tau / rho", f"{s['flops_tau']:.3f} / {s['flops_spearman']:.3f}"),
        ("params vs stand-alone: tau / rho",
         f"{s['params_tau']:.3f} / {s['params_spearman']:.3f}")]
    if has_ws:
        rows += [
            ("weight sharing vs FLOPs: tau", f"{s['ws_flops_tau']:.3f}"),
            (f"top-{int(s['top_k'])} overlap",
             f"{int(s['top_k_overlap'])} of {int(s['top_k'])}")]
    rows += [
        ("architecture spread (std of means)", f"{s['spread']:.4f}"),
        ("seed noise (pooled std)", f"{s['seed_noise']:.4f}"),
        ("spread / noise", f"{s['spread_over_noise']:.2f}")]
    rows.append(("score range: weight sharing / stand-alone",
                 f"{s['ws_range']:.4f} / {s['standalone_range']:.4f}")
                if has_ws else
                ("score range: stand-alone", f"{s['standalone_range']:.4f}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


# -- measuring -----------------------------------------------------------------------------------
def _train_one(plugins: list[str], space: dict[str, Any], task: dict[str, Any],
               train: dict[str, Any], seed: int, arch: dict[str, Any],
               metric: str) -> tuple[float, float, float]:
    """One stand-alone training (also what a Ray worker runs): its score, FLOPs and params."""
    from nastk.config.compose import build_from_refs
    from nastk.evaluation.train import TrainConfig, TrainEvaluator

    sp, tk = build_from_refs(plugins, space, task)
    result = TrainEvaluator(tk, sp, TrainConfig(**train), seed=seed).evaluate(sp.validate(arch))
    if not result.ok:
        raise RuntimeError(f"stand-alone training of {arch} failed: {result.error}")
    return (float(result.metrics[metric]), float(result.costs["flops"]),
            float(result.costs["params"]))


def measure(supernet_config: Path | None, checkpoint: Path | None, n: int, seeds: int,
            train: dict[str, Any], sample_seed: int = 0, population: Path | None = None,
            top: int = 8, use_ray: bool = False, ray_cpus: int = 2,
            calib_batches: int | None = None, reuse: dict[str, Any] | None = None,
            search_config: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Raw numbers: the architectures, their weight-sharing scores (with a supernet), costs and
    stand-alone scores per seed (scores oriented larger-is-better). Without a supernet,
    ``search_config`` names the space and task, and only stand-alone training runs."""
    from nastk.config.compose import build_components, import_plugins
    from nastk.config.schema import SearchConfig, SupernetConfig, load_config, parse_config
    from nastk.run.layout import SUPERNET_CHECKPOINT
    from nastk.run.record import open_run

    if supernet_config is not None:
        sn = load_config(supernet_config, SupernetConfig)
        import_plugins(sn.plugins)
        ckpt: Path | None = checkpoint or sn.resolved_run_dir() / SUPERNET_CHECKPOINT
        if not Path(ckpt).is_file():
            raise SystemExit(f"no supernet checkpoint at {ckpt}: train it first with `nastk "
                             f"supernet train {supernet_config}` (or pass --checkpoint)")
        search = parse_config({
            "name": "fidelity", "run_dir": "unused", "seed": sn.seed, "plugins": sn.plugins,
            "space": sn.space.model_dump(mode="json"), "task": sn.task.model_dump(mode="json"),
            "strategy": "random",
            "evaluator": {"kind": "supernet",
                          "supernet": {"checkpoint": str(ckpt),
                                       "calib_batches": calib_batches
                                       or sn.training.bn_calib_batches}}},
            str(supernet_config))
    elif search_config is not None:
        search = load_config(search_config, SearchConfig)
        import_plugins(search.plugins)
        ckpt = None
    else:
        raise ValueError("measure needs a supernet config or a search config")
    comps = build_components(search)
    space, task, objective = comps.space, comps.task, comps.objective
    evaluator = comps.evaluator if supernet_config is not None else None
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
    for a in arch_list if evaluator is not None else []:
        r = evaluator.evaluate(a)
        if not r.ok:
            raise RuntimeError(f"weight-sharing evaluation of {a} failed: {r.error}")
        ws.append(sign * float(r.metrics[objective.metric]))
        flops.append(float(r.costs["flops"]))
        params.append(float(r.costs["params"]))
    refs = (search.plugins, search.space.model_dump(mode="json"),
            search.task.model_dump(mode="json"))
    jobs = [(s, a) for a in arch_list for s in range(seeds)]
    t0 = time.perf_counter()
    if reuse is not None:
        mine = {"archs": [a.as_dict() for a in arch_list], "train": train, "space": refs[1],
                "task": refs[2], "seeds": seeds}
        theirs = {"archs": reuse["archs"], "train": reuse["train"],
                  "space": reuse.get("space"), "task": reuse.get("task"),
                  "seeds": len(reuse["standalone"][0])}
        diff = [k for k in mine if json.dumps(mine[k], sort_keys=True, default=str)
                != json.dumps(theirs[k], sort_keys=True, default=str)]
        if diff:
            raise SystemExit(f"--reuse: its {', '.join(diff)} differ from this run's; the "
                             f"stand-alone numbers cannot be reused (drop --reuse)")
        log("stand-alone scores reused from an earlier run of the same architectures")
        values = [(sign * v, f, p) for row, f, p in  # back to raw scores
                  zip(reuse["standalone"], reuse["flops"], reuse["params"], strict=True)
                  for v in row]
    elif use_ray:
        log(f"stand-alone training: {len(jobs)} runs on Ray ...")
        import ray

        ray.init(num_cpus=ray_cpus, include_dashboard=False, log_to_driver=False,
                 ignore_reinit_error=True)
        remote = ray.remote(num_cpus=1)(_train_one)
        futures = [remote.remote(*refs, train, s, a.as_dict(), objective.metric)
                   for s, a in jobs]
        values = ray.get(futures)
    else:
        log(f"stand-alone training: {len(jobs)} runs ...")
        values = []
        for i, (s, a) in enumerate(jobs):
            values.append(_train_one(*refs, train, s, a.as_dict(), objective.metric))
            if (i + 1) % max(1, len(jobs) // 10) == 0:
                done_s = time.perf_counter() - t0
                log(f"  {i + 1}/{len(jobs)} trained, {done_s:.0f} s, eta "
                    f"{done_s / (i + 1) * (len(jobs) - i - 1):.0f} s")
    standalone = (sign * np.array([v[0] for v in values], dtype=float)).reshape(
        len(arch_list), seeds)
    if evaluator is None:  # the costs of the stand-alone models (the same for every seed)
        flops = [values[i * seeds][1] for i in range(len(arch_list))]
        params = [values[i * seeds][2] for i in range(len(arch_list))]
    return {"space": refs[1], "task": refs[2], "metric": objective.metric,
            "direction": objective.direction,
            "archs": [a.as_dict() for a in arch_list],
            "source": [sources[a.key] for a in arch_list],
            "ws": ws if evaluator is not None else None, "flops": flops, "params": params,
            "standalone": standalone.tolist(),
            "train": train, "supernet_config": str(supernet_config) if supernet_config else None,
            "search_config": str(search_config) if search_config else None,
            "checkpoint": str(ckpt) if ckpt else None,
            "standalone_s": time.perf_counter() - t0}


def summary_table(paths: list[Path]) -> str:
    """One markdown row per ``--json`` file: the fidelity table of RESULTS.md."""
    head = ("| run | task / space | n x seeds | WS tau | ceiling | WS / ceiling | FLOPs tau | "
            "params tau | top-5 | spread / noise |")
    lines = [head, "| " + " | ".join(["---"] * (head.count("|") - 1)) + " |"]

    def f(v: float, digits: int = 3) -> str:
        return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"

    for path in paths:
        doc = json.loads(Path(path).read_text())
        raw, st = doc["raw"], doc["stats"]
        task = raw.get("task", {}).get("name", "?")
        space = raw.get("space", {}).get("name", "?")
        top = ("n/a" if not np.isfinite(st["top_k_overlap"])
               else f"{int(st['top_k_overlap'])}/{int(st['top_k'])}")
        lines.append(
            f"| {Path(path).stem} | {task} / {space} | {int(st['n'])} x {int(st['seeds'])} | "
            f"{f(st['ws_tau'])} | {f(st['noise_ceiling_tau'])} | "
            f"{f(st['ws_tau_over_ceiling'], 2)} | {f(st['flops_tau'])} | "
            f"{f(st['params_tau'])} | {top} | "
            f"{st['spread']:.4f} / {st['seed_noise']:.4f} = {st['spread_over_noise']:.2f} |")
    return "\n".join(lines)


QUICKSTART_TRAIN: dict[str, Any] = {"epochs": 6, "batch_size": 64, "lr": 0.005,
                                    "optimizer": "adam"}


def standalone_settings(train_from: Path | None = None, **overrides: Any) -> dict[str, Any]:
    """The stand-alone training settings: a search config's ``evaluator.train`` (or the
    quickstart's), then the ``overrides`` that are not None; never latency, one thread."""
    if train_from is None:
        train = dict(QUICKSTART_TRAIN)
    else:
        from nastk.config.schema import SearchConfig, load_config

        cfg = load_config(train_from, SearchConfig)
        if cfg.evaluator.kind != "train":
            raise SystemExit(f"--train-from {train_from}: its evaluator is "
                             f"{cfg.evaluator.kind!r}; name a search config with "
                             f"`evaluator: {{kind: train, train: ...}}`")
        train = cfg.evaluator.train.model_dump(mode="json", exclude_none=True)
    train.update({k: v for k, v in overrides.items() if v is not None})
    train.update({"latency": False, "num_threads": 1})
    return train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", type=Path, default=ROOT / "examples" / "supernet_train.yaml",
                   help="the supernet's training config")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="default: the config's run_dir/supernet.pt")
    p.add_argument("--standalone-only", type=Path, default=None, metavar="SEARCH_CONFIG",
                   help="no supernet: sample the space of this search config and train its "
                   "task stand-alone only (spread, noise, ceiling, FLOPs/params baselines); "
                   "its `evaluator.train` settings are the default stand-alone settings")
    p.add_argument("--n", type=int, default=24, help="architectures sampled uniformly")
    p.add_argument("--seeds", type=int, default=2, help="stand-alone seeds per architecture")
    p.add_argument("--population", type=Path, default=None,
                   help="a search run whose best trials are added")
    p.add_argument("--top", type=int, default=8, help="trials taken from --population")
    p.add_argument("--train-from", type=Path, default=None,
                   help="a search config whose `evaluator.train` settings the stand-alone "
                   "runs use (default: the quickstart's: 6 epochs, Adam 5e-3, batch 64); the "
                   "flags below override single settings")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--optimizer", default=None)
    p.add_argument("--calib-batches", type=int, default=None,
                   help="training batches for BN recalibration before each weight-sharing "
                   "score (default: the supernet config's bn_calib_batches)")
    p.add_argument("--k", type=int, default=5, help="top-k overlap")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--ray", action="store_true", help="train stand-alone runs on a local Ray")
    p.add_argument("--ray-cpus", type=int, default=2)
    p.add_argument("--reuse", type=Path, default=None,
                   help="the --json of an earlier run with the same architectures, task and "
                   "stand-alone settings: reuse its stand-alone scores (to compare supernets "
                   "against one ground truth)")
    p.add_argument("--json", type=Path, default=None, help="write raw numbers and statistics")
    p.add_argument("--summarize", type=Path, nargs="+", default=None, metavar="JSON",
                   help="print the markdown table of earlier --json files and exit")
    args = p.parse_args(argv)
    if args.summarize:
        print(summary_table(args.summarize))
        return 0
    if args.seeds < 2:
        p.error("--seeds must be at least 2 (the noise ceiling needs two)")
    train_from = args.train_from
    if train_from is None and args.standalone_only is not None:
        from nastk.config.schema import SearchConfig, load_config

        if load_config(args.standalone_only, SearchConfig).evaluator.kind == "train":
            train_from = args.standalone_only
    train = standalone_settings(train_from, epochs=args.epochs,
                                batch_size=args.batch_size, lr=args.lr,
                                optimizer=args.optimizer)
    t0 = time.perf_counter()
    supernet = None if args.standalone_only is not None else args.supernet
    raw = measure(supernet, args.checkpoint, args.n, args.seeds, train,
                  sample_seed=args.sample_seed, population=args.population, top=args.top,
                  use_ray=args.ray, ray_cpus=args.ray_cpus, calib_batches=args.calib_batches,
                  reuse=json.loads(args.reuse.read_text())["raw"] if args.reuse else None,
                  search_config=args.standalone_only,
                  log=lambda m: print(m, file=sys.stderr, flush=True))
    stats = fidelity_stats(None if raw["ws"] is None else np.array(raw["ws"]),
                           np.array(raw["standalone"]),
                           np.array(raw["flops"]), np.array(raw["params"]), k=args.k)
    what = (f"supernet fidelity: {raw['supernet_config']}" if supernet is not None else
            f"stand-alone spread and noise: {raw['search_config']}")
    print(f"{what} ({raw['metric']}, {raw['direction']}; stand-alone: {json.dumps(train)})")
    print(format_stats(stats))
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"raw": raw, "stats": stats}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
