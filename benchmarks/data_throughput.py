"""Images per second of the real-format loaders with 0, 1 and 2 worker processes, in one run.

Three generated folders of full-size images in the exact layouts
(:mod:`nastk.data.sample_folders`): Cityscapes (64 by default: 8 batches, so that 2 workers
are not capped by the pass's last odd batch; 2048x1024 PNG with label-id PNGs, read at
512x1024), SALICON (640x480 JPEG, density PNGs and the 2015 fixation JSON, read at 288x384)
and COCO (640x480 JPEG with boxes, read at 512x512). Each measurement builds the task with
``data: {workers: N}`` and times one shuffled pass over its train split (augmented by the
task's preset for the data set, as a run trains) through the engine's loader
(:func:`nastk.data.loaders.make_loader`, batches of 8), worker start-up included, with the
torch threads a run gives its training process beside that loader (``num_threads: auto``:
the CPUs less one per loader worker, at least 1). The
worker counts are interleaved in each repeat (their order rotating), and the batches of every
worker count are checked equal to those of 0 workers. Prints the median images per second
over ``--repeats`` (sample std) and the ratio to 0 workers. Target on 2 cores: 2 workers at
least 1.7x 0 workers.

    python benchmarks/data_throughput.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nastk.config.compose import build_task
from nastk.config.schema import PluginRef
from nastk.data import sample_folders
from nastk.data.loaders import loader_workers, make_loader, split_batch
from nastk.data.loading import Loading
from nastk.training.threads import torch_threads

#: layout -> (writer, image size written (H, W), task, dataset option, size read)
LAYOUTS: dict[str, tuple[Any, tuple[int, int], str, str, Any]] = {
    "cityscapes": (sample_folders.write_cityscapes, (1024, 2048), "segmentation",
                   "cityscapes", [512, 1024]),
    "salicon": (sample_folders.write_salicon, (480, 640), "saliency", "salicon", [288, 384]),
    "coco": (sample_folders.write_coco, (480, 640), "detection", "coco", 512),
}
BATCH = 8


def one_pass(layout: str, root: Path, workers: int) -> tuple[float, int, float]:
    """``(seconds, images, checksum)`` of one shuffled pass over the train split."""
    _, _, task_name, dataset, size = LAYOUTS[layout]
    task = build_task(PluginRef(name=task_name, options={"dataset": dataset,
                                                         "root": str(root), "size": size}),
                      loading=Loading(workers=workers))
    train = task.splits()["train"]
    # the training process's torch threads as a run with this loader gets them
    # (``num_threads: auto`` leaves a CPU to each loader worker)
    with torch_threads("auto", loader_workers=loader_workers(task, train)):
        t0 = time.perf_counter()
        images, checksum = 0, 0.0
        loader = make_loader(task, train, BATCH, shuffle=True,
                             generator=torch.Generator().manual_seed(0))
        for batch in loader:
            x, _ = split_batch(batch)
            images += int(x.shape[0])
            checksum += float(x[:, :, ::7, ::7].double().sum())
        return time.perf_counter() - t0, images, checksum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, nargs=3, default=[64, 256, 256],
                        metavar=("CITYSCAPES", "SALICON", "COCO"),
                        help="train images per folder (a quarter as many val ones)")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; CPUs: {os.cpu_count()}")
    with tempfile.TemporaryDirectory(prefix="nastk-throughput-") as tmp:
        roots = {}
        for layout, n in zip(LAYOUTS, args.images, strict=True):
            if layout not in args.layouts:
                continue
            writer, full, *_ = LAYOUTS[layout]
            t0 = time.perf_counter()
            roots[layout] = writer(Path(tmp) / layout, n, size=full)
            print(f"wrote {layout}: {n} train images of {full[1]}x{full[0]} "
                  f"({time.perf_counter() - t0:.1f} s)")
        rates: dict[tuple[str, int], list[float]] = {}
        sums: dict[tuple[str, int], float] = {}
        for rep in range(args.repeats):
            shift = rep % len(args.workers)
            order = args.workers[shift:] + args.workers[:shift]
            for layout, root in roots.items():
                for w in order:
                    seconds, images, checksum = one_pass(layout, root, w)
                    rates.setdefault((layout, w), []).append(images / seconds)
                    sums[(layout, w)] = checksum
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    print("| layout | workers | images/s (median) | sample std | vs 0 workers |")
    print("|---|---:|---:|---:|---:|")
    for layout in roots:
        base = statistics.median(rates[(layout, args.workers[0])])
        for w in args.workers:
            r = rates[(layout, w)]
            std = statistics.stdev(r) if len(r) > 1 else float("nan")
            print(f"| {layout} | {w} | {statistics.median(r):.2f} | {std:.2f} | "
                  f"{statistics.median(r) / base:.2f}x |")
            if abs(sums[(layout, w)] - sums[(layout, args.workers[0])]) > 1e-6 * abs(
                    sums[(layout, args.workers[0])]):
                raise SystemExit(f"{layout}: the batches with {w} workers differ from those "
                                 f"with {args.workers[0]}")
    if 0 in args.workers and 2 in args.workers:
        for layout in roots:
            ratio = (statistics.median(rates[(layout, 2)])
                     / statistics.median(rates[(layout, 0)]))
            verdict = "met" if ratio >= 1.7 else f"missed by {1.7 - ratio:.2f}"
            print(f"{layout}: 2 workers / 0 workers = {ratio:.2f}x (target 1.7x: {verdict})")


if __name__ == "__main__":
    main()
