"""The client's call engine alone, in memory: READYs and answers are fed to it as frames, time
is a number, and what it would send is read back from ``engine.out``. No sockets, no threads."""

from __future__ import annotations

import concurrent.futures

import pytest

from pirate_actors import CallTimeout, NoWorkerError, WorkerLost
from pirate_actors import _codec
from pirate_actors._client_engine import Call, ClientEngine
from pirate_actors._future import CallFuture
from pirate_actors.protocol import (
    RETRYABLE,
    ClientProtocol,
    Calls,
    Command,
    Disconnect,
    Entry,
    FrameCodec,
    Heartbeat,
    Ready,
    Seal,
)

pytestmark = pytest.mark.timeout(10)

KEY = b"k" * 32


class Harness:
    """One engine, fake workers that speak through frames, and a clock that is a number."""

    def __init__(self, *, key: bytes | None = None, max_message_size: int = 2**20, timeout: float = 5.0):
        self.codec = FrameCodec(key, max_message_size)
        self.now = 1000.0
        self.engine = ClientEngine(ClientProtocol(self.codec, 1.0, 3), timeout, self.now)
        self.ids = iter(range(1, 10**6))

    def ready(self, peer: bytes, procedures: tuple[str, ...], capacity: int = 1, **extra: object) -> None:
        ready = Ready(peer.decode(), capacity, 1.0, 3, procedures, **extra)  # type: ignore[arg-type]
        nonce = int.from_bytes(peer.ljust(8, b"."), "big") | 1  # this fake worker's session
        self.engine.receive(peer, self.codec.encode(ready, Seal(nonce, 0, 1)), self.now)
        acknowledgement = self.engine.out.pop()
        assert acknowledgement[0] == peer and not self.engine.out
        if self.codec.key is not None:
            # A signed registration completes when the worker answers with both nonces.
            _, seal = self.codec.open(acknowledgement[1])
            assert seal is not None and seal.receiver == nonce
            proof = self.codec.encode(Heartbeat(1.0, 3), Seal(nonce, seal.sender, 2))
            self.engine.receive(peer, proof, self.now)
            assert not self.engine.out

    def submit(self, procedure: str, *args: object, **options: object) -> CallFuture:
        request_id = next(self.ids)
        future = CallFuture(procedure, None, request_id)
        body = _codec.dumps_call(procedure, args, {})
        self.engine.submit(Call(request_id, procedure, body, future, self.now, **options), self.now)  # type: ignore[arg-type]
        return future

    def flush(self) -> list[tuple[bytes, Calls]]:
        """Flush the engine; the call-carrying messages it would send, decoded."""
        self.engine.flush(self.now)
        out, self.engine.out = self.engine.out, []
        sent = []
        for peer, frames in out:
            message = self.codec.decode(frames)
            if isinstance(message, Calls):
                sent.append((peer, message))
        return sent

    def requests(self) -> dict[bytes, list[int]]:
        return {peer: [e.request_id for e in m.entries] for peer, m in self.flush() if m.command is Command.REQUEST}

    def reply(self, peer: bytes, request_id: int, result: object) -> None:
        frames = self.codec.encode(Calls(Command.REPLY, (Entry(request_id, 0, _codec.dumps(result)),)))
        self.engine.receive(peer, frames, self.now)

    def settle(self) -> None:
        while self.engine.settled:
            future, result, exception = self.engine.settled.popleft()
            if exception is None:
                future.set_result(result)
            else:
                future.set_exception(exception)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.engine.tick(self.now)
        self.settle()


def test_a_call_that_only_a_busy_worker_serves_holds_back_no_call_an_idle_worker_serves() -> None:
    h = Harness()
    h.ready(b"slow-worker", ("slow",), capacity=1)
    h.ready(b"fast-worker", ("fast",), capacity=1)
    first = h.submit("slow")
    assert h.requests() == {b"slow-worker": [first.request_id]}
    blocked = h.submit("slow")  # only slow-worker serves it, and it is full
    fast = h.submit("fast")
    assert h.requests() == {b"fast-worker": [fast.request_id]}
    assert h.engine.queued == 1 and blocked.request_id in h.engine.calls
    h.reply(b"slow-worker", first.request_id, "done")
    assert h.requests() == {b"slow-worker": [blocked.request_id]}


def test_calls_of_one_procedure_keep_their_submission_order() -> None:
    h = Harness()
    calls = [h.submit("p") for _ in range(5)]
    h.ready(b"w", ("p",), capacity=2)
    assert h.requests() == {b"w": [calls[0].request_id, calls[1].request_id]}
    h.reply(b"w", calls[1].request_id, None)
    assert h.requests() == {b"w": [calls[2].request_id]}


def test_queued_and_in_flight_are_derived_and_never_negative_after_cancelling_queued_calls() -> None:
    h = Harness()
    futures = [h.submit("p") for _ in range(3)]
    h.engine.cancel(futures[0].request_id)
    h.engine.cancel(futures[1].request_id)
    assert (h.engine.queued, h.engine.in_flight) == (1, 0)
    h.ready(b"w", ("p",), capacity=4)
    assert h.requests() == {b"w": [futures[2].request_id]}  # the cancelled ones never go out
    assert (h.engine.queued, h.engine.in_flight) == (0, 1)


@pytest.mark.parametrize("key", [None, KEY], ids=["unsigned", "signed"])
def test_a_request_exactly_at_max_message_size_is_sent_and_one_byte_more_is_not(key: bytes | None) -> None:
    limit = 4096
    h = Harness(key=key, max_message_size=limit)
    assert h.codec.overhead(1) == (89 if key else 33)  # 24-byte seal + 32-byte MAC with a key
    h.ready(b"w", ("echo",), capacity=2, max_message_size=limit)
    body = b"x" * h.codec.max_body()
    ok = CallFuture("echo", None, 1)
    h.engine.submit(Call(1, "echo", body, ok, h.now), h.now)
    too_big = CallFuture("echo", None, 2)
    h.engine.submit(Call(2, "echo", body + b"x", too_big, h.now), h.now)
    h.engine.flush(h.now)
    (peer, frames), = h.engine.out
    assert peer == b"w" and len(frames[0]) == limit  # exactly at the cap, and sent
    h.settle()
    assert 1 in h.engine.calls and "exceeds the max_message_size" in str(too_big.exception(0))


def test_a_batch_is_split_so_that_no_message_exceeds_max_message_size() -> None:
    h = Harness(max_message_size=4096)
    h.ready(b"w", ("echo",), capacity=10, max_message_size=4096)
    for request_id in range(1, 6):
        h.engine.submit(Call(request_id, "echo", b"y" * 1500, CallFuture("echo"), h.now), h.now)
    h.engine.flush(h.now)
    sizes = [len(frames[0]) for _, frames in h.engine.out]
    assert len(sizes) == 3 and max(sizes) <= 4096


def test_a_lost_worker_fails_its_calls_with_worker_lost_and_touches_no_other_call() -> None:
    h = Harness()
    h.ready(b"a", ("p",), capacity=1)
    h.ready(b"b", ("p",), capacity=1)
    on_a, on_b = h.submit("p"), h.submit("p")
    sent = h.requests()
    assert sorted(sent) == [b"a", b"b"]
    lost = on_a if sent[b"a"] == [on_a.request_id] else on_b
    peer = b"a" if lost is on_a else b"b"
    h.engine.receive(peer, h.codec.encode(Disconnect(True)), h.now)
    h.settle()
    with pytest.raises(WorkerLost, match="lost before replying"):
        lost.result(0)
    other = on_b if lost is on_a else on_a
    assert not other.done() and h.engine.in_flight == 1


def test_queued_calls_fail_with_no_worker_error_after_the_timeout_with_no_worker() -> None:
    h = Harness(timeout=2.0)
    future = h.submit("p")
    assert h.engine.deadline == pytest.approx(h.now + 2.0)
    h.advance(1.9)
    assert not future.done()
    h.advance(0.2)
    with pytest.raises(NoWorkerError):
        future.result(0)
    assert (h.engine.queued, h.engine.in_flight) == (0, 0)


def test_a_call_past_its_deadline_fails_with_call_timeout_and_its_worker_is_told_to_cancel() -> None:
    h = Harness()
    h.ready(b"w", ("p",), capacity=1)
    future = h.submit("p", deadline=h.now + 1.0)
    assert h.requests() == {b"w": [future.request_id]}
    h.advance(1.1)
    with pytest.raises(CallTimeout):
        future.result(0)
    (peer, cancel), = h.flush()
    assert peer == b"w" and cancel.command is Command.CANCEL
    assert [e.request_id for e in cancel.entries] == [future.request_id]


def test_a_call_to_an_idempotent_procedure_goes_to_another_worker_when_its_worker_is_lost() -> None:
    h = Harness()
    h.ready(b"a", ("p",), capacity=1, idempotent=("p",))
    future = h.submit("p")
    assert h.requests() == {b"a": [future.request_id]}
    h.ready(b"b", ("p",), capacity=1, idempotent=("p",))
    h.engine.receive(b"a", h.codec.encode(Disconnect(True)), h.now)
    assert h.requests() == {b"b": [future.request_id]}
    assert future.attempts == ("a", "b") and h.engine.retried == 1


def test_a_cancelled_call_future_counts_as_done_for_wait_and_as_completed() -> None:
    futures = [CallFuture("p", None, n) for n in range(3)]
    assert futures[1].cancel()
    done, pending = concurrent.futures.wait(futures, timeout=0)
    assert done == {futures[1]} and len(pending) == 2
    assert next(concurrent.futures.as_completed(futures, timeout=1)) is futures[1]


def test_a_call_answered_not_run_keeps_its_retries_for_real_losses() -> None:
    # Found by review: a "not run" bounce used to count as a lost attempt.
    from pirate_actors._codec import ErrorKind, dump_error

    h = Harness()
    h.engine.retries = 1
    h.ready(b"a", ("p",), capacity=1, idempotent=("p",))
    future = h.submit("p")
    assert h.requests() == {b"a": [future.request_id]}
    not_run = dump_error(ErrorKind.NOT_RUN, "NotRun", "leaving")
    h.engine.receive(b"a", h.codec.encode(Calls(Command.ERROR, (Entry(future.request_id, 0, not_run),))), h.now)
    h.ready(b"b", ("p",), capacity=1, idempotent=("p",))
    sent = h.flush()
    (peer, message), = [(p, m) for p, m in sent if m.command is Command.REQUEST]
    assert message.entries[0].flags & RETRYABLE  # one retry still left
    h.engine.receive(peer, h.codec.encode(Disconnect(True)), h.now)
    assert not future.done() and h.engine.retried == 1


def test_calls_that_end_before_their_deadline_do_not_pile_up_in_the_deadline_heap() -> None:
    h = Harness()
    h.ready(b"w", ("p",), capacity=1)
    for _ in range(1000):
        future = h.submit("p", deadline=h.now + 3600.0)
        (request_id,) = h.requests()[b"w"]
        h.reply(b"w", request_id, None)
        h.settle()
        assert future.result(0) is None
    assert len(h.engine._deadlines) <= 2 * len(h.engine.calls) + 65
