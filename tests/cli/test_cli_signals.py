"""Signals and lost workers (SPEC §8): SIGINT/SIGTERM stop a worker gracefully (exit 0) and end a
counted pirate-call with its summary (exit 0); a worker killed mid-call makes pirate-call exit 5."""

from __future__ import annotations

import ctypes
import os
import platform
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.cli.support import SUMMARY, Process, Processes, console_script

SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_stops_a_worker_gracefully_its_running_call_finishes_and_it_exits_0(
    processes: Processes, endpoint: str, signum: int
) -> None:
    worker = processes.worker(endpoint)
    call = processes.call(endpoint, "slow_succeed", "--args", "1", "--timeout", "30")
    call.wait_for_line(r"^partial: sleeping 1 s")  # the call is running on the worker
    worker.signal(signum)
    assert worker.finish() == 0, worker.describe()
    assert call.finish() == 0, call.describe()
    assert call.stdout == "True", call.describe()
    assert "Traceback" not in worker.stderr, worker.describe()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_ends_an_endless_count_with_its_summary_and_exit_0(
    processes: Processes, demo_endpoint: str, signum: int
) -> None:
    call = processes.call(demo_endpoint, "ping", "--count", "-1", "-q")
    call.wait_for_line(r"^'pong'$", stream="stdout")
    call.signal(signum)
    assert call.finish() == 0, call.describe()
    summary = SUMMARY.search(call.stderr)
    assert summary is not None, call.describe()
    calls, errors = int(summary.group(1)), int(summary.group(2))
    assert calls >= 1 and errors == 0, call.describe()
    assert call.stdout.splitlines() == ["'pong'"] * calls, (
        call.describe()
    )  # every counted call printed
    assert "Traceback" not in call.stderr, call.describe()


@pytest.mark.timeout(60)
def test_a_signal_cancels_the_call_in_flight_instead_of_waiting_for_it(
    processes: Processes, demo_endpoint: str
) -> None:
    call = processes.call(
        demo_endpoint, "slow_succeed", "--args", "8", "--count", "-1", "--timeout", "60"
    )
    call.wait_for_line(r"^partial: sleeping 8 s")
    call.signal(signal.SIGTERM)
    assert call.finish() == 0, call.describe()
    assert call.stdout == "", call.describe()  # no True: the call was cancelled, not waited for
    summary = SUMMARY.search(call.stderr)
    assert summary is not None and summary.group(1, 2) == ("0", "0"), call.describe()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_during_a_single_call_cancels_it_and_exits_128_plus_the_signal(
    processes: Processes, demo_endpoint: str, signum: int
) -> None:
    call = processes.call(demo_endpoint, "slow_succeed", "--args", "8", "--timeout", "60")
    call.wait_for_line(r"^partial: sleeping 8 s")
    call.signal(signum)
    assert call.finish() == 128 + signum, call.describe()
    assert call.stdout == "", call.describe()
    assert call.stderr.splitlines()[-1].endswith("the call was cancelled"), call.describe()


@pytest.mark.timeout(60)
def test_a_signal_during_a_counted_run_keeps_the_last_failure_as_the_exit_code(
    processes: Processes, demo_endpoint: str
) -> None:
    call = processes.call(demo_endpoint, "slow_fail", "--args", "0", "--count", "-1", "-q")
    call.wait_for_line(r"RuntimeError: slow_fail failed")
    call.signal(signal.SIGINT)
    assert call.finish() == 1, call.describe()
    summary = SUMMARY.search(call.stderr)
    assert summary is not None and summary.group(1) == summary.group(2) != "0", call.describe()


@pytest.mark.timeout(60)
def test_a_worker_killed_during_a_call_makes_pirate_call_exit_5(
    processes: Processes, endpoint: str
) -> None:
    worker = processes.worker(endpoint, "--heartbeat", "0.2")
    call = processes.call(endpoint, "slow_succeed", "--args", "30", "--timeout", "30")
    call.wait_for_line(r"^partial: sleeping 30 s")
    worker.signal(signal.SIGKILL)
    assert call.finish(timeout=15) == 5, (
        call.describe()
    )  # noticed after 0.2 s x 3 missed heartbeats
    assert "WorkerLost" in call.stderr and call.stdout == "", call.describe()


@pytest.mark.timeout(60)
def test_pirate_worker_exits_70_when_its_procedure_actors_keep_dying(processes, endpoint) -> None:
    from pirate_actors import Client, PirateError

    worker = processes.worker(
        endpoint, "--heartbeat", "0.2", target="tests.helpers.procedures:FaultProcedures")
    with Client(endpoint, heartbeat=0.2) as client:
        client.wait_for_worker(timeout=20)
        for _ in range(11):  # max_restarts is 10 by default
            with pytest.raises(PirateError):
                client.call("die", timeout=10)
            if worker.popen.poll() is not None:
                break
    assert worker.finish() == 70, worker.describe()
    assert "stopped serving" in worker.stderr


_TGKILL = (  # the syscall's number (64-bit processes only: a 32-bit one on x86_64 differs)
    {"x86_64": 234, "aarch64": 131}.get(platform.machine()) if sys.maxsize > 2**32 else None
)


def _signal_another_thread(process: Process, signum: int) -> None:
    """Send ``signum`` to one thread of ``process`` other than its main one, one that does not
    block it: the kernel may deliver a process's signal to any such thread (it picks another
    when the main one already has a signal pending), and CPython then runs the handler only
    when its main thread next wakes."""
    pid = process.popen.pid
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        if int(task.name) == pid:
            continue
        blocked = re.search(r"^SigBlk:\s*([0-9a-f]+)$", (task / "status").read_text(), re.M)
        if blocked is not None and not int(blocked.group(1), 16) & (1 << (signum - 1)):
            libc = ctypes.CDLL(None, use_errno=True)
            assert libc.syscall(_TGKILL, pid, int(task.name), signum) == 0, os.strerror(
                ctypes.get_errno()
            )
            return
    pytest.fail(f"no thread of {process.argv[0]} other than the main one takes signal {signum}")


needs_tgkill = pytest.mark.skipif(
    _TGKILL is None or not Path("/proc/self/task").exists(),
    reason="sends a signal to one thread: needs Linux on x86_64 or aarch64",
)


@needs_tgkill
@pytest.mark.timeout(60)
def test_a_signal_the_kernel_gives_another_thread_still_stops_a_worker(
    processes: Processes, endpoint: str
) -> None:
    worker = processes.worker(endpoint)
    call = processes.call(endpoint, "ping", "--timeout", "30")
    assert call.finish() == 0, call.describe()  # serving: every thread is up
    _signal_another_thread(worker, signal.SIGTERM)
    worker.wait_for_line(r"pirate-worker: stopping: ")
    assert worker.finish() == 0, worker.describe()


@needs_tgkill
@pytest.mark.timeout(60)
def test_a_signal_the_kernel_gives_another_thread_still_interrupts_pirate_call(
    processes: Processes, demo_endpoint: str
) -> None:
    call = processes.call(demo_endpoint, "slow_succeed", "--args", "8", "--timeout", "60")
    call.wait_for_line(r"^partial: sleeping 8 s")
    _signal_another_thread(call, signal.SIGTERM)
    assert call.finish() == 128 + signal.SIGTERM, call.describe()
    assert "interrupted by SIGTERM" in call.stderr, call.describe()


@needs_tgkill
@pytest.mark.timeout(60)
def test_a_signal_the_kernel_gives_another_thread_interrupts_the_wait_for_a_worker(
    processes: Processes, endpoint: str
) -> None:
    call = processes.call(endpoint, "ping", "--wait", "40", "-v")
    call.wait_for_line(r"waiting up to 40 s for a worker")
    _signal_another_thread(call, signal.SIGTERM)
    assert call.finish(timeout=20) == 128 + signal.SIGTERM, call.describe()
    assert "before any worker registered" in call.stderr, call.describe()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_while_pirate_listen_waits_for_a_worker_ends_it_with_exit_0(
    processes: Processes, endpoint: str, signum: int
) -> None:
    listen = processes.start([console_script("pirate-listen"), endpoint, "--wait", "40", "-v"])
    listen.wait_for_line(r"waiting up to 40 s for a worker")
    listen.signal(signum)
    assert listen.finish(timeout=20) == 0, listen.describe()
    assert "Traceback" not in listen.stderr, listen.describe()


@needs_tgkill
@pytest.mark.timeout(60)
def test_a_signal_the_kernel_gives_another_thread_ends_pirate_listens_wait(
    processes: Processes, endpoint: str
) -> None:
    listen = processes.start([console_script("pirate-listen"), endpoint, "--wait", "40", "-v"])
    listen.wait_for_line(r"waiting up to 40 s for a worker")
    _signal_another_thread(listen, signal.SIGTERM)
    assert listen.finish(timeout=20) == 0, listen.describe()
