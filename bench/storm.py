"""A kill storm: workers SIGKILLed and replaced while calls run, and what became of every call.

    python -m bench.storm [--seconds 60] [--workers 4] [--in-flight 64] [--every 0.6]
                          [--work 0.05] [--kind idempotent|unsafe|both] [--retries 2]

One client in this process keeps ``--in-flight`` calls going for ``--seconds`` against
``--workers`` worker processes (``pirate-worker bench.storm:StormProcedures``, heartbeat 0.2 s x 3,
pool size in-flight / workers); every ``--every`` seconds a random worker is SIGKILLed and a new
one started. Each run of a call appends its tag to its worker process's own side-effect file, so
runs are counted exactly. Prints one line per kind: calls made, succeeded, failed (by type), hung
(no outcome 30 s after the storm), retried (sent again after a loss), and calls that ran twice.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import itertools
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pirate_actors import Client, ProcedureActor, idempotent

HEARTBEAT = {"heartbeat": 0.2, "liveness": 3}


class StormProcedures(ProcedureActor):
    """``work`` is idempotent, ``unsafe`` is not; both record each run in a side-effect file."""

    def _record(self, folder: str, tag: int, seconds: float) -> int:
        with open(os.path.join(folder, f"runs-{os.getpid()}"), "a") as file:
            file.write(f"{tag}\n")
        time.sleep(seconds)
        return tag

    @idempotent
    def work(self, folder: str, tag: int, seconds: float) -> int:
        return self._record(folder, tag, seconds)

    def unsafe(self, folder: str, tag: int, seconds: float) -> int:
        return self._record(folder, tag, seconds)


def _start_worker(endpoint: str, pool_size: int) -> subprocess.Popen[bytes]:
    script = os.path.join(os.path.dirname(sys.executable), "pirate-worker")
    return subprocess.Popen(
        [script, "bench.storm:StormProcedures", "--connect", endpoint, "--pool-size", str(pool_size),
         "--heartbeat", str(HEARTBEAT["heartbeat"]), "--liveness", str(HEARTBEAT["liveness"]), "-q"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def storm(
    kind: str, seconds: float, workers: int, in_flight: int, every: float, work: float, retries: int
) -> str:
    procedure = "work" if kind == "idempotent" else "unsafe"
    folder = tempfile.mkdtemp(prefix="pirate-storm-")
    pool_size = max(1, in_flight // workers)
    with Client("tcp://127.0.0.1:*", timeout=30.0, retries=retries, **HEARTBEAT) as client:
        processes = [_start_worker(client.endpoint, pool_size) for _ in range(workers)]
        stop = threading.Event()
        kills = 0

        def killer() -> None:
            nonlocal kills
            rng = random.Random(1)
            while not stop.wait(every):
                victim = rng.randrange(len(processes))
                processes[victim].send_signal(signal.SIGKILL)
                processes[victim].wait()
                processes[victim] = _start_worker(client.endpoint, pool_size)
                kills += 1

        client.wait_for_worker(timeout=30)
        tags = itertools.count()
        futures: set[concurrent.futures.Future[Any]] = set()
        made = 0
        killing = threading.Thread(target=killer, daemon=True)
        killing.start()
        end = time.monotonic() + seconds
        outcomes: collections.Counter[str] = collections.Counter()
        while time.monotonic() < end:
            while len(futures) < in_flight:
                futures.add(client.submit(procedure, folder, next(tags), work))
                made += 1
            done, futures = concurrent.futures.wait(futures, timeout=0.5, return_when="FIRST_COMPLETED")  # type: ignore[assignment]
            for future in done:
                outcomes["ok" if future.exception() is None else type(future.exception()).__name__] += 1
        stop.set()
        killing.join()
        done, pending = concurrent.futures.wait(futures, timeout=30)
        for future in done:
            outcomes["ok" if future.exception() is None else type(future.exception()).__name__] += 1
        retried = client.stats().get("retried", 0)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
    runs: collections.Counter[int] = collections.Counter()
    for path in Path(folder).iterdir():
        runs.update(int(line) for line in path.read_text().split())
    twice = sum(1 for count in runs.values() if count > 1)
    failed = {name: n for name, n in outcomes.items() if name != "ok"}
    return (
        f"{kind} (retries={retries}): {made} calls in {seconds:g} s, {kills} workers killed: "
        f"{outcomes['ok']} succeeded, "
        f"failed {sum(failed.values())} {failed or ''}, hung {len(pending)}, retried {retried}, "
        f"ran twice {twice}, never ran {made - len(runs)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--every", type=float, default=0.6)
    parser.add_argument("--work", type=float, default=0.05, help="seconds each call takes")
    parser.add_argument("--kind", choices=("idempotent", "unsafe", "both"), default="both")
    parser.add_argument("--retries", type=int, default=2, help="the client's retries")
    options = parser.parse_args(argv)
    kinds = ("idempotent", "unsafe") if options.kind == "both" else (options.kind,)
    for kind in kinds:
        print(storm(kind, options.seconds, options.workers, options.in_flight, options.every,
                    options.work, options.retries), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
