"""Procedures for the command-line tests, served from this folder (the current directory)."""

from __future__ import annotations

import itertools
import time

from pirate_actors import ProcedureActor


class Scripted(ProcedureActor):
    """``step`` fails, then hangs, then succeeds: one pirate-call --count 3 meets three outcomes."""

    _calls = itertools.count()  # one script per worker process, shared by every actor of its pool

    def step(self, hang_seconds: float) -> str:
        """1st call: ValueError; 2nd: sleeps ``hang_seconds`` (to time out); later: ``"ok"``."""
        number = next(Scripted._calls)
        if number == 0:
            raise ValueError("the first step fails")
        if number == 1:
            time.sleep(hang_seconds)
            return "late"
        return "ok"

    def a_set(self) -> set[int]:
        """A result JSON cannot express."""
        return {1, 2}


class WrongAnswers(ProcedureActor):
    """A worker the seed's examples must not accept: a wrong ping and nothing else."""

    def ping(self) -> str:
        """Not the expected answer."""
        return "pang"
