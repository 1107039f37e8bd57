"""The standard library's ``concurrent.futures.ProcessPoolExecutor(4)``: local pipes, no network.

The executor lives in the client process and its 4 worker processes are the "server": the
benchmark adds up their CPU time and wake-ups. A call is a ``submit()``; one at a time is
``submit(...).result()``; in flight is ``submit()`` with a semaphore of 100 released by each
future's done-callback, as for pirate_actors. The executor is made with its defaults (on Linux
with Python < 3.14 its workers are forked) and its 4 workers are started before the first window.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from typing import Any

from bench.workload import ARGS, PAYLOAD, compare, echo, pid_after, one_at_a_time


class PoolClient:
    """A ``ProcessPoolExecutor(workers)`` and the windows."""

    def __init__(self, workers: int = 4) -> None:
        self.pool = concurrent.futures.ProcessPoolExecutor(workers)
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < workers:                # every worker up, and known by its pid
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(pids)} of {workers} pool workers answered")
            futures = [self.pool.submit(pid_after, 0.2) for _ in range(workers)]
            pids.update(f.result(timeout=30) for f in futures)
        self.pids = sorted(pids)
        if self.pool.submit(compare, *ARGS).result(timeout=30) != compare(*ARGS):
            raise RuntimeError("pool compare gave the wrong answer")

    def info(self) -> dict[str, Any]:
        """The pids of the worker processes (the contender's server side)."""
        return {"server_pids": self.pids}

    def sync(self, seconds: float) -> dict[str, Any]:
        """``submit(...).result()`` one at a time for ``seconds``."""
        submit = self.pool.submit
        a, b = ARGS
        return one_at_a_time(lambda: submit(compare, a, b).result(), seconds)

    def inflight(self, seconds: float, depth: int) -> dict[str, Any]:
        """``depth`` futures outstanding; count the results that arrive within ``seconds``."""
        submit = self.pool.submit
        a, b = ARGS
        clock = time.perf_counter
        slots = threading.Semaphore(depth)
        in_time = itertools.count()
        errors = itertools.count()
        t0 = clock()
        deadline = t0 + seconds

        def done(fut: concurrent.futures.Future[Any]) -> None:
            if fut.cancelled() or fut.exception() is not None:
                next(errors)
            elif clock() < deadline:
                next(in_time)
            slots.release()

        sent = 0
        while clock() < deadline:
            slots.acquire()
            submit(compare, a, b).add_done_callback(done)
            sent += 1
        for _ in range(depth):                    # drain
            if not slots.acquire(timeout=60):
                raise RuntimeError("pool: calls still in flight after 60 s")
        failed = next(errors)
        if failed:
            raise RuntimeError(f"pool in flight: {failed} calls failed")
        return {"count": next(in_time), "total": sent, "elapsed": seconds}

    def big(self, seconds: float) -> dict[str, Any]:
        """``echo`` of 1 MiB, one at a time, for ``seconds``."""
        submit = self.pool.submit
        payload = PAYLOAD
        clock = time.perf_counter
        n = 0
        t0 = clock()
        deadline = t0 + seconds
        now = t0
        while now < deadline:
            if len(submit(echo, payload).result()) != len(payload):
                raise RuntimeError("pool echo lost bytes")
            n += 1
            now = clock()
        return {"count": n, "elapsed": now - t0}

    def close(self) -> None:
        """Shut the pool down."""
        self.pool.shutdown(wait=True, cancel_futures=True)
