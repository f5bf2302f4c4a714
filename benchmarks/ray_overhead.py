"""Per-candidate overhead of the ray executor, and the speed-up of 2 workers over 1.

In one process, against one local Ray (``--cpus``, default: this machine's CPUs), it runs
random search over ``small_cnn`` with a function evaluator and times ``Search.run``:

(a) in-process (``executor: local``) with a trivial candidate (a hash of the architecture):
    the cost of one candidate through the search loop and the store, per candidate;
(b) Ray Tune trials (``mode: tune``, one trial at a time) with the same trivial candidate;
(c) the actor pool (``mode: actors``, one actor) with the same trivial candidate, in batches of
    1 and of ``--batch``;
(d) a CPU-bound candidate (a pure-Python loop calibrated to ``--work-s`` seconds, single
    threaded) in-process and on the actor pool with 1 and with 2 actors (interleaved runs).

The per-candidate figure is the time from the first to the last result the store recorded,
divided by the candidates after the first, so starting Tune or the actors is left out (the time
to the first result is printed separately). Overheads (b), (c) are that figure minus the
in-process one (a); the speed-up (d) is the ratio of the 1-actor figure to the 2-actor one.

Run: ``python benchmarks/ray_overhead.py [--cpus 2 --work-s 0.5 --batch 8]``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from nastk import Architecture  # noqa: E402


def trivial(arch: Architecture) -> dict[str, float]:
    """A candidate that costs nothing: a score from the architecture's key."""
    digest = hashlib.sha256(arch.key.encode()).digest()
    return {"score": int.from_bytes(digest[:4], "little") / 2**32}


def cpu_bound(arch: Architecture) -> dict[str, float]:
    """A single-threaded, CPU-bound candidate: ``NASTK_BENCH_LOOPS`` iterations of pure
    Python (calibrated by the driver to ``--work-s`` seconds)."""
    n = int(os.environ["NASTK_BENCH_LOOPS"])
    acc = 0
    for i in range(n):
        acc = (acc + i * i) % 1_000_003
    return {"score": acc / 1_000_003 + trivial(arch)["score"]}


def calibrate(seconds: float) -> int:
    """Loop count for which :func:`cpu_bound` takes about ``seconds`` here."""
    n = 200_000
    arch = Architecture(x=0)
    while True:
        os.environ["NASTK_BENCH_LOOPS"] = str(n)
        t0 = time.perf_counter()
        cpu_bound(arch)
        dt = time.perf_counter() - t0
        if dt > 0.1:
            return max(int(n * seconds / dt), 1)
        n *= 4


def run_search(fn: str, trials: int, executor: dict[str, Any],
               workdir: Path) -> tuple[float, float]:
    """Run ``trials`` candidates of ``fn`` on ``executor``; returns ``(steady, startup)``:
    seconds per candidate between the first and the last recorded result (the store's finish
    times), and seconds from the start of ``Search.run`` to the first result (starting Tune or
    the actors, and the first candidate)."""
    from nastk.config.compose import build_components
    from nastk.config.factory import ConfigEvaluatorFactory
    from nastk.config.schema import parse_config
    from nastk.executors import ray_executor
    from nastk.executors.ray_cluster import RayCluster
    from nastk.run.layout import RunLayout
    from nastk.run.loop import Search
    from nastk.run.sqlite_store import RunStore

    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    config = parse_config({
        "name": "bench", "run_dir": str(run_dir), "seed": 0, "space": "small_cnn",
        "strategy": "random", "objective": {"metric": "score"},
        "evaluator": {"kind": "function", "function": f"ray_overhead:{fn}"},
        "budget": {"trials": trials}, "keep_checkpoints": 0, "executor": executor})
    comps = build_components(config)
    executor_obj = None
    if config.executor.kind == "ray":
        executor_obj = ray_executor(config.executor,
                                    ConfigEvaluatorFactory(config.model_dump(mode="json")),
                                    comps.objective, RayCluster.connect(None),
                                    RunLayout(run_dir).ray, kind="function", epochs=None)
    with RunStore.in_dir(run_dir) as store:
        search = Search(comps.space, comps.strategy, comps.evaluator, comps.objective, store,
                        config.budget, executor=executor_obj)
        t0 = time.time()
        search.run()
        done = sorted(t.finished for t in store.finished() if t.finished is not None)
    if len(done) != trials:
        raise RuntimeError(f"{trials} candidates asked, {len(done)} recorded")
    return (done[-1] - done[0]) / (trials - 1), done[0] - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1,
                        help="CPUs of the local Ray (default: this machine's)")
    parser.add_argument("--work-s", type=float, default=0.5,
                        help="seconds of one CPU-bound candidate (d)")
    parser.add_argument("--batch", type=int, default=8, help="larger actor batch for (c)")
    args = parser.parse_args(argv)

    import ray
    import torch

    torch.set_num_threads(1)
    loops = calibrate(args.work_s)
    # Ray workers keep the environment Ray starts with: set what they need first
    os.environ["NASTK_BENCH_LOOPS"] = str(loops)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in [str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH")] if p)
    sys.path.insert(0, str(HERE))
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR)
    print(f"$ python benchmarks/ray_overhead.py {shlex.join(argv or sys.argv[1:])}")
    print(f"local Ray: {args.cpus} CPUs; torch {torch.__version__}, ray {ray.__version__}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="nastk-bench-") as tmp:
        work = Path(tmp)
        local, _ = run_search("trivial", 500, {"kind": "local"}, work)
        rows.append(("(a) in-process, trivial candidate", f"{local * 1e3:.2f} ms",
                     "per candidate (search loop + store)"))
        tune_per, tune_start = run_search("trivial", 60, {"kind": "ray", "mode": "tune",
                                                          "max_concurrent": 1}, work)
        rows.append(("(b) Ray Tune trials, 1 at a time", f"{(tune_per - local) * 1e3:.1f} ms",
                     f"overhead per candidate ({tune_per * 1e3:.1f} ms each; "
                     f"{tune_start:.1f} s to the first result)"))
        for batch in (1, args.batch):
            pool_per, pool_start = run_search("trivial", 1000,
                                              {"kind": "ray", "mode": "actors", "actors": 1,
                                               "batch_size": batch}, work)
            rows.append((f"(c) actor pool, 1 actor, batches of {batch}",
                         f"{(pool_per - local) * 1e3:.2f} ms",
                         f"overhead per candidate ({pool_per * 1e3:.2f} ms each; "
                         f"{pool_start:.1f} s to the first result)"))
        here, _ = run_search("cpu_bound", 5, {"kind": "local"}, work)
        one, _ = run_search("cpu_bound", 13, {"kind": "ray", "mode": "actors", "actors": 1},
                            work)
        two, _ = run_search("cpu_bound", 13, {"kind": "ray", "mode": "actors", "actors": 2},
                            work)
        rows.append(("(d) CPU-bound candidate, in-process", f"{here:.3f} s", "per candidate"))
        rows.append(("(d) same, actor pool with 1 actor", f"{one:.3f} s", "per candidate"))
        rows.append(("(d) same, actor pool with 2 actors", f"{two:.3f} s", "per candidate"))
        rows.append(("(d) speed-up of 2 actors over 1", f"{one / two:.2f}x", ""))
    ray.shutdown()
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>10}  {note}")


if __name__ == "__main__":
    main()
