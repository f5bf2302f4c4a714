"""Does Self-KD help the SalNAS supernet? The supernet of examples/saliency_supernet.yaml trained
with and without Self-KD at the same budget and seeds; every metric of its largest and smallest
subnets on the held-out synthetic test split (batch norm recalibrated on training batches),
mean ± sample std over the seeds, and a paired t-test over the seeds of the per-seed
difference (Self-KD minus no KD). ``--teacher-mode train --score composite`` runs Self-KD with
SalNAS's own teacher settings (batch-statistics teacher, improvement judged by the composite
score); the defaults keep the example's settings.

    python benchmarks/saliency_self_kd.py [--seeds 0 1 2] [--epochs 8] [--markdown]
        [--teacher-mode eval|train] [--score objective|composite]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from nastk.config.compose import build_supernet_model
from nastk.config.schema import SupernetConfig, load_config
from nastk.evaluation.weight_sharing import WeightSharingConfig, WeightSharingEvaluator
from nastk.training.supernet import SupernetTrainer

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("cc", "kld", "sim", "nss", "auc_judd", "auc_borji", "sauc", "ig")


def paired_t(a: list[float], b: list[float]) -> tuple[float, float, float, float]:
    """Paired t-test of ``b - a`` over seeds: (mean difference, sample std, t, two-sided p)."""
    d = [y - x for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(d)
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    if len(d) < 2:
        return mean, sd, math.nan, math.nan
    if sd == 0.0:
        return mean, sd, (math.inf if mean else math.nan), (0.0 if mean else 1.0)
    t = mean / (sd / math.sqrt(len(d)))
    try:
        from scipy import stats
        p = float(stats.t.sf(abs(t), len(d) - 1) * 2)
    except ImportError:  # pragma: no cover - scipy is optional
        p = _t_two_sided_p(t, len(d) - 1)
    return mean, sd, t, p


def _t_two_sided_p(t: float, dof: int, steps: int = 20000) -> float:
    """Two-sided p of Student's t by numerical integration of the density (no scipy)."""
    c = math.gamma((dof + 1) / 2) / (math.sqrt(dof * math.pi) * math.gamma(dof / 2))
    x = abs(t)
    # integrate the density over [0, x] with Simpson's rule; p = 1 - 2 * integral
    h = x / steps
    total = 0.0
    for i in range(steps + 1):
        u = i * h
        w = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += w * c * (1 + u * u / dof) ** (-(dof + 1) / 2)
    return max(0.0, 1.0 - 2.0 * total * h / 3.0)


def run(config: SupernetConfig, seed: int, self_kd: bool, epochs: int) -> dict[str, dict]:
    training = config.training.model_copy(update={
        "epochs": epochs, "self_kd": config.training.self_kd if self_kd else None})
    cfg = config.model_copy(update={"seed": seed, "training": training})
    torch.manual_seed(seed)
    model = build_supernet_model(cfg)
    SupernetTrainer(model, cfg.training, seed=seed).train()
    ws = WeightSharingEvaluator(model, WeightSharingConfig(
        checkpoint=Path("unused.pt"), calib_batches=cfg.training.bn_calib_batches,
        calib_batch_size=cfg.training.batch_size, eval_split="test",
        num_threads=cfg.training.num_threads), seed=seed)
    out = {}
    for kind, arch in (("largest", model.space.largest()), ("smallest", model.space.smallest())):
        result = ws.evaluate(arch)
        assert result.ok, result.error
        out[kind] = result.metrics
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: the example's epochs")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--teacher-mode", choices=["eval", "train"], default=None,
                        help="Self-KD teacher mode (default: the example's); SalNAS: train")
    parser.add_argument("--score", choices=["objective", "composite"], default=None,
                        help="what judges an improving epoch (default: the example's); "
                             "SalNAS: composite")
    args = parser.parse_args()
    config = load_config(ROOT / "examples" / "saliency_supernet.yaml", SupernetConfig)
    update = {k: v for k, v in (("teacher_mode", args.teacher_mode), ("score", args.score))
              if v is not None}
    if update:
        self_kd = config.training.self_kd.model_copy(update=update)
        config = config.model_copy(update={
            "training": config.training.model_copy(update={"self_kd": self_kd})})
    print(f"self_kd: {config.training.self_kd.model_dump()}", flush=True)
    epochs = args.epochs or config.training.total_epochs
    results: dict[tuple[str, str], list[dict]] = {}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for self_kd in (False, True):
            res = run(config, seed, self_kd, epochs)
            for kind, metrics in res.items():
                results.setdefault(("Self-KD" if self_kd else "no KD", kind), []).append(metrics)
            print(f"seed {seed} {'self-kd' if self_kd else 'plain'}: "
                  + ", ".join(f"{k} cc {m['cc']:.4f}" for k, m in res.items()), flush=True)
    header = ["training", "subnet", *METRICS]
    rows = []
    for (mode, kind), runs in results.items():
        cells = []
        for m in METRICS:
            values = [r[m] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.4f} ± {sd:.4f}")
        rows.append([mode, kind, *cells])
    print(f"\n{len(args.seeds)} seeds {args.seeds}, {epochs} epochs, "
          f"{time.perf_counter() - t0:.0f} s; mean ± sample std")
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + " --- |" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
    else:
        for row in rows:
            print("  ".join(row))
    print("\npaired differences Self-KD minus no KD, per seed "
          f"{args.seeds}; mean ± sample std, t (dof {len(args.seeds) - 1}), two-sided p")
    theader = ["subnet", "metric", "per-seed differences", "mean ± std", "t", "p"]
    if args.markdown:
        print("| " + " | ".join(theader) + " |")
        print("|" + " --- |" * len(theader))
    for kind in ("largest", "smallest"):
        plain = results[("no KD", kind)]
        kd = results[("Self-KD", kind)]
        for m in METRICS:
            a, b = [r[m] for r in plain], [r[m] for r in kd]
            mean, sd, t, p = paired_t(a, b)
            diffs = ", ".join(f"{y - x:+.4f}" for x, y in zip(a, b, strict=True))
            cells = [kind, m, diffs, f"{mean:+.4f} ± {sd:.4f}", f"{t:.2f}", f"{p:.3f}"]
            print(("| " + " | ".join(cells) + " |") if args.markdown else "  ".join(cells))


if __name__ == "__main__":
    main()
