"""The procedures the pirate_actors worker serves in the benchmark (imported only in worker processes)."""

from __future__ import annotations

import time

from pirate_actors import ProcedureActor

from bench import workload


class BenchProcedures(ProcedureActor):
    """Trivial procedures: the cost measured is the runtime's, not the procedure's."""

    def ping(self) -> str:
        """The trivial procedure."""
        return "pong"

    def compare(self, str1: str, str2: str) -> tuple[bool, int]:
        """The benchmark's call, as every RPC contender serves it (``bench.workload``)."""
        return workload.compare(str1, str2)

    def echo(self, data: bytes) -> bytes:
        """The 1 MiB scenario: the payload, back."""
        return data

    def stream(self, n: int) -> int:
        """Report ``n`` partial messages, then return ``n``."""
        report = self.report
        for i in range(n):
            report(i)
        return n

    def sleep(self, seconds: float) -> bool:
        """Hold a call in flight (for the SIGKILL probe)."""
        time.sleep(seconds)
        return True

    def emit_events(self, n: int) -> int:
        """Emit ``n`` events on topic ``"bench"``, then return ``n`` (for bench/events.py)."""
        emit = self.emit
        for i in range(n):
            emit("bench", i)
        return n

    def work(self, seconds: float) -> bool:
        """Hold an actor for ``seconds`` (for bench/share.py)."""
        time.sleep(seconds)
        return True
