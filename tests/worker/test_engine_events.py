"""SPEC §11 on the worker's call engine, in memory: events go out before the answers batched with
them, in emit order; without a client the newest ``event_buffer`` are kept and counted."""

from __future__ import annotations

import pytest

from pirate_actors import _codec
from pirate_actors.protocol import Calls, Command, Events

from .test_engine_recovery import Harness

pytestmark = pytest.mark.timeout(10)


def messages(h: Harness) -> list[object]:
    h.engine.flush(h.now)
    out, h.engine.out = h.engine.out, []
    return [h.codec.decode(frames) for frames in out]


def test_an_event_emitted_before_a_procedure_returns_goes_out_before_its_reply() -> None:
    h = Harness()
    h.request(1)
    (call,) = h.hand_over()
    h.engine.started(1)
    h.engine.emit("tick", 1.0, _codec.dumps("first"))
    h.engine.emit("tick", 2.0, _codec.dumps("second"))
    h.finish(call, "done")
    sent = messages(h)
    assert [type(m).__name__ for m in sent] == ["Events", "Calls"]
    events, reply = sent
    assert isinstance(events, Events) and isinstance(reply, Calls)
    assert [(e.topic, _codec.loads(e.data)) for e in events.entries] == [("tick", "first"), ("tick", "second")]
    assert reply.command is Command.REPLY
    assert h.engine.events_sent == 2


def test_events_still_go_first_when_a_full_batch_of_answers_is_sent_early() -> None:
    h = Harness(actors=2)
    h.engine.session.client_max_message_size = 400  # a tiny budget: batches go out early
    h.request(1)
    h.request(2)
    one, two = h.hand_over()
    h.engine.emit("e", 1.0, b"x" * 10)
    h.finish(one, b"y" * 150)
    h.finish(two, b"z" * 150)  # no room for both: the first batch is sent now
    kinds = [type(m).__name__ for m in messages(h)]
    assert kinds[0] == "Events" and kinds.count("Events") == 1


def test_without_a_client_the_newest_event_buffer_events_are_kept_and_the_rest_counted() -> None:
    h = Harness(event_buffer=3)
    h.lose_client()
    for n in range(5):
        h.engine.emit("e", float(n), _codec.dumps(n))
    assert messages(h) == [] and h.engine.lanes.events_dropped == 2
    h.register(h.engine.session.client_session)
    (events,) = [m for m in messages(h) if isinstance(m, Events)]
    assert [_codec.loads(e.data) for e in events.entries] == [2, 3, 4]
