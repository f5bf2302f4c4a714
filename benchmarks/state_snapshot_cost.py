"""What keeping the strategy's state costs a search, per strategy, on NAS-Bench-201.

The search loop saves the strategy's state with every new trial and every tell, so that a run
resumes exactly. Two tables:

1. One save, after ``--queries`` distinct queries: ``strategy.state_dict()`` itself, and the
   copies a store can keep of it: the in-memory store's ``StateSnapshot`` (take, and take +
   restore), the SQLite store's ``torch.save`` + weights-only ``torch.load``, and
   ``copy.deepcopy`` for comparison (microseconds; the median of ``--repeats`` timings).
2. Whole searches of ``--queries`` distinct queries through the engine's loop over a
   ``MemoryStorage`` that keeps the state and over one that keeps none (what ``run_tabular``
   uses): process CPU seconds per search and the ``state_dict()`` calls made; the two must
   propose the same architectures (checked).

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


class Counting:
    """A strategy whose ``state_dict()`` calls are counted."""

    def __init__(self, strategy: Any) -> None:
        self.strategy, self.space, self.calls = strategy, strategy.space, 0

    def ask(self, n: int = 1) -> Any:
        return self.strategy.ask(n)

    def tell(self, arch: Any, result: Any) -> None:
        self.strategy.tell(arch, result)

    def state_dict(self) -> dict[str, Any]:
        self.calls += 1
        return self.strategy.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_state_dict(state)


def search(name: str, seed: int, queries: int, keep: bool) -> tuple[float, int, list[str]]:
    """(CPU seconds, state_dict calls, keys evaluated) of one search."""
    from nastk.core import registry
    from nastk.core.objective import Objective
    from nastk.run.loop import Budget, Search
    from nastk.run.memory_store import MemoryStorage
    from nastk.search_spaces.nb201 import NB201Evaluator

    evaluator = NB201Evaluator("cifar10")
    objective = Objective(metric=evaluator.SEARCH_METRIC)
    registered, options = STRATEGIES[name]
    strategy = Counting(registry.instantiate(registry.STRATEGIES, registered, options,
                                             evaluator.bench.space, objective, seed=seed))
    loop = Search(evaluator.bench.space, strategy, evaluator, objective,  # type: ignore[arg-type]
                  MemoryStorage(keep_strategy_state=keep), Budget(trials=queries))
    c = time.process_time()
    trials = loop.run()
    return time.process_time() - c, strategy.calls, [t.arch.key for t in trials]


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

    print(f"\n## Whole searches of {args.queries} queries ({args.seeds} seeds, CPU s per "
          "search)")
    print("| strategy | state kept: CPU s | state_dict() calls | no state: CPU s | "
          "state_dict() calls | saved | same trials |")
    print("|---|---|---|---|---|---|---|")
    for name in args.strategies:
        kept, dropped, calls_kept, calls_dropped, same = [], [], [], [], True
        for seed in range(args.seeds):
            t_on, n_on, keys_on = search(name, seed, args.queries, keep=True)
            t_off, n_off, keys_off = search(name, seed, args.queries, keep=False)
            kept.append(t_on)
            dropped.append(t_off)
            calls_kept.append(n_on)
            calls_dropped.append(n_off)
            same &= keys_on == keys_off
        on, off = statistics.mean(kept), statistics.mean(dropped)
        print(f"| {name} | {on:.3f} | {statistics.mean(calls_kept):.0f} | {off:.3f} | "
              f"{statistics.mean(calls_dropped):.0f} | {100 * (on - off) / on:.0f}% | "
              f"{'yes' if same else 'NO'} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
