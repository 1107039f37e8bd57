"""A ProcedureActor for fault tests; served in the test process or by ``worker_process``.

``hold`` waits on a gate that only a test in the *same* process can open, so it is meant for
in-process workers; the others work anywhere.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

from pirate_actors import ProcedureActor, idempotent

__all__ = ["RUN_LOG", "FaultProcedures", "close_gates", "open_gate"]

_gates: dict[str, threading.Event] = {}
_gates_lock = threading.Lock()

RUN_LOG: list[Any] = []
"""Tags of ``hold`` calls, in the order they started (this process only)."""


def _gate(name: str) -> threading.Event:
    with _gates_lock:
        return _gates.setdefault(name, threading.Event())


def open_gate(name: str) -> None:
    """Let every ``hold(name)`` call, running or future, return."""
    _gate(name).set()


def close_gates() -> None:
    """Open every gate (so nothing stays stuck) and forget them; clears ``RUN_LOG``."""
    with _gates_lock:
        gates = list(_gates.values())
        _gates.clear()
    for event in gates:
        event.set()
    RUN_LOG.clear()


class FaultProcedures(ProcedureActor):
    """Procedures for fault tests."""

    def ping(self) -> str:
        return "pong"

    def pid(self) -> int:
        return os.getpid()

    def echo(self, value: Any) -> Any:
        return value

    def sleep(self, seconds: float) -> bool:
        time.sleep(seconds)
        return True

    @idempotent
    def first_run_hangs(self, marker: str) -> int:
        """Idempotent. The first run anywhere creates ``marker`` and sleeps a minute; any later
        run returns its process's pid at once (so a retry elsewhere proves where it ran)."""
        return self._first_run_hangs(marker)

    @idempotent
    def logged_sleep(self, log: str, seconds: float) -> int:
        """Idempotent. Append a line to ``log`` (one per run), sleep, return the lines so far."""
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\n")
        time.sleep(seconds)
        with open(log) as file:
            return len(file.readlines())

    def emit_many(self, n: int, topic: str = "tick") -> int:
        """Emit events ``0 … n-1`` on ``topic``, then return ``n``."""
        for i in range(n):
            self.emit(topic, i)
        return n

    def record(self, path: str) -> bool:
        """Create ``path``: proof that this call ran."""
        with open(path, "x"):
            pass
        return True

    def die(self) -> None:
        """Raise SystemExit: the actor is replaced (and counts towards max_restarts)."""
        raise SystemExit(3)

    def first_run_hangs_unmarked(self, marker: str) -> int:
        """The same, not marked idempotent."""
        return self._first_run_hangs(marker)

    @staticmethod
    def _first_run_hangs(marker: str) -> int:
        try:
            with open(marker, "x"):
                pass
        except FileExistsError:
            return os.getpid()
        time.sleep(60)
        return os.getpid()

    def busy(self, seconds: float) -> int:
        """Spin in pure Python (holding the GIL between switches) for ``seconds``; report each second."""
        start = time.monotonic()
        next_report = start + 1.0
        rounds = 0
        while True:
            now = time.monotonic()
            if now - start >= seconds:
                return rounds
            if now >= next_report:
                self.report(f"busy for {now - start:.0f} s")
                next_report += 1.0
            for i in range(2000):
                rounds += i & 1

    def chatty(self, seconds: float) -> int:
        """``report()`` as fast as possible for ``seconds``; returns how many reports it sent."""
        start = time.monotonic()
        count = 0
        while time.monotonic() - start < seconds:
            self.report(count)
            count += 1
        return count

    def hog_gil(self, seconds: float, flag: str) -> float:
        """Hold the GIL for about ``seconds`` in a single C call, so that no other thread of this
        process runs Python meanwhile (ZeroMQ's own I/O thread still does); touches the file
        ``flag`` just before. Returns how long the GIL was held."""
        probe = 1_000_000
        start = time.perf_counter()
        sum(itertools.repeat(1, probe))
        rate = probe / max(time.perf_counter() - start, 1e-6)
        open(flag, "w").close()
        start = time.perf_counter()
        sum(itertools.repeat(1, int(seconds * rate)))  # C all the way down: the GIL is never released
        return time.perf_counter() - start

    def hold(self, gate: str, tag: Any = None) -> Any:
        """Record ``tag`` in ``RUN_LOG``, then wait until ``open_gate(gate)`` (at most 30 s)."""
        RUN_LOG.append(tag)
        if not _gate(gate).wait(30):
            raise TimeoutError(f"gate {gate!r} never opened")
        return tag

    def blob(self, size: int) -> bytes:
        return b"x" * size
