"""SPEC §2 and §5: ``Worker.stop()`` tells the client it is leaving, lets running calls finish,
and answers the calls it holds but never started with "not run"; the client re-queues those to
another worker, so every call still ends with its result.

Both workers run in this process so that the test can hold their procedures at a gate.
"""

from __future__ import annotations

import logging
import threading
import time

import pykka
import pytest

from pirate_actors import Worker, WorkerLost
from tests.helpers import FAST
from tests.helpers.procedures import RUN_LOG, FaultProcedures, open_gate
from tests.helpers.sync import started_event, wait_until


@pytest.mark.timeout(40)
def test_a_stopping_worker_finishes_its_running_calls_and_hands_back_its_prefetched_ones_which_the_client_completes_on_another_worker(
    make_client, make_worker
):
    client = make_client(**FAST)
    leaving = make_worker(client.endpoint, pool_size=2, prefetch=2, **FAST)
    client.wait_for_worker(timeout=20)
    calls = [client.submit("hold", "gate", i) for i in range(4)]
    started = [started_event(call) for call in calls]
    wait_until(lambda: sum(event.is_set() for event in started) == 2, 20, "two calls running")
    wait_until(lambda: all(call.worker == leaving.id for call in calls), 20, "all four dispatched")
    running = [call for call, event in zip(calls, started) if event.is_set()]
    prefetched = [call for call, event in zip(calls, started) if not event.is_set()]

    staying = make_worker(client.endpoint, pool_size=3, **FAST)
    wait_until(lambda: len(client.workers()) == 2, 20, "the second worker registered")
    stopper = threading.Thread(target=leaving.stop, kwargs={"timeout": 30}, name="stop")
    stopper.start()

    # The prefetched calls come back "not run" and start on the other worker...
    for call in prefetched:
        assert started_event(call).wait(20), "a handed-back call never started elsewhere"
        assert call.worker == staying.id
    # ... the leaving worker takes no new calls, and keeps waiting for its running ones.
    assert [info.id for info in client.workers()] == [staying.id]
    late = client.submit("ping")
    assert late.result(timeout=20) == "pong"
    assert late.worker == staying.id
    assert stopper.is_alive() and leaving.running

    open_gate("gate")
    assert [call.result(timeout=20) for call in calls] == [0, 1, 2, 3]
    for call in running:
        assert call.worker == leaving.id
    for call in calls:
        assert call.partials == ["started"]  # a handed-back call started exactly once
    stopper.join(20)
    assert not stopper.is_alive() and not leaving.running
    assert sorted(RUN_LOG) == [0, 1, 2, 3]  # each call ran exactly once


@pytest.mark.timeout(40)
def test_a_worker_whose_running_calls_outlast_the_stop_timeout_leaves_anyway_and_those_calls_fail_with_worker_lost_at_once(
    make_client, make_worker
):
    # Slow heartbeats: the client must learn of the departure from the worker, not from silence.
    client = make_client(heartbeat=5.0)
    leaving = make_worker(client.endpoint, pool_size=1, heartbeat=5.0)
    client.wait_for_worker(timeout=20)
    stuck = client.submit("hold", "never")
    assert started_event(stuck).wait(20)
    began = time.monotonic()
    leaving.stop(timeout=0.5)
    assert time.monotonic() - began <= 0.5 + 2.0
    assert not leaving.running
    with pytest.raises(WorkerLost):
        stuck.result(timeout=2.0)
    assert client.workers() == []


class Lingering(FaultProcedures):
    """Its own class, so that the test can see when its actors are gone."""


@pytest.mark.timeout(40)
def test_a_call_still_running_when_its_worker_stopped_ends_quietly_when_it_returns(
    make_client, caplog
):
    client = make_client(heartbeat=5.0)
    worker = Worker(Lingering, client.endpoint, pool_size=1, heartbeat=5.0).start()
    try:
        client.wait_for_worker(timeout=20)
        stuck = client.submit("hold", "late")
        assert started_event(stuck).wait(20)
    finally:
        worker.stop(timeout=0.2)  # the call outlasts that
    assert not worker.running
    with pytest.raises(WorkerLost):
        stuck.result(timeout=5)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        open_gate("late")  # the procedure returns now, its worker long gone
        wait_until(lambda: not pykka.ActorRegistry.get_by_class(Lingering), 10, "the actor ended")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


@pytest.mark.timeout(40)
def test_calls_handed_back_as_not_run_are_re_queued_in_their_submission_order(make_client, make_worker):
    client = make_client(**FAST)
    leaving = make_worker(client.endpoint, pool_size=1, prefetch=3, **FAST)
    client.wait_for_worker(timeout=20)
    calls = [client.submit("hold", "gate", i) for i in range(4)]
    assert started_event(calls[0]).wait(20)
    wait_until(lambda: all(call.worker == leaving.id for call in calls), 20, "all four dispatched")
    make_worker(client.endpoint, pool_size=1, prefetch=0, **FAST)  # takes one call at a time
    wait_until(lambda: len(client.workers()) == 2, 20, "the second worker registered")
    stopper = threading.Thread(target=leaving.stop, kwargs={"timeout": 30}, name="stop")
    stopper.start()
    wait_until(lambda: len(RUN_LOG) == 2, 20, "a handed-back call started on the other worker")

    open_gate("gate")
    assert [call.result(timeout=20) for call in calls] == [0, 1, 2, 3]
    stopper.join(20)
    assert RUN_LOG == [0, 1, 2, 3], "calls 1–3 should run in the order they were submitted"
