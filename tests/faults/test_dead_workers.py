"""SPEC §5: a dead worker's calls fail with WorkerLost, started or not, within heartbeat × liveness
(plus a second of slack); a frozen worker that thaws registers again and serves new calls.

Workers run in their own processes (``tests.helpers.worker_process``) so that they can really be
SIGKILLed and SIGSTOPped; they and the client use heartbeat 0.2 s and liveness 3.
"""

from __future__ import annotations

import concurrent.futures
import signal
import time

import pytest

from pirate_actors import NoWorkerError, WorkerLost
from tests.helpers import FAST
from tests.helpers.sync import completion_times, started_event, wait_until

DEATH_BOUND = FAST["heartbeat"] * FAST["liveness"] + 1.0
"""How long after a worker stops answering its calls may still be pending: 1.6 s."""


def _load_worker(client, worker_id):
    """Four calls that never end by themselves, all on worker ``worker_id`` (pool 2, prefetch 2):
    two running (their "started" arrived) and two waiting inside the worker."""
    calls = [client.submit("sleep", 60) for _ in range(4)]
    started = [started_event(call) for call in calls]
    wait_until(lambda: sum(event.is_set() for event in started) == 2, 20, "two calls started")
    wait_until(lambda: all(call.worker == worker_id for call in calls), 10, "all four dispatched")
    running = [call for call, event in zip(calls, started) if event.is_set()]
    waiting = [call for call, event in zip(calls, started) if not event.is_set()]
    assert len(running) == 2 and len(waiting) == 2
    return calls


def _assert_all_lost_in_time(calls, since, finished_at):
    _, pending = concurrent.futures.wait(calls, timeout=DEATH_BOUND + 10)
    assert not pending, f"calls still pending {DEATH_BOUND + 10:g} s after the worker went silent"
    for call in calls:
        with pytest.raises(WorkerLost):
            call.result(timeout=0)
    latest = max(finished_at[id(call)] for call in calls) - since
    assert latest <= DEATH_BOUND, f"WorkerLost came {latest:.2f} s after the worker went silent"


@pytest.mark.timeout(40)
def test_a_sigkilled_worker_fails_its_started_and_waiting_calls_with_worker_lost_within_heartbeat_times_liveness_plus_1_s(
    make_client, spawn_worker
):
    client = make_client(**FAST)
    doomed = spawn_worker(client.endpoint, "doomed", pool_size=2, prefetch=2)
    client.wait_for_worker(timeout=20)
    calls = _load_worker(client, doomed.id)
    finished_at = completion_times(calls)

    killed_at = time.monotonic()
    doomed.process.send_signal(signal.SIGKILL)

    _assert_all_lost_in_time(calls, killed_at, finished_at)
    assert client.workers() == []


@pytest.mark.timeout(40)
def test_a_client_keeps_serving_its_other_workers_while_one_is_sigkilled(make_client, spawn_worker):
    client = make_client(**FAST)
    doomed = spawn_worker(client.endpoint, "doomed", pool_size=2, prefetch=2)
    client.wait_for_worker(timeout=20)
    doomed_calls = _load_worker(client, doomed.id)  # the doomed worker is now full
    survivor = spawn_worker(client.endpoint, "survivor", pool_size=2)
    wait_until(lambda: len(client.workers()) == 2, 20, "the survivor registered")
    survivor_call = client.submit("sleep", 1.0)  # in flight on the survivor across the kill
    assert started_event(survivor_call).wait(20)
    assert survivor_call.worker == survivor.id
    finished_at = completion_times(doomed_calls)

    killed_at = time.monotonic()
    doomed.process.kill()

    _assert_all_lost_in_time(doomed_calls, killed_at, finished_at)
    assert survivor_call.result(timeout=20) is True
    assert [info.id for info in client.workers()] == [survivor.id]
    assert client.call("pid", timeout=10) == survivor.pid
    more = [client.submit("echo", n) for n in range(20)]
    assert [call.result(timeout=20) for call in more] == list(range(20))
    assert {call.worker for call in more} == {survivor.id}


@pytest.mark.timeout(40)
def test_a_sigstopped_worker_fails_its_calls_with_worker_lost_within_heartbeat_times_liveness_plus_1_s_and_after_sigcont_registers_again_and_serves_new_calls(
    make_client, spawn_worker
):
    client = make_client(**FAST)
    frozen = spawn_worker(client.endpoint, "frozen", pool_size=2, prefetch=2)
    client.wait_for_worker(timeout=20)
    calls = _load_worker(client, frozen.id)
    finished_at = completion_times(calls)

    stopped_at = time.monotonic()
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        _assert_all_lost_in_time(calls, stopped_at, finished_at)
        assert client.workers() == []
    finally:
        frozen.process.send_signal(signal.SIGCONT)

    infos = wait_until(client.workers, 20, "the thawed worker registered again")
    assert [info.id for info in infos] == [frozen.id]
    assert infos[0].capacity == 4
    client.wait_for_worker(timeout=1)
    assert client.call("pid", timeout=10) == frozen.pid
    # Its whole capacity is back: the calls it held for the old registration were abandoned.
    pings = [client.submit("ping") for _ in range(8)]
    assert [call.result(timeout=20) for call in pings] == ["pong"] * 8


def _one_running_and_three_queued(client, worker):
    """A capacity-1 worker runs a call that never ends by itself; three more wait in the client."""
    running = client.submit("sleep", 60)
    assert started_event(running).wait(20)
    assert running.worker == worker.id
    queued = [client.submit("echo", n) for n in range(3)]
    wait_until(lambda: client.stats()["queued"] == 3, 10, "three calls queued in the client")
    return running, queued


@pytest.mark.timeout(40)
def test_calls_queued_in_the_client_when_its_only_worker_dies_go_to_the_next_worker_that_registers(
    make_client, spawn_worker
):
    client = make_client(timeout=10.0, **FAST)
    doomed = spawn_worker(client.endpoint, "doomed", pool_size=1, prefetch=0)
    client.wait_for_worker(timeout=20)
    running, queued = _one_running_and_three_queued(client, doomed)

    doomed.process.kill()
    with pytest.raises(WorkerLost):
        running.result(timeout=DEATH_BOUND + 10)
    assert not any(call.done() for call in queued)

    successor = spawn_worker(client.endpoint, "successor")
    assert [call.result(timeout=20) for call in queued] == [0, 1, 2]
    assert {call.worker for call in queued} == {successor.id}


@pytest.mark.timeout(40)
def test_calls_queued_in_the_client_fail_with_no_worker_error_once_no_worker_has_been_registered_for_the_clients_timeout(
    make_client, spawn_worker
):
    timeout = 1.0
    client = make_client(timeout=timeout, **FAST)
    doomed = spawn_worker(client.endpoint, "doomed", pool_size=1, prefetch=0)
    client.wait_for_worker(timeout=20)
    running, queued = _one_running_and_three_queued(client, doomed)
    finished_at = completion_times([running, *queued])

    doomed.process.kill()
    with pytest.raises(WorkerLost):
        running.result(timeout=DEATH_BOUND + 10)
    for call in queued:
        with pytest.raises(NoWorkerError):
            call.result(timeout=timeout + 10)
    lost_at = finished_at[id(running)]
    for call in queued:
        waited = finished_at[id(call)] - lost_at
        assert timeout - 0.1 <= waited <= timeout + 1.0, f"NoWorkerError {waited:.2f} s after the loss"


@pytest.mark.timeout(60)
def test_a_sigkilled_workers_closed_connection_fails_its_calls_at_the_next_heartbeat_not_after_heartbeat_times_liveness(
    make_client, spawn_worker
):
    """The client's ROUTER refuses to send to a peer whose connection closed (ROUTER_MANDATORY),
    so a killed worker is known gone at the first heartbeat sent to it: with heartbeat 1 s and
    liveness 10, silence alone would take 10 s."""
    slow = {"heartbeat": 1.0, "liveness": 10}
    client = make_client(**slow)
    doomed = spawn_worker(client.endpoint, "doomed", pool_size=2, prefetch=0, **slow)
    client.wait_for_worker(timeout=20)
    calls = [client.submit("sleep", 60) for _ in range(2)]  # not idempotent: no retry
    started = [started_event(call) for call in calls]
    assert all(event.wait(20) for event in started)
    survivor = spawn_worker(client.endpoint, "survivor", pool_size=1, **slow)
    wait_until(lambda: len(client.workers()) == 2, 20, "the survivor registered")
    finished_at = completion_times(calls)

    killed_at = time.monotonic()
    doomed.process.kill()  # reaped: its sockets are closed when this returns

    _, pending = concurrent.futures.wait(calls, timeout=20)
    assert not pending
    for call in calls:
        with pytest.raises(WorkerLost, match="its connection closed"):
            call.result(timeout=0)
    latest = max(finished_at[id(call)] for call in calls) - killed_at
    assert latest <= 1.0 + 1.5, f"WorkerLost came {latest:.2f} s after the kill"
    assert [info.id for info in client.workers()] == [survivor.id]
    assert client.call("ping", timeout=10) == "pong"

