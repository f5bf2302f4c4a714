"""What keeping the strategy's state costs a search, per strategy, on NAS-Bench-201.

The search loop saves the strategy's state with every new trial and every tell, so that a run
resumes exactly. Two tables:

1. One save, after ``--queries`` distinct queries: ``strategy.state_dict()`` itself, and the
   copies a store can keep of it: the in-memory store's ``StateSnapshot`` (take, and take +
   restore), the SQLite store's ``torch.save`` + weights-only ``torch.load``, and
   ``copy.deepcopy`` for comparison (microseconds; the median of ``--repeats`` timings).
2. Whole searches of ``--queries`` distinct queries through the engine's loop over a
   ``MemoryStorage`` that keeps the state and over one that keeps none (what ``run_tabular``
   uses): process CPU seconds per search, the ``state_dict()`` calls made, the CPU seconds
   spent in them and in the store's snapshots (timed where they run, so the share does not
   drown in the noise of a busy machine), and whether both searches evaluated the same
   architectures.

    python benchmarks/state_snapshot_cost.py
    python benchmarks/state_snapshot_cost.py --strategies bo reinforce --seeds 3

Strategies and options as in ``search_efficiency.py``. One thread. Needs the NB201 tables in
../shared/data (or $NASTK_NB201_DIR).
"""

from __future__ import annotations

import argparse
import copy
import io
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from search_efficiency import STRATEGIES  # this folder is on the path when run as a script

DEFAULT_STRATEGIES = ["bo", "predictor_guided", "rea", "reinforce", "random"]


def micros(fn: Callable[[], Any], repeats: int) -> float:
    """The median process CPU time of ``fn()`` in microseconds."""
    times = []
    for _ in range(repeats):
        c = time.process_time()
        fn()
        times.append(time.process_time() - c)
    return statistics.median(times) * 1e6


def torch_round_trip(state: dict[str, Any]) -> dict[str, Any]:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return torch.load(io.BytesIO(buf.getvalue()), weights_only=True)


class StateTimed:
    """A strategy whose ``state_dict()`` calls are counted and timed (process CPU seconds)."""

    def __init__(self, strategy: Any) -> None:
        self.strategy, self.space, self.calls, self.cpu = strategy, strategy.space, 0, 0.0

    def ask(self, n: int = 1) -> Any:
        return self.strategy.ask(n)

    def tell(self, arch: Any, result: Any) -> None:
        self.strategy.tell(arch, result)

    def state_dict(self) -> dict[str, Any]:
        c = time.process_time()
        try:
            return self.strategy.state_dict()
        finally:
            self.calls += 1
            self.cpu += time.process_time() - c

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state)


def search(name: str, seed: int, queries: int, keep: bool) -> dict[str, Any]:
    """One search through the engine's loop: its CPU seconds, the ``state_dict()`` calls and
    their CPU seconds, the CPU seconds of the store's snapshots, and the keys evaluated."""
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.loop import Budget, Search
    from nastk.run.memory_store import MemoryStorage
    from nastk.run.state_snapshot import StateSnapshot
    from nastk.search_spaces.nb201 import NB201Evaluator

    class TimedSnapshots(MemoryStorage):
        """Times the snapshots it takes."""

        cpu = 0.0

        def _snapshot(self, state: dict[str, Any] | None) -> StateSnapshot | None:
            c = time.process_time()
            try:
                return super()._snapshot(state)
            finally:
                self.cpu += time.process_time() - c

    evaluator = NB201Evaluator("cifar10")
    objective = Objective(metric=evaluator.SEARCH_METRIC)
    registered, options = STRATEGIES[name]
    strategy = StateTimed(registry.instantiate(registry.STRATEGIES, registered, options,
                                               evaluator.bench.space, objective, seed=seed))
    store = TimedSnapshots(keep_strategy_state=keep)
    loop = Search(evaluator.bench.space, strategy, evaluator, objective,  # type: ignore[arg-type]
                  store, Budget(trials=queries))
    c = time.process_time()
    trials = loop.run()
    return {"cpu": time.process_time() - c, "calls": strategy.calls,
            "state_dict": strategy.cpu, "snapshots": store.cpu,
            "keys": [t.arch.key for t in trials]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategies", nargs="+", default=DEFAULT_STRATEGIES,
                        choices=list(STRATEGIES))
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)

    import torch

    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.state_snapshot import StateSnapshot
    from nastk.search_spaces.nb201 import NB201Evaluator, nb201_data_missing

    if (missing := nb201_data_missing()) is not None:
        print(missing, file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    print("command: python benchmarks/state_snapshot_cost.py " + " ".join(argv or sys.argv[1:]))
    evaluator = NB201Evaluator("cifar10")
    objective = Objective(metric=evaluator.SEARCH_METRIC)

    print(f"\n## One save after {args.queries} queries (us, median of {args.repeats})")
    print("| strategy | state_dict() | StateSnapshot.take | take + restore | "
          "torch.save + load | deepcopy |")
    print("|---|---|---|---|---|---|")
    for name in args.strategies:
        registered, options = STRATEGIES[name]
        strategy = registry.instantiate(registry.STRATEGIES, registered, options,
                                        evaluator.bench.space, objective, seed=0)
        seen: dict[str, Any] = {}
        while len(seen) < args.queries:
            arch = evaluator.bench.space.validate(strategy.ask(1)[0])
            if arch.key not in seen:
                seen[arch.key] = evaluator.evaluate(arch)
            strategy.tell(arch, seen[arch.key])
        state = strategy.state_dict()
        cells = [micros(strategy.state_dict, args.repeats),
                 micros(lambda s=state: StateSnapshot.take(s), args.repeats),
                 micros(lambda s=state: StateSnapshot.take(s).restore(), args.repeats),
                 micros(lambda s=state: torch_round_trip(s), args.repeats),
                 micros(lambda s=state: copy.deepcopy(s), args.repeats)]
        print(f"| {name} | " + " | ".join(f"{c:.0f}" for c in cells) + " |", flush=True)

    print(f"\n## Whole searches of {args.queries} queries (CPU s per search, mean of "
          f"{args.seeds} seeds)")
    print("| strategy | state kept: search | state_dict() calls | their CPU | snapshots' CPU | "
          "state's share | no state: search | state_dict() calls | same trials |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.strategies:
        on = [search(name, seed, args.queries, keep=True) for seed in range(args.seeds)]
        off = [search(name, seed, args.queries, keep=False) for seed in range(args.seeds)]

        def mean(runs: list[dict[str, Any]], key: str) -> float:
            return statistics.mean(r[key] for r in runs)

        share = (mean(on, "state_dict") + mean(on, "snapshots")) / mean(on, "cpu")
        same = all(a["keys"] == b["keys"] for a, b in zip(on, off, strict=True))
        print(f"| {name} | {mean(on, 'cpu'):.3f} | {mean(on, 'calls'):.0f} | "
              f"{mean(on, 'state_dict'):.3f} | {mean(on, 'snapshots'):.3f} | {100 * share:.1f}% "
              f"| {mean(off, 'cpu'):.3f} | {mean(off, 'calls'):.0f} | "
              f"{'yes' if same else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
