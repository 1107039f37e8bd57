"""SPEC §12 with real processes: one worker process serves two clients from one pool; one client
is SIGKILLed and restarted while the other keeps calling, and only the dead one's calls suffer."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tests.helpers import FAST
from tests.helpers.sync import wait_until

pytestmark = pytest.mark.timeout(60)

REGISTRATION_BOUND = 1.5


def _free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def test_a_client_killed_and_restarted_touches_only_its_own_calls_on_a_shared_worker(
    spawn, spawn_worker, make_client
) -> None:
    doomed_endpoint = _free_endpoint()
    survivor = make_client(**FAST)
    doomed = spawn("tests.helpers.client_process", doomed_endpoint, "--heartbeat", "0.2", "--busy", "2",
                   name="doomed-client")
    doomed.expect("BOUND ")
    worker = spawn_worker(survivor.endpoint, "shared", pool_size=4, prefetch=0, also=doomed_endpoint)
    doomed.expect("BUSY")  # two calls of the doomed client run on the shared worker
    survivor.wait_for_worker(timeout=20)
    assert [info.id for info in survivor.workers()] == [worker.id]

    results: list[object] = []
    stop = threading.Event()

    def keep_calling() -> None:
        while not stop.is_set():
            try:
                results.append(survivor.call("pid", timeout=10))
            except Exception as exc:  # noqa: BLE001 - the test looks at every outcome
                results.append(exc)

    caller = threading.Thread(target=keep_calling)
    caller.start()
    try:
        wait_until(lambda: len(results) >= 20, 20, "the survivor's calls run")
        doomed.kill()
        before = len(results)
        wait_until(lambda: len(results) >= before + 50, 20, "the survivor kept calling")
        restarted = spawn("tests.helpers.client_process", doomed_endpoint, "--heartbeat", "0.2",
                          name="restarted-client")
        restarted.expect("BOUND ")
        bound_at = time.monotonic()
        restarted.expect("REGISTERED")
        assert time.monotonic() - bound_at <= REGISTRATION_BOUND + 0.5  # (+ the line's round trip)
        assert restarted.expect("PONG") == "PONG"
        after = len(results)
        wait_until(lambda: len(results) >= after + 20, 20, "the survivor still calls")
    finally:
        stop.set()
        caller.join(20)
    failures = [r for r in results if isinstance(r, Exception)]
    assert not failures, failures[:3]
    assert set(results) == {worker.pid}
    assert survivor.workers()[0].capacity <= 4
