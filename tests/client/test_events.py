"""SPEC §11 over real sockets: events a worker emits reach its client's subscribers, in order,
before the reply of the call that emitted them; filters, bounded queues, and the buffer a worker
keeps while no client listens."""

from __future__ import annotations

import queue
import threading
from typing import Any

import pytest

from pirate_actors import Client, Event, Worker
from tests.helpers.procedures import FaultProcedures
from tests.helpers.sync import wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pair() -> Any:
    client = Client("tcp://127.0.0.1:*", heartbeat=0.2).start()
    worker = Worker(FaultProcedures, client.endpoint, pool_size=2, heartbeat=0.2).start()
    client.wait_for_worker(timeout=10)
    yield client, worker
    worker.stop(timeout=1)
    client.close()


def test_a_thousand_events_arrive_in_the_order_they_were_emitted_and_before_the_reply(pair: Any) -> None:
    client, worker = pair
    seen: list[Event] = []
    subscription = client.subscribe(seen.append, "tick")
    future = client.submit("emit_many", 1000, "tick")
    at_reply: list[int] = []
    future.add_done_callback(lambda f: at_reply.append(len(seen)))  # on the client thread
    assert future.result(timeout=20) == 1000
    wait_until(lambda: at_reply, 10, "the done-callback ran")
    assert at_reply == [1000]  # every event was delivered before the reply
    assert [e.data for e in seen] == list(range(1000))
    assert {e.topic for e in seen} == {"tick"} and {e.worker for e in seen} == {worker.id}
    assert all(a.time <= b.time for a, b in zip(seen, seen[1:]))
    subscription.close()
    assert worker.stats()["events_sent"] == 1000


def test_subscribers_get_only_topics_that_start_with_their_prefix(pair: Any) -> None:
    client, _worker = pair
    ticks = client.events("tick")
    everything = client.events()
    client.call("emit_many", 3, "tock", timeout=10)
    client.call("emit_many", 2, "ticker", timeout=10)
    assert [ticks.get(timeout=5).data for _ in range(2)] == [0, 1]
    assert [e.topic for e in (everything.get(timeout=5) for _ in range(5))] == ["tock"] * 3 + ["ticker"] * 2
    with pytest.raises(queue.Empty):
        ticks.get(timeout=0.05)


def test_a_full_event_queue_drops_the_oldest_and_counts_them(pair: Any) -> None:
    client, _worker = pair
    events = client.events(maxsize=10)
    client.call("emit_many", 50, timeout=10)
    wait_until(lambda: events.qsize() + events.dropped == 50, 10, "all 50 delivered")
    assert events.dropped == 40
    assert [events.get(timeout=1).data for _ in range(10)] == list(range(40, 50))


def test_a_worker_emits_from_any_thread_of_its_process(pair: Any) -> None:
    client, worker = pair
    events = client.events("from-thread")
    thread = threading.Thread(target=lambda: [worker.emit("from-thread", n) for n in range(5)])
    thread.start()
    thread.join()
    assert [events.get(timeout=5).data for _ in range(5)] == list(range(5))


def test_a_closed_subscription_gets_nothing_more_and_iteration_ends_when_the_client_closes() -> None:
    client = Client("tcp://127.0.0.1:*", heartbeat=0.2).start()
    worker = Worker(FaultProcedures, client.endpoint, pool_size=1, heartbeat=0.2).start()
    try:
        client.wait_for_worker(timeout=10)
        seen: list[Event] = []
        subscription = client.subscribe(seen.append)
        events = client.events()
        client.call("emit_many", 2, timeout=10)
        wait_until(lambda: len(seen) == 2, 10, "two events seen")
        subscription.close()
        client.call("emit_many", 2, timeout=10)
        assert [events.get(timeout=5).data for _ in range(4)] == [0, 1, 0, 1]
        assert len(seen) == 2
    finally:
        worker.stop(timeout=1)
        client.close()
    assert list(events) == []  # closed with the client: iteration ends at once


def test_a_worker_with_no_client_keeps_the_newest_events_up_to_event_buffer_and_sends_them_on_registering() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    worker = Worker(FaultProcedures, endpoint, pool_size=1, heartbeat=0.2, event_buffer=5).start()
    try:
        for n in range(8):
            worker.emit("early", n)
        wait_until(lambda: worker.stats()["events_dropped"] == 3, 10, "three events dropped")
        assert worker.stats()["events_buffered"] == 5
        with Client(endpoint, heartbeat=0.2) as client:
            events = client.events("early")
            client.wait_for_worker(timeout=10)
            assert [events.get(timeout=5).data for _ in range(5)] == [3, 4, 5, 6, 7]
            assert worker.stats()["events_sent"] == 5
    finally:
        worker.stop(timeout=1)


def test_a_procedure_outside_a_worker_cannot_emit() -> None:
    actor = FaultProcedures.start()
    try:
        with pytest.raises(RuntimeError):
            actor.proxy().emit("x", 1).get(timeout=5)
    finally:
        actor.stop()
