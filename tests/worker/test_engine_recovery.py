"""SPEC §10 on the worker's call engine, in memory (no sockets, no actors, time is a number):
deadlines that travel, no duplicate runs, outcomes kept across a lost client, their bounds; and
the pool's restart intensity."""

from __future__ import annotations

from typing import Any

import pytest

from pirate_actors import _codec
from pirate_actors._supervisor import Pool
from pirate_actors._worker_engine import CallState, WorkerEngine
from pirate_actors.protocol import (
    DEADLINE,
    RETRYABLE,
    SESSION_SIZE,
    STARTED,
    Calls,
    Command,
    Disconnect,
    Entry,
    FrameCodec,
    Heartbeat,
    Ready,
    WorkerProtocol,
    with_deadline,
)

pytestmark = pytest.mark.timeout(10)

SESSION = b"s" * SESSION_SIZE
OTHER_SESSION = b"o" * SESSION_SIZE


class Harness:
    """A registered worker engine with ``actors`` idle fake actors."""

    def __init__(self, actors: int = 1, **engine_options: Any) -> None:
        self.codec = FrameCodec()
        self.now = 500.0
        session = WorkerProtocol(self.codec, Ready("w", actors * 2, 1.0, 3, ("p",)), self.now)
        self.engine = WorkerEngine(session, None, 3.0, **engine_options)
        self.register(SESSION)
        for n in range(actors):
            self.engine.actor_ready(f"actor-{n}")

    def register(self, session: bytes) -> None:
        s = self.engine.session
        s.connected(self.now)
        if s.state.value == "waiting":
            s.ready_frames(self.now)
        self.engine.receive(self.codec.encode(Heartbeat(10.0, 3, 0, session)), self.now)
        assert s.registered

    def lose_client(self) -> None:
        self.engine.receive(self.codec.encode(Disconnect(True)), self.now)
        assert not self.engine.session.registered

    def request(self, request_id: int, flags: int = RETRYABLE, body: bytes | None = None) -> None:
        body = _codec.dumps_call("p", (), {}) if body is None else body
        self.engine.receive(self.codec.encode(Calls(Command.REQUEST, (Entry(request_id, flags, body),))), self.now)

    def hand_over(self) -> list[Any]:
        """Tell every handed call to its actor (as the socket actor does); the calls told."""
        calls, self.engine.to_tell = self.engine.to_tell, []
        told = [c for c in calls if c.state is CallState.HANDED]
        for call in told:
            self.engine.told(call, self.now)
        return told

    def finish(self, call: Any, result: Any = "r") -> bool:
        assert call.actor is not None
        return self.engine.done(call.request_id, call.actor, Command.REPLY, _codec.dumps(result), self.now)

    def answers(self) -> list[tuple[Command, Entry]]:
        self.engine.flush(self.now)
        out, self.engine.out = self.engine.out, []
        answers = []
        for frames in out:
            message = self.codec.decode(frames)
            if isinstance(message, Calls):
                answers += [(message.command, entry) for entry in message.entries]
        return answers


def test_a_repeat_of_a_finished_retryable_call_gets_the_first_outcome_without_running_again() -> None:
    h = Harness()
    h.request(7)
    (call,) = h.hand_over()
    h.engine.started(7)
    assert h.finish(call, "first")
    assert [(c, e.request_id) for c, e in h.answers()] == [(Command.REPLY, 7)]
    h.request(7)
    assert h.hand_over() == []  # never handed to an actor again
    ((command, entry),) = h.answers()
    assert command is Command.REPLY and entry.flags & STARTED and _codec.loads(entry.body) == "first"
    assert h.engine.duplicates == 1


def test_a_repeat_of_a_call_still_waiting_or_running_is_not_run_twice() -> None:
    h = Harness(actors=1)
    h.request(1)
    h.request(2)  # waits: one actor
    (running,) = h.hand_over()
    h.request(1)
    h.request(2)
    assert h.hand_over() == [] and h.engine.duplicates == 2
    assert h.finish(running)
    (waiting,) = h.hand_over()
    assert waiting.request_id == 2


def test_the_same_request_id_from_another_client_session_is_another_call() -> None:
    h = Harness()
    h.request(7)
    (call,) = h.hand_over()
    h.finish(call)
    h.answers()
    h.lose_client()
    h.register(OTHER_SESSION)
    h.request(7)
    assert len(h.hand_over()) == 1 and h.engine.duplicates == 0


def test_a_retryable_call_running_when_its_client_is_lost_finishes_and_its_outcome_is_kept() -> None:
    h = Harness()
    h.request(7)
    (call,) = h.hand_over()
    h.engine.started(7)
    h.lose_client()
    assert h.engine.to_retire == ["actor-0"]  # a fresh actor serves whoever comes next
    assert not call.run.cancelled  # the procedure runs on, undisturbed
    assert h.engine.running == 0 and list(h.engine.orphans) == [(SESSION, 7)]
    assert not h.finish(call, "kept")  # nobody to answer now ...
    h.register(SESSION)  # ... the partition heals; the client asks again
    h.request(7)
    assert h.hand_over() == []
    ((command, entry),) = h.answers()
    assert _codec.loads(entry.body) == "kept" and h.engine.duplicates == 1


def test_a_retryable_call_asked_for_again_while_it_still_runs_is_answered_when_it_returns() -> None:
    h = Harness()
    h.request(7)
    (call,) = h.hand_over()
    h.engine.started(7)
    h.lose_client()
    h.register(SESSION)
    h.engine.actor_ready("replacement")
    h.request(7)  # still running on its retired actor: adopted, not run again
    assert h.hand_over() == [] and h.engine.running == 1
    answers = h.answers()
    assert [(c, e.flags) for c, e in answers] == [(Command.PARTIAL, STARTED)]  # "started", anew
    assert h.finish(call, "late")
    ((command, entry),) = h.answers()
    assert command is Command.REPLY and _codec.loads(entry.body) == "late"
    assert h.engine.idle_actors() == 1  # the retired actor does not come back to work


def test_a_call_that_is_not_retryable_is_abandoned_with_its_client() -> None:
    h = Harness()
    h.request(7, flags=0)
    (call,) = h.hand_over()
    h.lose_client()
    assert call.run.cancelled and not h.engine.orphans
    h.finish(call)
    assert not h.engine.outcomes


def test_kept_outcomes_expire_after_result_ttl() -> None:
    h = Harness(result_ttl=5.0)
    h.request(7)
    (call,) = h.hand_over()
    h.finish(call)
    assert h.engine.deadline <= h.now + 5.0
    h.now += 5.1
    h.engine.tick(h.now)
    assert not h.engine.outcomes
    h.request(7)
    assert len(h.hand_over()) == 1  # forgotten: a late repeat runs again


def test_kept_outcomes_are_bounded_by_result_cache_size_oldest_first() -> None:
    h = Harness(result_cache_size=3000)
    for request_id in range(1, 6):
        h.request(request_id)
        (call,) = h.hand_over()
        h.finish(call, b"x" * 1000)
    assert [key[1] for key in h.engine.outcomes] == [4, 5]


def test_a_request_whose_deadline_has_passed_never_reaches_an_actor() -> None:
    h = Harness()
    h.request(7, flags=DEADLINE, body=with_deadline(_codec.dumps_call("p", (), {}), -0.1))
    assert h.hand_over() == []
    ((command, entry),) = h.answers()
    assert command is Command.ERROR and entry.request_id == 7
    kind, error = _codec.load_error(entry.body)
    assert type(error).__name__ == "CallTimeout"


def test_a_deadline_travels_as_seconds_left_and_becomes_the_workers_own_clock() -> None:
    h = Harness()
    h.request(7, flags=DEADLINE, body=with_deadline(_codec.dumps_call("p", (), {}), 2.5))
    (call,) = h.hand_over()
    assert call.run.deadline == pytest.approx(h.now + 2.5)
    assert _codec.loads(call.run.body) == ("p", (), {})


# ----------------------------------------------------------------------------- restart intensity


class FakeRef:
    def __init__(self, n: int) -> None:
        self.actor_urn = f"actor-{n}"

    def stop(self, block: bool = True) -> None:
        pass


def make_pool(clock: list[float], max_restarts: int = 3) -> tuple[Pool, list[str]]:
    started: list[str] = []
    count = iter(range(1000))

    def start() -> Any:
        return FakeRef(next(count))

    pool = Pool(start, 2, None, started.append, clock=lambda: clock[0],  # type: ignore[arg-type]
                max_restarts=max_restarts, restart_window=10.0)
    pool.fill()
    return pool, started


def test_more_than_max_restarts_actor_deaths_within_restart_window_make_the_pool_give_up() -> None:
    clock = [100.0]
    pool, started = make_pool(clock, max_restarts=3)
    for _ in range(3):
        pool.served(started[-1])
        pool.exited(started[-1], "procedure 'p' raised SystemExit()")
        clock[0] += 1.0
    assert pool.crashed is None and pool.live_actors() == 2  # three deaths: still replaced
    pool.exited(started[-1], "procedure 'p' raised SystemExit()")
    assert pool.crashed is not None and "SystemExit" in pool.crashed
    assert len(started) == 5  # no replacement for the fourth


def test_deaths_spread_wider_than_the_restart_window_never_add_up_to_a_crash() -> None:
    clock = [100.0]
    pool, started = make_pool(clock, max_restarts=3)
    for _ in range(20):
        pool.served(started[-1])
        pool.exited(started[-1])
        clock[0] += 4.0  # at most three within any 10 s
    assert pool.crashed is None and pool.live_actors() == 2


def test_retired_actors_do_not_count_as_deaths() -> None:
    clock = [100.0]
    pool, started = make_pool(clock, max_restarts=1)
    for _ in range(5):
        urn = started[-1]
        pool.retire(urn)
        pool.exited(urn)
    assert pool.crashed is None and pool.live_actors() == 2


def test_a_new_connection_gets_ready_at_once_even_if_a_heartbeat_registers_the_worker_first() -> None:
    # A client that froze, and was given up, thaws: its HEARTBEAT may come in on the worker's
    # fresh connection before the worker's next tick. The READY with the new incarnation must
    # still go out, or the client never learns its earlier calls were abandoned.
    h = Harness()
    h.lose_client()
    h.engine.out.clear()
    h.engine.connection(True, h.now)
    h.engine.receive(h.codec.encode(Heartbeat(10.0, 3, 0, SESSION)), h.now)
    assert h.engine.session.registered
    readies = [m for m in (h.codec.decode(f) for f in h.engine.out) if isinstance(m, Ready)]
    assert [r.incarnation for r in readies] == [1]


def test_a_repeat_of_a_finished_call_is_answered_from_its_kept_outcome_even_when_the_worker_is_full() -> None:
    # Found by review: the capacity check came first, so the repeat was refused and re-run elsewhere.
    h = Harness(actors=1)
    h.request(7)
    (call,) = h.hand_over()
    h.finish(call, "kept")
    h.answers()
    for request_id in range(100, 100 + h.engine.offer):  # fill the worker
        h.request(request_id)
    h.request(7)
    answers = {entry.request_id: (command, entry) for command, entry in h.answers()}
    command, entry = answers[7]
    assert command is Command.REPLY and _codec.loads(entry.body) == "kept"


def test_an_actor_whose_procedure_raised_a_base_exception_gets_no_next_call() -> None:
    # Found by review: its Done came before its own stop, and it went back to work meanwhile.
    h = Harness(actors=1)
    h.request(1)
    h.request(2)
    (call,) = h.hand_over()
    body = _codec.dump_exception(SystemExit(3))
    assert h.engine.done(1, call.actor, Command.ERROR, body, h.now, fatal=True)
    assert h.hand_over() == [] and h.engine.idle_actors() == 0  # 2 waits for the replacement
    h.engine.lanes.actor_exited(call.actor, ())
    h.engine.actor_ready("replacement")
    (second,) = h.hand_over()
    assert second.request_id == 2 and second.actor == "replacement"


def test_a_worker_going_down_answers_every_call_before_its_final_goodbye() -> None:
    # Found by review: a socket actor that failed while leaving said goodbye without answering
    # its running calls, and the client re-queued calls that may have run.
    h = Harness(actors=1)
    h.request(1, flags=0)
    h.request(2, flags=0)
    h.hand_over()  # 1 runs, 2 waits
    h.engine.finish(h.now)
    sent = [h.codec.decode(f) for f in h.engine.out]
    assert isinstance(sent[-1], Disconnect) and sent[-1].final
    kinds = {}
    for message in sent[:-1]:
        if isinstance(message, Calls) and message.command is Command.ERROR:
            for entry in message.entries:
                kinds[entry.request_id] = _codec.load_error(entry.body)[0]
    assert kinds == {1: "abandoned", 2: "not_run"}
