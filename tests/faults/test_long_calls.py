"""SPEC §5: heartbeats never wait behind work — a procedure may run for minutes while both sides
stay connected. The worker runs in its own process with heartbeat 0.2 s and liveness 3, as does
the client, so a single stall of 0.6 s on either side would be a (false) death: the call would
fail with WorkerLost (the client gave up on the worker, or the worker on the client and abandoned
its calls)."""

from __future__ import annotations

import pytest

from tests.helpers import FAST


def _long_calls_complete(make_client, spawn_worker, seconds):
    client = make_client(**FAST)
    worker = spawn_worker(client.endpoint, "patient", pool_size=2, **FAST)
    client.wait_for_worker(timeout=20)
    spinning = client.submit("busy", seconds)  # pure Python: holds the GIL between switches
    sleeping = client.submit("sleep", seconds)
    assert sleeping.result(timeout=seconds + 30) is True
    assert spinning.result(timeout=30) > 0
    assert spinning.worker == sleeping.worker == worker.id
    assert spinning.partials[0] == "started"
    assert len(spinning.partials) >= int(seconds) - 1  # one report() a second came through
    assert [info.id for info in client.workers()] == [worker.id]
    assert client.call("ping", timeout=10) == "pong"


@pytest.mark.timeout(60)
def test_a_procedure_running_10_s_with_heartbeat_0_2_s_and_liveness_3_on_both_sides_completes_without_a_false_death(
    make_client, spawn_worker
):
    _long_calls_complete(make_client, spawn_worker, 10.0)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_procedure_running_a_minute_with_heartbeat_0_2_s_and_liveness_3_on_both_sides_completes_without_a_false_death(
    make_client, spawn_worker
):
    _long_calls_complete(make_client, spawn_worker, 60.0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "client_settings, worker_settings",
    [((0.2, 3), (2.0, 3)), ((2.0, 3), (0.2, 3))],
    ids=["fast-client-slow-worker", "slow-client-fast-worker"],
)
def test_a_call_spanning_many_heartbeats_completes_without_a_false_death_when_client_and_worker_heartbeat_differently(
    make_client, spawn_worker, client_settings, worker_settings
):
    """Each side judges the other by the interval the *other* announced (SPEC §5)."""
    client = make_client(heartbeat=client_settings[0], liveness=client_settings[1])
    worker = spawn_worker(
        client.endpoint, "mismatched", pool_size=2,
        heartbeat=worker_settings[0], liveness=worker_settings[1],
    )
    client.wait_for_worker(timeout=20)
    spinning = client.submit("busy", 2.5)
    sleeping = client.submit("sleep", 2.5)
    assert sleeping.result(timeout=30) is True
    assert spinning.result(timeout=30) > 0
    assert [info.id for info in client.workers()] == [worker.id]
    assert client.call("ping", timeout=10) == "pong"


@pytest.mark.timeout(60)
def test_a_procedure_that_reports_as_fast_as_it_can_for_3_s_completes_without_a_false_death_and_its_partials_arrive_in_order(
    make_client, spawn_worker
):
    client = make_client(**FAST)
    worker = spawn_worker(client.endpoint, "chatty", pool_size=2, **FAST)
    client.wait_for_worker(timeout=20)
    chatty = client.submit("chatty", 3.0)
    count = chatty.result(timeout=40)
    assert chatty.partials == ["started", *range(count)]
    assert [info.id for info in client.workers()] == [worker.id]
