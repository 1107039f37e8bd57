"""The client's cost per call against the number of workers and of queued calls, in memory.

Usage (from the repository root): ``python -m bench.dispatch [--calls N] [--json PATH]``.

The real :class:`~pirate_actors._client_engine.ClientEngine` and its real session are driven
as the client thread drives them, against N real worker sessions joined by plain lists (no
sockets, no threads): every worker is kept full, Q more calls wait in the queue, and each
reply lets one queued call go. Only the client engine's own work is timed (``receive``,
``submit``, ``flush``): the worker sessions that encode replies and decode requests stand in
for other processes. Dispatch that scans every worker (or every queued call) per call shows
up as cost per call growing with N (or Q).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from typing import Any

from pirate_actors import _codec
from pirate_actors._client_engine import Call, ClientEngine
from pirate_actors._future import CallFuture
from pirate_actors.protocol import (
    CallsReceived,
    ClientProtocol,
    Command,
    Entry,
    FrameCodec,
    Ready,
    WorkerProtocol,
)

WORKERS = (1, 4, 16, 64, 256)
QUEUED = (10, 100, 1_000, 10_000)
CAPACITY = 8
"""Each worker's capacity (pool_size 4 + prefetch 4, the default for pool_size 4)."""


class Bench:
    """One client engine, ``workers`` worker sessions, every worker full and ``queued`` waiting."""

    def __init__(self, workers: int, queued: int) -> None:
        self.now = 0.0
        # A long heartbeat: ticks (heartbeats and liveness) are not what this measures.
        self.engine = ClientEngine(ClientProtocol(FrameCodec(None), 3600.0, 3), timeout=3600.0,
                                   now=self.now)
        self.sessions: dict[bytes, WorkerProtocol] = {}
        self.held: dict[bytes, list[int]] = {}
        self.next_id = 0
        self.body = _codec.dumps((("uno", "dos"), {}))
        self.reply = _codec.dumps(False)
        for n in range(workers):
            peer = b"w%d" % n
            ready = Ready(f"worker-{n}", CAPACITY, 3600.0, 3, ("compare",), id=f"w{n}")
            session = WorkerProtocol(FrameCodec(None), ready, self.now)
            session.connected(self.now)
            self.sessions[peer] = session
            self.held[peer] = []
            self.engine.receive(peer, session.ready_frames(self.now), self.now)
        self._deliver()
        assert self.engine.registered() == workers, "every worker registers"
        for _ in range(workers * CAPACITY + queued):
            self._submit()
        self.engine.flush(self.now)
        self._deliver()
        assert self.engine.queued == queued and self.engine.in_flight == workers * CAPACITY

    def _submit(self) -> None:
        self.next_id += 1
        future = CallFuture("compare", _ignore, self.next_id)
        self.engine.submit(Call(self.next_id, "compare", self.body, future, self.now), self.now)

    def _deliver(self) -> None:
        """What the engine sent, to its workers' sessions (untimed: the workers' work)."""
        for peer, frames in self.engine.out:
            for event in self.sessions[peer].receive(frames, self.now):
                if isinstance(event, CallsReceived) and event.command is Command.REQUEST:
                    self.held[peer].extend(entry.request_id for entry in event.entries)
        self.engine.out.clear()
        self.engine.settled.clear()

    def run(self, calls: int) -> float:
        """Seconds of client-engine time per call, over ``calls`` replies in steady state."""
        rng = random.Random(1)
        peers = list(self.sessions)
        engine = self.engine
        spent = 0.0
        clock = time.perf_counter
        for _ in range(calls):
            peer = rng.choice(peers)
            held = self.held[peer]
            request_id = held.pop(rng.randrange(len(held)))
            frames = self.sessions[peer].calls(Command.REPLY, [Entry(request_id, 0, self.reply)], self.now)
            self.now += 1e-5
            started = clock()
            engine.receive(peer, frames, self.now)
            self._submit()
            engine.flush(self.now)
            spent += clock() - started
            self._deliver()
        assert engine.queued == self.queued_expected
        return spent / calls

    @property
    def queued_expected(self) -> int:
        return self.next_id - self.engine.outcomes["succeeded"] - self.engine.in_flight


def _ignore(request_id: int) -> None:
    pass


def measure(workers: int, queued: int, calls: int, rounds: int) -> dict[str, Any]:
    samples = []
    for _ in range(rounds):
        bench = Bench(workers, queued)
        samples.append(bench.run(calls) * 1e6)
    return {"workers": workers, "queued": queued, "us_per_call": statistics.median(samples),
            "min": min(samples), "max": max(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5_000, help="replies timed per round (default 5000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per point (default 5)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    rows = []
    for workers in WORKERS:
        rows.append(measure(workers, 100, args.calls, args.rounds))
        print(f"workers {workers:>5}, queued {100:>6}: {rows[-1]['us_per_call']:6.1f} µs per call "
              f"(min {rows[-1]['min']:.1f}, max {rows[-1]['max']:.1f})", flush=True)
    for queued in QUEUED:
        rows.append(measure(16, queued, args.calls, args.rounds))
        print(f"workers {16:>5}, queued {queued:>6}: {rows[-1]['us_per_call']:6.1f} µs per call "
              f"(min {rows[-1]['min']:.1f}, max {rows[-1]['max']:.1f})", flush=True)
    by_workers = [r["us_per_call"] for r in rows[:len(WORKERS)]]
    by_queued = [r["us_per_call"] for r in rows[len(WORKERS):]]
    spread_w = max(by_workers) / min(by_workers)
    spread_q = max(by_queued) / min(by_queued)
    print(f"largest ÷ smallest cost per call: over workers {spread_w:.2f}×, over queued calls "
          f"{spread_q:.2f}× (target: at most 1.5× each)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"rows": rows, "spread_workers": spread_w, "spread_queued": spread_q}, f, indent=2)
    return 0 if spread_w <= 1.5 and spread_q <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
