"""Overhead of training through the OFA-MobileNetV3 supernet versus the extracted subnet.

For ``--archs`` sampled architectures (seeded) this times, in one process and interleaved,
one forward + backward pass of

(a) the supernet with the architecture active (``SupernetModel`` with the classification head,
    train mode), and
(b) the extracted plain subnet (``SupernetModel.extract``, same head, train mode),

on the same input batch, after warm-up, and reports the median over ``--repeats`` per
architecture and the median ratio (a)/(b) over architectures (target: <= 1.10). It also
prints the space's size and the smallest / largest bodies' params and FLOPs.

Run: ``python benchmarks/supernet_overhead.py [--archs 20 --batch 32 --size 32 --repeats 7
--threads 1]``; ``--profile`` adds a torch-profiler table of the supernet's top operators for
the first architecture.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nastk.nn.supernet import SupernetModel
from nastk.search_spaces.ofa_mbv3 import OFA_MBV3_OPTIONS, OFAMobileNetV3Space
from nastk.tasks.classification import ClassificationTask


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds of one forward + backward (gradients reset to None first, not timed)."""
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20, help="sampled architectures")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=32, help="image side (1 channel)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per arch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes per arch")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true",
                        help="profile the supernet's step for the first architecture")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"input 1x{args.size}x{args.size}, repeats {args.repeats}, warmup {args.warmup}")

    space = OFAMobileNetV3Space()
    for label, sp, shape in (("default options", space, (3, 32, 32)),
                             ("default options", space, (1, args.size, args.size)),
                             ("OFA-like options", OFAMobileNetV3Space(**OFA_MBV3_OPTIONS),
                              (3, 224, 224))):
        summ = sp.summary(shape)
        print(f"{label}, {'x'.join(map(str, shape))}: space size {summ['size']:,}; bodies "
              f"(no head): smallest {summ['smallest']['params']:,} params / "
              f"{summ['smallest']['flops'] / 1e6:.2f} MFLOPs, largest "
              f"{summ['largest']['params']:,} params / {summ['largest']['flops'] / 1e6:.2f} "
              "MFLOPs (fvcore, 1 multiply-add = 1 flop)")

    task = ClassificationTask(dataset="synthetic", image_size=args.size, n_samples=200)
    model = SupernetModel(space, task).train()
    rng = np.random.default_rng(args.seed)
    archs = [space.largest(), space.smallest()] + [space.sample(rng)
                                                   for _ in range(args.archs - 2)]
    x = torch.randn(args.batch, *task.input_shape)
    y = torch.randint(0, task.num_classes, (args.batch,))

    print(f"\n{'#':>3} {'depth':<16} {'expand':<16} {'kernel':<16} {'super ms':>9} "
          f"{'plain ms':>9} {'ratio':>6}")
    ratios = []
    for i, arch in enumerate(archs):
        model.set_active(arch)
        sub = model.extract(arch).train()
        for _ in range(args.warmup):
            step_time(model, x, y)
            step_time(sub, x, y)
        ta, tb = [], []
        for _ in range(args.repeats):  # interleaved: drifts hit both alike
            ta.append(step_time(model, x, y))
            tb.append(step_time(sub, x, y))
        a, b = statistics.median(ta), statistics.median(tb)
        ratios.append(a / b)
        print(f"{i:>3} {arch['depth']!s:<16} {arch['expand']!s:<16} {arch['kernel']!s:<16} "
              f"{a * 1e3:>9.2f} {b * 1e3:>9.2f} {a / b:>6.3f}")
        if args.profile and i == 0:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    step_time(model, x, y)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    step_time(sub, x, y)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    med = statistics.median(ratios)
    print(f"\nmedian ratio supernet / extracted over {len(archs)} archs: {med:.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}; target <= 1.10: "
          f"{'met' if med <= 1.10 else 'NOT met'})")


if __name__ == "__main__":
    main()
