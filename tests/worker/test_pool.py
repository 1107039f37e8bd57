"""The pool hands calls to their actors only in ``send()``, which the socket thread calls just
before it sleeps; a call that never reached its actor is taken back, never failed or retired."""

from __future__ import annotations

import queue
from typing import Any, Callable, Iterator

import pykka
import pytest

from pirate_actors import _codec
from pirate_actors._procedures import Done, Run
from pirate_actors._supervisor import Pool

from ..conftest import Testing

pytestmark = pytest.mark.timeout(20)


class Sink(pykka.ThreadingActor):
    """Stands in for the socket actor: records what the procedure actors tell it."""

    def __init__(self, received: queue.Queue[Any]) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> None:
        self.received.put(message)


@pytest.fixture
def harness() -> Iterator[tuple[Callable[[int], Pool], queue.Queue[Any], list[pykka.ActorRef[Any]]]]:
    received: queue.Queue[Any] = queue.Queue()
    sink = Sink.start(received)
    started: list[pykka.ActorRef[Any]] = []
    pools: list[Pool] = []

    def start_actor() -> pykka.ActorRef[Any]:
        ref = Testing.start()
        started.append(ref)
        return ref

    def make(size: int) -> Pool:
        pool = Pool(start_actor, size, sink)
        pools.append(pool)
        return pool

    yield make, received, started
    for pool in pools:
        for ref in pool.close():
            ref.stop()
    sink.stop()


def run(request_id: int, sink: pykka.ActorRef[Any], procedure: str = "whoami") -> Run:
    return Run(request_id, _codec.dumps_call(procedure, (), {}), sink, 2**20)


def done(received: queue.Queue[Any]) -> Done:
    while True:
        message = received.get(timeout=10)
        if isinstance(message, Done):
            return message


def test_a_dispatched_call_reaches_its_actor_only_when_the_pool_sends(harness: Any) -> None:
    make, received, started = harness
    pool = make(1)
    pool.submit(run(1, pool._sink))
    assert pool.running == 1 and 1 not in pool.starting
    assert started[0].actor_inbox.empty()  # dispatched, not yet told
    pool.send()
    assert 1 in pool.starting  # told: its Started is awaited
    answer = done(received)
    assert answer.request_id == 1 and answer.actor_urn == started[0].actor_urn
    assert pool.finished(1, answer.actor_urn)


def test_a_call_cancelled_before_it_was_sent_leaves_its_actor_idle(harness: Any) -> None:
    make, received, started = harness
    pool = make(1)
    pool.submit(run(1, pool._sink))
    pool.cancel(1)
    assert pool.running == 0 and not pool.holds(1) and not pool.starting
    pool.send()  # nothing to hand over
    assert started[0].actor_inbox.empty()
    pool.submit(run(2, pool._sink))
    pool.send()
    answer = done(received)
    assert answer.request_id == 2
    assert answer.actor_urn == started[0].actor_urn  # the same actor: nobody was retired
    assert len(started) == 1


def test_a_call_dispatched_to_an_actor_that_exited_goes_back_to_the_queue_not_failed(
    harness: Any,
) -> None:
    make, received, started = harness
    pool = make(1)
    pool.submit(run(1, pool._sink))
    orphan = pool.exited(started[0].actor_urn, ())  # the actor ended before it was told
    assert orphan is None  # nothing ran: no ActorDeadError for the caller
    assert 1 in pool.waiting and pool.running == 0


def test_a_call_whose_actor_is_dead_when_the_pool_sends_is_run_by_a_live_one(harness: Any) -> None:
    make, received, started = harness
    pool = make(2)
    pool.submit(run(1, pool._sink))  # to the first idle actor
    pool.submit(run(2, pool._sink))  # to the second
    first, second = started
    first.stop()
    pool.send()
    # Call 1 is taken back, not failed, and still starts first: on the live actor, while
    # call 2 (taken back with it, to keep the order) waits at the head of the queue.
    assert list(pool.waiting) == [2]
    answer = done(received)
    assert (answer.request_id, answer.actor_urn) == (1, second.actor_urn)
    assert pool.finished(1, second.actor_urn)
    pool.send()
    answer = done(received)
    assert (answer.request_id, answer.actor_urn) == (2, second.actor_urn)


def test_calls_taken_back_from_dead_actors_still_start_in_arrival_order(harness: Any) -> None:
    make, received, started = harness
    pool = make(3)
    for request_id in (1, 2, 3):
        pool.submit(run(request_id, pool._sink))  # 1, 2, 3 to the first, second, third actor
    first, second, third = started
    first.stop()
    second.stop()
    pool.send()
    assert list(pool.waiting) == [2, 3]  # 1 went to the live actor; 2 and 3 wait, in order
    for request_id in (1, 2, 3):
        answer = done(received)
        assert (answer.request_id, answer.actor_urn) == (request_id, third.actor_urn)
        assert pool.finished(request_id, third.actor_urn)
        pool.send()


def test_closing_the_pool_marks_running_calls_cancelled_so_their_reports_go_quiet(
    harness: Any, gate: Any,
) -> None:
    make, received, started = harness
    pool = make(1)
    name, held = gate()
    pool.submit(Run(1, _codec.dumps_call("until_cancelled", (name,), {}), pool._sink, 2**20))
    pool.send()
    held.wait_entered()
    pool.close()
    assert held.opened.wait(10), "the procedure never saw that nobody waits any more"
