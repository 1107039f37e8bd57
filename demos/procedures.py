"""The seed's demo procedures (SPEC §9): ``pirate-worker demos.procedures:DemoProcedures``."""

from __future__ import annotations

import time

from pirate_actors import ProcedureActor

__all__ = ["DemoProcedures"]


class DemoProcedures(ProcedureActor):
    """Every public method here is a procedure a client can call by name."""

    def ping(self) -> str:
        """Answer at once: the cheapest round trip."""
        return "pong"

    def return_none(self) -> None:
        """Return nothing, to show that ``None`` is a result like any other."""
        return None

    def compare(self, str1: str, str2: str) -> list[bool | int]:
        """``[True, 1]`` if the two are equal, else ``[False, 2]`` (the seed's answer)."""
        return [True, 1] if str1 == str2 else [False, 2]

    def slow_succeed(self, seconds: float) -> bool:
        """Report progress, sleep ``seconds``, succeed: a long call that informs its caller."""
        self.report(f"sleeping {seconds} s before succeeding")
        time.sleep(seconds)
        return True

    def slow_fail(self, seconds: float) -> None:
        """Report progress, sleep ``seconds``, then raise: the caller gets the remote traceback."""
        self.report(f"sleeping {seconds} s before failing")
        time.sleep(seconds)
        raise RuntimeError(f"slow_fail failed after {seconds} s, as it was asked to")

    def ticker(self, n: int, interval: float) -> int:
        """Emit ``n`` events ``0 … n-1`` on topic ``"tick"``, ``interval`` seconds apart; return
        ``n``. Events go to every listening client (``pirate-listen``), not only the caller."""
        for i in range(n):
            if i:
                time.sleep(interval)
            self.emit("tick", i)
        return n
