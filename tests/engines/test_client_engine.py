"""The client's call engine (``ClientEngine``) and its sessions (``ClientProtocol``), driven in
memory against real worker engines whose actors the tests play: where each call goes, what
waits, what is sent in which message, and the counts the client reports."""

from __future__ import annotations

import pytest

from pirate_actors import NoWorkerError, ProtocolError, UnknownProcedure, WorkerLost
from pirate_actors.protocol import (
    ClientProtocol,
    Command,
    Disconnect,
    Entry,
    FrameCodec,
    LocalProtocolError,
    Ready,
)

from .conftest import Cluster, MakeCluster

pytestmark = pytest.mark.timeout(20)


def request_ids(cluster: Cluster, peer: str) -> list[int]:
    """Every request id the client sent to ``peer``, in order."""
    return [i for s in cluster.sent("client", Command.REQUEST, target=peer) for i in s.request_ids]


# --------------------------------------------------------------------------- dispatch


def test_a_call_goes_to_the_worker_with_the_most_free_capacity_and_never_beyond_capacity(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    small = cluster.add_worker("small", pool_size=1)  # capacity 2
    big = cluster.add_worker("big", pool_size=2)  # capacity 4
    middle = cluster.add_worker("middle", pool_size=3, prefetch=0)  # capacity 3
    first = client.submit("ping")
    cluster.settle()
    assert first.worker == "big" and request_ids(cluster, "big") == [first.request_id]

    rest = [client.submit("ping") for _ in range(9)]  # capacity left: 2 + 3 + 3 = 8
    cluster.settle()
    for worker in (small, big, middle):
        assert len(client.held_by(worker.peer)) == worker.capacity
        assert len(worker.engine.calls) == worker.capacity  # what each worker holds, too
    assert client.in_flight == 9 and client.queued == 1
    (waiting,) = [f for f in rest if f.worker is None]
    assert waiting is rest[-1]  # the newest waits

    small.finish(small.running()[0], "pong")  # only "small" has room now
    cluster.settle()
    assert waiting.worker == "small"
    assert client.queued == 0 and client.in_flight == 9


def test_calls_wait_in_the_client_in_submission_order_per_procedure(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=0)
    futures = [client.submit("ping") for _ in range(5)]
    cluster.settle()
    assert client.queued == 4
    for future in futures:
        assert worker.running() == [future.request_id]
        worker.finish(future, "pong")
        cluster.settle()
    assert worker.told_ids() == [f.request_id for f in futures]
    assert request_ids(cluster, "w") == [f.request_id for f in futures]
    assert all(f.result(0) == "pong" for f in futures)


def test_a_procedure_only_a_busy_worker_serves_does_not_hold_back_one_an_idle_worker_serves(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    slow = cluster.add_worker("slow", procedures=("slow",), pool_size=1, prefetch=0)
    fast = cluster.add_worker("fast", procedures=("fast",), pool_size=1, prefetch=0)
    slow_1, slow_2, fast_1 = client.submit("slow"), client.submit("slow"), client.submit("fast")
    cluster.settle()
    assert slow_1.worker == "slow" and slow_2.worker is None
    assert fast_1.worker == "fast"  # submitted after slow_2, sent before it
    fast.finish(fast_1, "done")
    cluster.settle()
    assert fast_1.result(0) == "done"
    assert slow_2.worker is None  # an idle worker that does not serve it never gets it
    assert request_ids(cluster, "fast") == [fast_1.request_id]
    slow.finish(slow_1)
    cluster.settle()
    assert slow_2.worker == "slow"


def test_a_call_to_a_procedure_no_worker_serves_goes_to_any_worker_and_fails_there(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    pings = cluster.add_worker("pings", procedures=("ping",), pool_size=1)  # capacity 2
    echoes = cluster.add_worker("echoes", procedures=("echo",), pool_size=2)  # capacity 4
    future = client.submit("nope")
    cluster.settle()
    assert future.worker == "echoes"  # the most free capacity, like any call
    echoes.unknown(future)
    cluster.settle()
    with pytest.raises(UnknownProcedure, match="nope"):
        future.result(0)
    assert not pings.told


def test_a_leaving_worker_gets_no_new_calls(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    leaving = cluster.add_worker("leaving", pool_size=2)
    staying = cluster.add_worker("staying", pool_size=1)
    running = client.submit("ping")
    cluster.settle()
    assert running.worker == "leaving"
    leaving.leave()
    cluster.settle()
    later = [client.submit("ping") for _ in range(3)]
    cluster.settle()
    assert [f.worker for f in later] == ["staying", "staying", None]  # capacity 2, then wait
    assert request_ids(cluster, "leaving") == [running.request_id]


# --------------------------------------------------------------------------- no worker, cancel


def test_a_queued_call_fails_with_no_worker_error_after_the_clients_timeout_with_no_worker(
    make_cluster: MakeCluster,
) -> None:
    cluster = make_cluster()
    client = cluster.add_client(timeout=5.0)
    future = client.submit("ping")
    cluster.run(4.99)
    assert not future.done()
    assert cluster.run_until(future.done) == pytest.approx(0.01)  # 5.0 s after submission
    with pytest.raises(NoWorkerError):
        future.result(0)
    assert client.queued == 0 and client.in_flight == 0


def test_a_queued_call_does_not_fail_when_a_worker_comes_before_the_timeout(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    client = cluster.add_client(timeout=5.0)
    future = client.submit("ping")
    cluster.run(4.0)
    worker = cluster.add_worker("late")
    worker.finish(future, "pong")
    cluster.run(10.0)
    assert future.result(0) == "pong"


def test_a_cancelled_queued_call_is_never_sent(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=0)
    running, queued, after = client.submit("ping"), client.submit("ping"), client.submit("ping")
    cluster.settle()
    assert queued.cancel() and queued.cancelled()
    cluster.settle()
    assert client.queued == 1
    worker.finish(running, "pong")
    cluster.settle()
    worker.finish(after, "pong")
    cluster.settle()
    assert request_ids(cluster, "w") == [running.request_id, after.request_id]
    assert not cluster.sent("client", Command.CANCEL)  # a call never sent needs no cancel
    assert after.result(0) == "pong"


def test_queued_and_in_flight_are_derived_and_never_negative(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    futures = [client.submit("ping") for _ in range(3)]
    cluster.settle()
    assert (client.queued, client.in_flight) == (3, 0)
    futures[0].cancel()
    futures[2].cancel()
    cluster.settle()
    assert (client.queued, client.in_flight) == (1, 0)
    client._cancel(futures[0])  # its cancel again (a deadline's and the user's): no effect
    cluster.settle()
    assert (client.queued, client.in_flight) == (1, 0)
    worker = cluster.add_worker("w")
    assert (client.queued, client.in_flight) == (0, 1)
    worker.finish(futures[1], "pong")
    cluster.settle()
    assert (client.queued, client.in_flight) == (0, 0)
    futures[1].cancel()  # finished: cancel is refused and counts nothing
    cluster.settle()
    assert (client.queued, client.in_flight) == (0, 0)


def test_cancelling_a_call_twice_returns_true_again_and_changes_nothing(cluster: Cluster) -> None:
    # concurrent.futures.Future.cancel() on a cancelled future returns True again.
    client = cluster.clients["client"]
    future = client.submit("ping")
    assert future.cancel()
    assert future.cancel()
    cluster.settle()
    assert future.cancelled() and (client.queued, client.in_flight) == (0, 0)


# --------------------------------------------------------------------------- batches and sizes


def test_several_calls_to_one_worker_in_a_turn_go_in_one_request_message(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    cluster.add_worker("w", pool_size=4)
    futures = [client.submit("ping") for _ in range(3)]
    cluster.settle()
    (message,) = cluster.sent("client", Command.REQUEST)
    assert message.request_ids == [f.request_id for f in futures]
    later = client.submit("ping")  # another turn: another message
    cluster.settle()
    assert [s.request_ids for s in cluster.sent("client", Command.REQUEST)][1:] == [[later.request_id]]


def test_a_batch_is_split_so_that_no_message_exceeds_max_message_size(make_cluster: MakeCluster) -> None:
    limit = 2000
    cluster = make_cluster()
    client = cluster.add_client(max_message_size=limit)
    worker = cluster.add_worker("w", pool_size=5, max_message_size=limit)
    futures = [client.submit("echo", b"x" * 550) for _ in range(5)]  # ~600 bytes each
    cluster.settle()
    messages = cluster.sent("client", Command.REQUEST)
    assert len(messages) == 2 and all(m.size <= limit for m in messages)
    assert [i for m in messages for i in m.request_ids] == [f.request_id for f in futures]
    assert worker.session.stats.malformed == 0
    assert worker.told_ids() == [f.request_id for f in futures]


def test_a_call_larger_than_its_worker_accepts_fails_with_protocol_error_and_is_never_sent(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]  # accepts 64 MiB
    worker = cluster.add_worker("w", max_message_size=2000)
    too_big, fine = client.submit("echo", b"x" * 3000), client.submit("echo", b"y")
    cluster.settle()
    with pytest.raises(ProtocolError, match="max_message_size"):
        too_big.result(0)
    assert request_ids(cluster, "w") == [fine.request_id]
    worker.finish(fine, "ok")
    cluster.settle()
    assert fine.result(0) == "ok"
    assert (client.queued, client.in_flight) == (0, 0)


# --------------------------------------------------------------------------- the session's states


def registered_session(codec: FrameCodec, peer: bytes = b"w") -> ClientProtocol:
    session = ClientProtocol(codec, 1.0, 3)
    events, out = session.receive(peer, codec.encode(Ready("w", 2, 1.0, 3, ("ping",))), 10.0)
    assert events and out  # registered, and acknowledged
    return session


def test_the_client_session_refuses_a_request_to_an_unknown_worker_and_counts_nothing() -> None:
    codec = FrameCodec()
    session = registered_session(codec)
    sent = session.stats.sent
    with pytest.raises(LocalProtocolError, match="not registered"):
        session.calls(b"ghost", Command.REQUEST, [Entry(1)], 11.0)
    with pytest.raises(LocalProtocolError):
        session.calls(b"ghost", Command.CANCEL, [Entry(1)], 11.0)
    assert session.stats.sent == sent
    session.calls(b"w", Command.REQUEST, [Entry(1)], 11.0)  # a registered worker: fine
    assert session.stats.sent == sent + 1


def test_the_client_session_refuses_a_request_to_a_leaving_worker_but_sends_it_cancels() -> None:
    codec = FrameCodec()
    session = registered_session(codec)
    session.receive(b"w", codec.encode(Disconnect(final=False)), 11.0)
    assert session.workers[b"w"].leaving
    sent = session.stats.sent
    with pytest.raises(LocalProtocolError, match="leaving"):
        session.calls(b"w", Command.REQUEST, [Entry(1)], 12.0)
    assert session.stats.sent == sent
    peer, frames = session.calls(b"w", Command.CANCEL, [Entry(1)], 12.0)
    assert peer == b"w" and frames and session.stats.sent == sent + 1


def test_a_closed_client_session_sends_nothing_more() -> None:
    codec = FrameCodec()
    session = registered_session(codec)
    (goodbye,) = session.close(12.0)
    assert goodbye[0] == b"w" and not session.workers
    sent = session.stats.sent
    with pytest.raises(LocalProtocolError, match="closed"):
        session.calls(b"w", Command.REQUEST, [Entry(1)], 13.0)
    assert session.tick(100.0) == ([], [])
    assert session.stats.sent == sent


# --------------------------------------------------------------------------- a closed connection
# What the driver does when a send fails with EHOSTUNREACH (ROUTER_MANDATORY): the messages the
# socket refused go back with ``not_sent`` (by their index in the flush's ``out``), then the
# worker is given up with ``unreachable``.


def test_calls_put_out_for_a_worker_whose_connection_closed_go_to_another_with_no_retry_spent(
    cluster: Cluster,
) -> None:
    """The calls of a refused send never left the client: they are dispatched again as if never
    sent; a call sent to that worker before may have run, and is lost as when it falls silent."""
    client = cluster.clients["client"]
    doomed = cluster.add_worker("doomed", pool_size=3, prefetch=0)  # capacity 3
    cluster.add_worker("other", pool_size=1, prefetch=0)  # capacity 1
    other = cluster.workers[b"other"]
    earlier = client.submit("ping")
    cluster.settle()
    assert earlier.worker == "doomed"  # the freest
    cluster.kill_worker("doomed")
    later = client.submit("ping")
    client.turn(cluster.now)  # one turn: the call is put out for doomed, and the send fails
    assert later.worker == "doomed"  # still the freest
    client.engine.not_sent(doomed.peer, list(client.engine._in_out))
    client.engine.unreachable(doomed.peer, cluster.now)
    cluster.settle()
    assert later.worker == "other"
    assert later.attempts == ("other",)  # never counted as sent to doomed
    assert client.engine.retried == 0
    with pytest.raises(WorkerLost, match="its connection closed"):
        earlier.result(0)  # it was sent before: it may have run, and is not idempotent
    assert client.engine.registered() == 1

    other.finish(later, "pong")
    cluster.settle()
    assert later.result(0) == "pong"
    assert client.engine.outcomes["succeeded"] == 1 and client.engine.outcomes["lost"] == 1


def test_of_a_batch_split_in_two_only_the_refused_message_goes_back_the_one_sent_is_lost(
    make_cluster: MakeCluster,
) -> None:
    """libzmq may accept the first message of a flush to a worker and refuse the next (it
    learns of the closed connection in between): only the second one's calls never left."""
    limit = 2000
    cluster = make_cluster()
    client = cluster.add_client(max_message_size=limit)
    doomed = cluster.add_worker("doomed", pool_size=5, prefetch=0, max_message_size=limit)
    cluster.kill_worker("doomed")
    futures = [client.submit("echo", b"x" * 550) for _ in range(5)]  # ~600 bytes each
    client.turn(cluster.now)
    first, second = sorted(client.engine._in_out)  # two REQUEST messages to doomed
    in_out = client.engine._in_out
    sent_ids, refused_ids = ([e.request_id for e in in_out[i]] for i in (first, second))
    assert sorted(sent_ids + refused_ids) == [f.request_id for f in futures]

    client.engine.not_sent(doomed.peer, [second])
    client.engine.unreachable(doomed.peer, cluster.now)
    cluster.settle()
    by_id = {f.request_id: f for f in futures}
    for request_id in sent_ids:
        with pytest.raises(WorkerLost):
            by_id[request_id].result(0)
    refused = [by_id[request_id] for request_id in refused_ids]
    assert not any(f.done() for f in refused) and client.queued == len(refused)
    assert all(f.attempts == () for f in refused)

    other = cluster.add_worker("other", pool_size=5, max_message_size=limit)
    for future in refused:
        other.finish(future, b"x")
    cluster.settle()
    assert all(f.result(0) == b"x" for f in refused)
    assert client.engine.retried == 0
