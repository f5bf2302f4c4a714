"""Threads under contention: the quickstart's first trial alone and beside CPU-bound neighbour
processes, with the default thread setting against ``num_threads: 2``, in one run.

Each measurement is a fresh Python process (as a user's ``nastk search`` would be) that builds
the quickstart's evaluator from ``examples/quickstart.yaml``, asks the strategy for its first
candidate (seed 0) and times its evaluation. Settings:

- ``default``: the config as shipped (``num_threads: auto``, waiting threads sleep);
- ``threads=1``: ``num_threads: 1`` (the train evaluator's default before ``auto``);
- ``threads=2``: ``num_threads: 2`` (what the examples set before);
- ``threads=2, spinning``: ``num_threads: 2`` with ``OMP_WAIT_POLICY=ACTIVE``, the OpenMP
  behaviour torch had before nastk set the wait policy.

Conditions: ``idle`` (nothing of ours beside it; the machine's own load is printed) and
``busy`` (``--neighbours`` processes that spin a CPU each). Target: the default's busy time
within 1.5x its idle time. Prints the median of ``--repeats`` measurements per cell, the
sample std, and the ratios.

    python benchmarks/contention.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRIAL = r"""
import json, sys, time
import nastk  # first: sets OpenMP's wait policy before torch loads
import torch
from nastk.config.schema import load_config, parse_config
from nastk.pipelines.search import search_setup

config = load_config(sys.argv[1])
threads = json.loads(sys.argv[2])
epochs = int(sys.argv[3])
data = config.model_dump()
train = data["evaluator"]["train"]
if threads is not None:
    train["num_threads"] = threads
if epochs > 0:
    train["epochs"] = epochs
setup = search_setup(parse_config(data, sys.argv[1]))
arch = setup.strategy.ask(1)[0]
t0 = time.perf_counter()
result = setup.evaluator.evaluate(arch)
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "ok": result.ok, "error": result.error,
                  "threads": (result.info.get("latency") or {}).get("threads"),
                  "latency_ms": result.costs.get("latency_ms"),
                  "latency_busy": (result.info.get("latency") or {}).get("busy")}))
"""

SETTINGS = {
    "default": (None, {}),
    "threads=1": (1, {}),
    "threads=2": (2, {}),
    "threads=2, spinning": (2, {"OMP_WAIT_POLICY": "ACTIVE"}),
}


def one_trial(config: Path, threads: int | None, env_extra: dict[str, str],
              epochs: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", TRIAL, str(config), json.dumps(threads),
                          str(epochs)], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the trial process failed:\n{out.stderr[-2000:]}")
    row = json.loads(out.stdout.strip().splitlines()[-1])
    if not row["ok"]:
        raise RuntimeError(f"the trial failed: {row['error']}")
    return row


def start_neighbours(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "quickstart.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--neighbours", type=int, default=1,
                        help="CPU-bound processes beside the trial in the busy condition")
    parser.add_argument("--epochs", type=int, default=0,
                        help="train the trial this many epochs (0: the config's)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args(argv)
    from nastk.core.cpus import available_cpus

    print("command: python benchmarks/contention.py " + " ".join(argv or sys.argv[1:]))
    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}; CPUs this process may use: "
          f"{available_cpus()}; load average before: {os.getloadavg()[0]:.2f}")
    times: dict[tuple[str, str], list[float]] = {}
    latency: dict[tuple[str, str], list[float]] = {}
    threads_seen: dict[str, set] = {}
    # interleave conditions and settings so a change in the machine's own load hits all cells
    for rep in range(args.repeats):
        for condition in ("idle", "busy"):
            neighbours = start_neighbours(args.neighbours) if condition == "busy" else []
            try:
                for name in args.settings:
                    threads, env = SETTINGS[name]
                    row = one_trial(args.config, threads, env, args.epochs)
                    times.setdefault((name, condition), []).append(row["seconds"])
                    if row["latency_ms"] is not None:
                        latency.setdefault((name, condition), []).append(row["latency_ms"])
                    threads_seen.setdefault(name, set()).add(row["threads"])
                    flag = ", flagged busy" if row["latency_busy"] else ""
                    print(f"  repeat {rep + 1}/{args.repeats} {condition:4s} {name:20s} "
                          f"{row['seconds']:7.2f} s  (threads {row['threads']}, latency "
                          f"{row['latency_ms']:.2f} ms{flag})", flush=True)
            finally:
                stop(neighbours)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}; neighbours in the busy condition: "
          f"{args.neighbours}; {args.repeats} repeats, median (sample std)")
    print("| setting | torch threads | idle s | busy s | busy / idle | busy / default idle |")
    print("|---|---:|---:|---:|---:|---:|")
    ref = statistics.median(times[(args.settings[0], "idle")])
    for name in args.settings:
        idle, busy = times[(name, "idle")], times[(name, "busy")]

        def cell(xs: list[float]) -> str:
            sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
            return f"{statistics.median(xs):.2f} ({sd:.2f})"

        print(f"| {name} | {','.join(str(t) for t in sorted(threads_seen[name], key=str))} | "
              f"{cell(idle)} | {cell(busy)} | "
              f"{statistics.median(busy) / statistics.median(idle):.2f} | "
              f"{statistics.median(busy) / ref:.2f} |")
    if "default" in args.settings:
        ratio = statistics.median(times[("default", "busy")]) / statistics.median(
            times[("default", "idle")])
        verdict = "met" if ratio <= 1.5 else f"missed by {ratio - 1.5:.2f}"
        print(f"\ntarget: the default within 1.5x of its idle time under contention: "
              f"{ratio:.2f}x ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
