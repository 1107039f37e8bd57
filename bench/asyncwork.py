"""Async procedures and the remote executor, measured in one run (SPEC §14's figures).

    python -m bench.asyncwork [--rounds 5]

1. The sleep workload: 200 calls of a 10 ms sleep, with ``client.map``. Four thread actors
   (``time.sleep``) against one async actor with ``max_concurrency=100`` (``asyncio.sleep``),
   each against its ideal (calls / (concurrency) × 10 ms, ignoring all overhead).
2. ``RemoteExecutor.map`` against ``ProcessPoolExecutor.map`` on the same function, two
   processes each: two ``pirate-worker pirate_actors:FunctionActor`` processes (pool_size 1)
   and ``ProcessPoolExecutor(2)``, rounds alternating.

Workers run in processes of their own; the figures are medians over the rounds with their
min–max, and ratios are taken round by round.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import shutil
import statistics
import subprocess
import sys
import time
from bench.procs import free_endpoint

CALLS = 200
SLEEP = 0.01


def checksum(n: int) -> int:
    """A small CPU-bound task (about a millisecond)."""
    total = 0
    for i in range(n):
        total = (total * 31 + i) % 1_000_003
    return total


def _worker(spec: str, endpoint: str, *extra: str) -> subprocess.Popen[bytes]:
    script = shutil.which("pirate-worker") or os.path.join(os.path.dirname(sys.executable), "pirate-worker")
    return subprocess.Popen([script, spec, "--connect", endpoint, "-q", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def _ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def sleep_workload(rounds: int) -> list[str]:
    from pirate_actors import Client

    rates: dict[str, list[float]] = {"threads": [], "async": []}
    setups = {
        "threads": ("bench.asyncwork_procs:ThreadSleeper", ["--pool-size", "4"], 4),
        "async": ("bench.asyncwork_procs:AsyncSleeper", ["--pool-size", "1"], 100),
    }
    for name, (spec, extra, _) in setups.items():
        endpoint = free_endpoint()
        with Client(endpoint, timeout=30) as client:
            worker = _worker(spec, endpoint, *extra)
            try:
                client.wait_for_worker(timeout=30)
                list(client.map("nap", [SLEEP] * CALLS))  # warm-up
                for _ in range(rounds):
                    started = time.perf_counter()
                    list(client.map("nap", [SLEEP] * CALLS, timeout=60))
                    rates[name].append(CALLS / (time.perf_counter() - started))
            finally:
                worker.terminate()
                worker.wait(10)
    lines = ["| actors | calls/s (median, min–max) | ideal calls/s | ÷ ideal |", "| --- | --- | --- | --- |"]
    for name, (_, _, concurrency) in setups.items():
        ideal = concurrency / SLEEP
        label = "4 thread actors (time.sleep)" if name == "threads" else "1 async actor, max_concurrency=100"
        lines.append(f"| {label} | {_median(rates[name])} | {ideal:,.0f} | "
                     f"{_ratio([r / ideal for r in rates[name]])} |")
    return lines


def executor_workload(rounds: int, items: int = 400, size: int = 20_000) -> list[str]:
    from pirate_actors import RemoteExecutor

    endpoint = free_endpoint()
    workers = [_worker("pirate_actors:FunctionActor", endpoint, "--pool-size", "1") for _ in range(2)]
    remote_rates: list[float] = []
    local_rates: list[float] = []
    try:
        with RemoteExecutor(endpoint, wait=30, timeout=60) as remote, \
                concurrent.futures.ProcessPoolExecutor(2) as local:
            expected = [checksum(size)] * items
            runs: dict[str, tuple[concurrent.futures.Executor, list[float]]] = {
                "remote": (remote, remote_rates), "local": (local, local_rates)}
            for executor, _ in runs.values():
                assert list(executor.map(checksum, [size] * 20)) == expected[:20]  # warm-up
            for round_ in range(rounds):
                order = ["remote", "local"] if round_ % 2 == 0 else ["local", "remote"]
                for name in order:
                    executor, rates = runs[name]
                    started = time.perf_counter()
                    assert list(executor.map(checksum, [size] * items)) == expected
                    rates.append(items / (time.perf_counter() - started))
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(10)
    ratios = [r / p for r, p in zip(remote_rates, local_rates)]
    return [
        "| executor (2 processes) | calls/s (median, min–max) |", "| --- | --- |",
        f"| RemoteExecutor over 2 FunctionActor workers | {_median(remote_rates)} |",
        f"| ProcessPoolExecutor(2) | {_median(local_rates)} |",
        "",
        f"RemoteExecutor.map ÷ ProcessPoolExecutor.map, round by round: {_ratio(ratios)} "
        f"({items} calls of checksum({size:,}), pure Python CPU work, each round).",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.asyncwork", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"# Async procedures and RemoteExecutor ({time.strftime('%Y-%m-%d %H:%M:%S')}, "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f})\n")
    print(f"## The sleep workload: {CALLS} calls of {SLEEP * 1000:g} ms, {args.rounds} rounds\n")
    print("\n".join(sleep_workload(args.rounds)) + "\n")
    print("## RemoteExecutor.map against ProcessPoolExecutor.map\n")
    print("\n".join(executor_workload(args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
