"""The supervised pool (``Pool``) with real Pykka procedure actors: it knows actors, not calls.
It starts ``size`` of them, tells them calls, retires one whose call was cancelled (a fresh one
at once, the old one once its call returns), replaces one that exits (at once if it had served,
after a backoff if it never had), and hands every actor back on close.

Everything synchronises on events and queues (the sink's inbox, gates, ``actor_stopped``),
never on sleeps; the pool's clock is a fake one, so backoffs are read, not waited for."""

from __future__ import annotations

import queue
from typing import Any, Callable, Iterator

import pykka
import pytest

from pirate_actors import _codec
from pirate_actors._procedures import Done, Exited, Run
from pirate_actors._supervisor import Pool
from pirate_actors.protocol import Command

from ..conftest import Testing

pytestmark = pytest.mark.timeout(20)

WAIT = 10.0


class Sink(pykka.ThreadingActor):
    """Stands in for the socket actor: records what the procedure actors tell it."""

    def __init__(self, received: queue.Queue[Any]) -> None:
        super().__init__()
        self.received = received

    def on_receive(self, message: Any) -> None:
        self.received.put(message)


class Harness:
    """A pool of ``Testing`` actors reporting to a :class:`Sink`, on a fake clock."""

    def __init__(self) -> None:
        self.received: queue.Queue[Any] = queue.Queue()
        self.sink = Sink.start(self.received)
        self.now = 100.0
        self.started: list[pykka.ActorRef[Any]] = []
        """Every actor ``start_actor`` made, in order."""
        self.reported: list[str] = []
        """Every urn the pool gave ``on_actor``, in order."""
        self.pools: list[Pool] = []
        self.fail_starts = 0
        """Make the next this many ``start_actor`` calls raise."""

    def start_actor(self) -> pykka.ActorRef[Any]:
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("cannot start")
        ref = Testing.start()
        self.started.append(ref)
        return ref

    def pool(self, size: int) -> Pool:
        pool = Pool(self.start_actor, size, self.sink, self.reported.append, clock=lambda: self.now)
        self.pools.append(pool)
        return pool

    def ref(self, urn: str) -> pykka.ActorRef[Any]:
        (ref,) = [r for r in self.started if r.actor_urn == urn]
        return ref

    def run(self, request_id: int, procedure: str, *args: Any) -> Run:
        return Run(request_id, _codec.dumps_call(procedure, args, {}), self.sink, 2**20)

    def next(self, kind: type, timeout: float = WAIT) -> Any:
        """The next message of type ``kind`` the sink got (others before it are skipped)."""
        while True:
            message = self.received.get(timeout=timeout)
            if isinstance(message, kind):
                return message

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
        for ref in self.started:
            ref.stop()
        self.sink.stop()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def test_fill_starts_size_actors_and_reports_each_urn(harness: Harness) -> None:
    pool = harness.pool(3)
    pool.fill()
    assert pool.live_actors() == 3 and len(harness.started) == 3
    assert harness.reported == [ref.actor_urn for ref in harness.started]
    assert all(ref.is_alive() for ref in harness.started)
    pool.fill()  # already full: nothing more
    assert len(harness.started) == 3


def test_tell_hands_a_call_to_its_actor_which_answers_the_sink(harness: Harness) -> None:
    pool = harness.pool(2)
    pool.fill()
    urn = harness.reported[1]
    run = harness.run(7, "whoami")
    assert pool.tell(urn, run)
    done = harness.next(Done)
    assert run.began  # marked begun before it answered
    assert (done.request_id, done.actor_urn, done.command) == (7, urn, Command.REPLY)
    assert _codec.loads(done.body) == urn


def test_tell_returns_false_for_a_dead_actor(harness: Harness) -> None:
    pool = harness.pool(1)
    pool.fill()
    (urn,) = harness.reported
    harness.ref(urn).stop()
    assert harness.next(Exited).actor_urn == urn
    assert pool.tell(urn, harness.run(1, "ping")) is False
    assert pool.tell("urn:uuid:nobody", harness.run(2, "ping")) is False


def test_retire_starts_a_replacement_at_once_and_stops_the_old_actor_after_its_call_returns(
    harness: Harness, gate: Callable[[], Any],
) -> None:
    pool = harness.pool(1)
    pool.fill()
    (old,) = harness.reported
    name, held = gate()
    assert pool.tell(old, harness.run(1, "hold", name, "kept"))
    held.wait_entered()
    pool.retire(old)
    assert len(harness.reported) == 2 and harness.reported[1] != old  # replaced now
    assert pool.live_actors() == 1
    fresh = harness.reported[1]
    assert pool.tell(fresh, harness.run(2, "whoami"))  # the replacement serves meanwhile
    done = harness.next(Done)
    assert (done.request_id, done.actor_urn) == (2, fresh)
    old_ref = harness.ref(old)
    assert old_ref.is_alive()  # still inside its call
    assert pool.tell(old, harness.run(3, "ping")) is False  # retired: no more calls
    held.opened.set()
    done = harness.next(Done)
    assert (done.request_id, done.actor_urn, _codec.loads(done.body)) == (1, old, "kept")
    exited = harness.next(Exited)
    assert exited.actor_urn == old and exited.unrun == ()
    assert old_ref.actor_stopped.wait(WAIT)
    pool.exited(old)  # its Exited, as the socket actor passes it on: no second replacement
    assert len(harness.reported) == 2 and pool.live_actors() == 1 and pool.replacements == 0


def test_a_live_actor_that_served_and_exited_is_replaced_at_once(harness: Harness) -> None:
    pool = harness.pool(2)
    pool.fill()
    urn = harness.reported[0]
    assert pool.tell(urn, harness.run(1, "ping"))
    harness.next(Done)
    pool.served(urn)
    harness.ref(urn).stop()
    harness.next(Exited)
    pool.exited(urn)
    assert len(harness.reported) == 3 and pool.live_actors() == 2
    assert pool.next_spawn == float("inf") and pool.replacements == 1
    assert harness.started[-1].is_alive()


def test_an_actor_that_exited_without_ever_serving_is_replaced_after_a_backoff(
    harness: Harness,
) -> None:
    pool = harness.pool(1)
    pool.fill()
    (urn,) = harness.reported
    harness.ref(urn).stop()
    harness.next(Exited)
    pool.exited(urn)
    assert harness.reported == [urn] and pool.live_actors() == 0  # not at once
    assert pool.next_spawn > harness.now
    due = pool.next_spawn
    pool.tick(due - 0.001)
    assert harness.reported == [urn]
    harness.now = due
    pool.tick(due)
    assert len(harness.reported) == 2 and pool.live_actors() == 1
    assert pool.next_spawn == float("inf")


def test_backoffs_grow_while_replacements_keep_dying_unserved(harness: Harness) -> None:
    pool = harness.pool(1)
    pool.fill()
    delays = []
    for _ in range(3):
        urn = harness.reported[-1]
        harness.ref(urn).stop()
        harness.next(Exited)
        pool.exited(urn)
        delays.append(pool.next_spawn - harness.now)
        harness.now = pool.next_spawn
        pool.tick(harness.now)
    assert delays[0] < delays[1] < delays[2]


def test_a_start_actor_that_raises_is_tried_again_after_a_backoff(harness: Harness) -> None:
    pool = harness.pool(2)
    harness.fail_starts = 1
    pool.fill()
    assert pool.live_actors() == 1 and pool.next_spawn > harness.now
    harness.now = pool.next_spawn
    pool.tick(harness.now)
    assert pool.live_actors() == 2 and len(harness.reported) == 2


def test_close_returns_every_ref_retired_ones_too_and_stops_them(
    harness: Harness, gate: Callable[[], Any],
) -> None:
    pool = harness.pool(2)
    pool.fill()
    name, held = gate()
    busy = harness.reported[0]
    assert pool.tell(busy, harness.run(1, "hold", name))
    held.wait_entered()
    pool.retire(busy)  # retired, still running its call
    refs = pool.close()
    assert {ref.actor_urn for ref in refs} == set(harness.reported)  # 2 live + 1 retired
    held.opened.set()
    for ref in refs:
        assert ref.actor_stopped.wait(WAIT), f"{ref} did not stop"
    assert pool.live_actors() == 0
    assert pool.tell(harness.reported[1], harness.run(2, "ping")) is False
    pool.exited(harness.reported[1])  # a closed pool replaces nobody
    assert len(harness.reported) == 3
