"""Does Self-KD help the SalNAS supernet? The supernet of examples/saliency_supernet.yaml trained
with and without Self-KD at the same budget and seeds; every metric of its largest and smallest
subnets on the held-out synthetic test split (batch norm recalibrated on training batches),
mean ± sample std over the seeds.

    python benchmarks/saliency_self_kd.py [--seeds 0 1 2] [--epochs 8] [--markdown]
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    config = load_config(ROOT / "examples" / "saliency_supernet.yaml", SupernetConfig)
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


if __name__ == "__main__":
    main()
