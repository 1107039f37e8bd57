"""The procedures the lab's workers serve (``pirate-worker bench.lab.procs:LabProcedures``).

``work`` and ``unsafe`` record each run as a side effect, so the lab counts runs exactly: a run
appends ``S <tag> <time>`` to ``FOLDER/runs-<pid>`` when it starts and ``E <tag> <time>`` when it
ends (``time.monotonic()``, the machine-wide clock, so the driver can compare it with its own).
Each worker process writes a file of its own with unbuffered appends, so a SIGKILL loses nothing
that was written and no two processes share a file.
"""

from __future__ import annotations

import os
import time

from pirate_actors import ProcedureActor, idempotent

__all__ = ["LabProcedures", "read_runs"]


def _note(folder: str, mark: str, tag: int) -> None:
    line = f"{mark} {tag} {time.monotonic():.6f}\n".encode()
    fd = os.open(os.path.join(folder, f"runs-{os.getpid()}"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


class LabProcedures(ProcedureActor):
    """``nap`` and ``work`` are idempotent, ``unsafe`` is not."""

    def ping(self) -> str:
        return "pong"

    @idempotent
    def nap(self, seconds: float) -> int:
        """Sleep, return this process's pid (no side effect: the throughput scenario's call)."""
        time.sleep(seconds)
        return os.getpid()

    @idempotent
    def work(self, folder: str, tag: int, seconds: float) -> int:
        """Record a run of call ``tag``, sleep, record its end; return this process's pid."""
        return self._run(folder, tag, seconds)

    def unsafe(self, folder: str, tag: int, seconds: float) -> int:
        """The same, not idempotent: the client never sends it twice (SPEC §10)."""
        return self._run(folder, tag, seconds)

    def _run(self, folder: str, tag: int, seconds: float) -> int:
        _note(folder, "S", tag)
        time.sleep(seconds)
        _note(folder, "E", tag)
        return os.getpid()


class Run:
    """One run of a call: the worker process it ran in, when it started and (if it did) ended."""

    __slots__ = ("pid", "start", "end")

    def __init__(self, pid: int, start: float) -> None:
        self.pid = pid
        self.start = start
        self.end: float | None = None

    def __repr__(self) -> str:
        return f"Run(pid={self.pid}, start={self.start:.3f}, end={self.end})"


def read_runs(folder: str) -> dict[int, list[Run]]:
    """Every run recorded in ``folder``: call tag -> its runs, in the order they started."""
    runs: dict[int, list[Run]] = {}
    for name in os.listdir(folder):
        if not name.startswith("runs-"):
            continue
        pid = int(name[len("runs-"):])
        open_runs: dict[int, Run] = {}
        with open(os.path.join(folder, name)) as file:
            for line in file:
                parts = line.split()
                if len(parts) != 3:
                    continue  # a line cut short by a SIGKILL
                mark, tag, at = parts[0], int(parts[1]), float(parts[2])
                if mark == "S":
                    run = Run(pid, at)
                    runs.setdefault(tag, []).append(run)
                    open_runs[tag] = run
                elif mark == "E" and tag in open_runs:
                    open_runs.pop(tag).end = at
    for tag_runs in runs.values():
        tag_runs.sort(key=lambda run: run.start)
    return runs
