"""SPEC §2–§3: a process that used a client or a worker exits promptly, with its own exit code,
even if ``close()``/``stop()`` was never called — idle, with a call still running in the
worker, with a worker whose client never came, or with a call waiting for a worker."""

from __future__ import annotations

import subprocess
import time

import pytest

EXIT_BOUND = 3.0
"""Seconds from the end of main to the end of the process (the worker's at-exit stop gives a
running call 0.5 s)."""


@pytest.mark.timeout(40)
@pytest.mark.parametrize("mode", ["idle", "call-in-flight", "lonely-worker", "queued-call"])
def test_a_process_that_never_closed_its_client_or_stopped_its_worker_exits_promptly_with_code_0(spawn, mode):
    child = spawn("tests.helpers.forgetful_process", mode, name=mode)
    child.expect("DONE", timeout=30)
    done_at = time.monotonic()
    try:
        code = child.popen.wait(timeout=EXIT_BOUND + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{mode}: still running {EXIT_BOUND + 10:g} s after main returned\n{child.log()}")
    took = time.monotonic() - done_at
    assert code == 0, child.log()
    assert took <= EXIT_BOUND, f"{mode}: exit took {took:.2f} s"
    log = child.log()
    assert "Traceback" not in log and "Exception ignored" not in log, log
