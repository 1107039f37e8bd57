"""What machine a run was on, and CPU time / RSS of a process (psutil when present, else /proc)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any


def machine_info() -> dict[str, Any]:
    """Cores, CPU model, OS, load and the versions of everything measured."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        model = platform.processor() or "unknown"
    import zmq

    versions: dict[str, str] = {
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
    }
    for dist in ("pirate_actors", "pykka", "cloudpickle", "zerorpc", "gevent", "msgpack", "Pyro5", "rpyc"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "nproc": usable,
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "platform": platform.platform(),
        "implementation": sys.implementation.name,
        "loadavg_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions,
    }


try:
    import psutil as _psutil
except ImportError:  # pragma: no cover - depends on the bench extra
    _psutil = None

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (all its threads)."""
    if _psutil is not None:
        t = _psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid`` in bytes."""
    if _psutil is not None:
        return int(_psutil.Process(pid).memory_info().rss)
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no VmRSS for pid {pid}")


def thread_count(pid: int) -> int:
    """Number of threads of process ``pid``."""
    if _psutil is not None:
        return int(_psutil.Process(pid).num_threads())
    return len(os.listdir(f"/proc/{pid}/task"))


def switch_counts(pid: int) -> tuple[int, int] | None:
    """(voluntary, involuntary) context switches summed over every thread of ``pid``.

    A voluntary switch is a thread going to sleep (waiting on a socket, a lock, a queue) — so, over
    many calls, voluntary switches per call ≈ thread wake-ups per call. Linux only (None elsewhere).
    """
    vol = invol = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol += int(line.split()[1])
        except OSError:
            continue  # the thread ended meanwhile
    return vol, invol


def counters(pids: list[int]) -> dict[str, float] | None:
    """CPU seconds and voluntary/involuntary switches summed over processes ``pids``."""
    cpu = 0.0
    vol = invol = 0
    for pid in pids:
        try:
            cpu += cpu_seconds(pid)
            sw = switch_counts(pid)
        except (OSError, ValueError):
            return None
        if sw is None:
            return None
        vol += sw[0]
        invol += sw[1]
    return {"cpu": cpu, "vol": float(vol), "invol": float(invol)}


def thread_counters(pid: int) -> dict[int, dict[str, Any]]:
    """Per thread of ``pid`` (Linux): OS name, CPU seconds, voluntary and involuntary switches."""
    out: dict[int, dict[str, Any]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                raw = f.read()
            comm = raw[raw.index("(") + 1:raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / _TICK
            vol = invol = 0
            with open(f"/proc/{pid}/task/{tid}/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        vol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        invol = int(line.split()[1])
        except (OSError, ValueError):
            continue
        out[int(tid)] = {"comm": comm, "cpu": cpu, "vol": vol, "invol": invol}
    return out
