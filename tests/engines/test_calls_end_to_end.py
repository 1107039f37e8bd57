"""Calls from submission to outcome through a client engine and worker engines together, in
memory: workers that leave, die or fall silent, cancels that reach a running call, partials,
and the size limits both ends agree on."""

from __future__ import annotations

import pytest

from pirate_actors import PirateError, ProtocolError, RemoteError, WorkerLost
from pirate_actors._future import CallFuture
from pirate_actors.protocol import Command, Flag

from .conftest import Cluster, MakeCluster, WorkerNode, args_of_size

pytestmark = pytest.mark.timeout(20)

KEY = b"k" * 32


def test_a_call_runs_on_a_worker_and_its_result_reaches_its_future(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w")
    future = client.submit("echo", 1, two=2)
    cluster.settle()
    assert worker.arguments(future) == ("echo", (1,), {"two": 2})
    worker.finish(future, ((1,), {"two": 2}))
    cluster.settle()
    assert future.result(0) == ((1,), {"two": 2})
    assert future.worker == "w" and future.attempts == ("w",)
    assert (client.queued, client.in_flight) == (0, 0)


def test_calls_a_leaving_worker_never_started_run_elsewhere_ahead_of_newer_calls(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    leaving = cluster.add_worker("leaving", pool_size=1, prefetch=1)
    running, not_run, newer_1, newer_2 = (client.submit("ping") for _ in range(4))
    cluster.settle()
    assert leaving.running() == [running.request_id] and leaving.engine.waiting == 1
    leaving.start(running)
    leaving.leave(timeout=5.0)
    cluster.settle()
    assert not not_run.done() and not_run.worker is None  # "not run": queued again
    assert client.queued == 3
    other = cluster.add_worker("other", pool_size=1, prefetch=0)
    for future in (not_run, newer_1, newer_2):
        other.finish(future, "pong")
        cluster.settle()
    assert other.told_ids() == [not_run.request_id, newer_1.request_id, newer_2.request_id]
    assert not_run.result(0) == "pong" and not_run.attempts == ("leaving", "other")
    leaving.finish(running, "pong")
    cluster.settle()
    assert running.result(0) == "pong" and leaving.stopped
    assert leaving.told_ids() == [running.request_id]  # what it gave back never ran there


def test_a_killed_worker_fails_its_calls_with_worker_lost_and_nothing_else(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    doomed = cluster.add_worker("doomed", pool_size=1, prefetch=1)  # capacity 2
    healthy = cluster.add_worker("healthy", pool_size=1, prefetch=1)
    futures = [client.submit("ping") for _ in range(5)]
    cluster.settle()
    on_doomed = [f for f in futures if f.worker == "doomed"]
    on_healthy = [f for f in futures if f.worker == "healthy"]
    (queued,) = [f for f in futures if f.worker is None]
    assert len(on_doomed) == len(on_healthy) == 2
    doomed.start(on_doomed[0])  # one started, one waiting inside the worker
    cluster.run(0.5)
    last_heard = max(s.time for s in cluster.sent("doomed"))
    cluster.kill_worker("doomed")
    cluster.run_until(lambda: all(f.done() for f in on_doomed))
    assert cluster.now - last_heard == pytest.approx(3.0, abs=0.002)  # heartbeat x liveness
    for future in on_doomed:
        with pytest.raises(WorkerLost, match="doomed"):
            future.result(0)
    assert not any(f.done() for f in on_healthy) and not queued.done()
    assert client.in_flight == 2 and client.queued == 1
    for future in (*on_healthy, queued):
        healthy.finish(future, "pong")
        cluster.settle()
    assert [f.result(0) for f in (*on_healthy, queued)] == ["pong"] * 3
    assert (client.queued, client.in_flight) == (0, 0)


def test_a_frozen_worker_is_lost_after_heartbeat_times_liveness_and_its_late_answer_is_dropped(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("frozen", pool_size=1)
    future = client.submit("ping")
    cluster.settle()
    cluster.freeze("frozen")
    assert 2.0 < cluster.run_until(future.done) <= 3.0 + 0.002
    assert isinstance(future.exception(0), WorkerLost)
    worker.finish(future, "too late")
    cluster.thaw("frozen")  # it hears its client again, answers, and registers anew
    cluster.run(2.0)
    assert isinstance(future.exception(0), WorkerLost)
    assert client.session.workers  # registered again, as a new incarnation


def test_cancelling_a_running_call_tells_its_worker_and_drops_its_late_reply(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=0)
    future = client.submit("ping")
    cluster.settle()
    worker.start(future)
    cluster.settle()
    (old,) = worker.live_actors()
    assert future.cancel() and future.cancelled()
    cluster.settle()
    (cancel,) = cluster.sent("client", Command.CANCEL)
    assert cancel.request_ids == [future.request_id]
    assert worker.retirements == [old] and worker.actor_of(future).urn == old
    assert client.in_flight == 0 and worker.engine.running == 0
    after = client.submit("ping")  # the capacity it had is back at once
    cluster.settle()
    (fresh,) = worker.live_actors()
    assert worker.actor_of(after).urn == fresh != old
    worker.finish(future, "late")
    worker.finish(after, "pong")
    cluster.settle()
    assert future.cancelled() and after.result(0) == "pong"
    assert [i for s in cluster.sent("w", Command.REPLY) for i in s.request_ids] == [after.request_id]


def test_a_calls_partials_reach_its_future_before_its_result_started_first(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w")
    future = client.submit("ping")
    seen: list[object] = []
    future.add_partial_callback(lambda fut, message: seen.append(message))
    future.add_done_callback(lambda fut: seen.append(("result", fut.result())))
    cluster.settle()
    worker.start(future)
    cluster.settle()
    assert seen == ["started"]
    worker.report(future, 1)
    cluster.settle()
    worker.report(future, 2)
    worker.finish(future, "done")  # the last partial and the reply in one turn
    cluster.settle()
    assert seen == ["started", 1, 2, ("result", "done")]
    assert future.partials == ["started", 1, 2]


def test_a_quick_calls_started_and_reply_travel_as_one_message(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w")
    future = client.submit("ping")
    cluster.settle()
    mark = cluster.mark()
    worker.finish(future, "pong")
    cluster.settle()
    (message,) = [s for s in cluster.sent("w", since=mark) if s.command is not Command.HEARTBEAT]
    assert message.command is Command.REPLY and message.entries[0].flags & Flag.STARTED
    assert future.partials == ["started"] and future.result(0) == "pong"


def test_an_actor_that_dies_mid_call_fails_only_that_call(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=2)
    dying, other = client.submit("ping"), client.submit("ping")
    cluster.settle()
    worker.start(dying)
    worker.start(other)
    cluster.settle()
    worker.kill_actor(dying)
    cluster.settle()
    error = dying.exception(0)
    assert isinstance(error, RemoteError) and error.type_name == "ActorDeadError"
    assert not other.done() and len(worker.live_actors()) == 2
    next_call = client.submit("ping")
    cluster.settle()
    assert worker.holds(next_call)  # the replacement took it
    worker.finish(other, "pong")
    cluster.settle()
    assert other.result(0) == "pong"


@pytest.mark.parametrize("key", [None, KEY], ids=["no-key", "hmac"])
def test_a_request_exactly_at_max_message_size_is_accepted_and_one_byte_more_is_refused(
    make_cluster: MakeCluster, key: bytes | None,
) -> None:
    limit = 4096
    cluster = make_cluster(key=key)
    client = cluster.add_client(max_message_size=limit)
    worker = cluster.add_worker("w", max_message_size=limit)
    codec = client.codec
    assert codec.overhead(1) + codec.max_body() == limit
    fits = client.submit("echo", *args_of_size("echo", codec.max_body()))
    cluster.settle()
    (request,) = cluster.sent("client", Command.REQUEST)
    assert request.size == limit
    assert worker.session.stats.malformed == 0 and worker.holds(fits)
    too_big = client.submit("echo", *args_of_size("echo", codec.max_body() + 1))
    with pytest.raises(ProtocolError, match="max_message_size"):
        too_big.result(0)  # at once, in submit
    cluster.settle()
    assert len(cluster.sent("client", Command.REQUEST)) == 1


def test_a_lost_call_to_an_idempotent_procedure_runs_again_on_another_worker(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    doomed = cluster.add_worker("doomed", pool_size=2, idempotent=("ping",))
    future = client.submit("ping")
    cluster.settle()
    cluster.add_worker("spare", pool_size=1, idempotent=("ping",))
    spare = cluster.workers[b"spare"]
    assert doomed.holds(future)
    cluster.kill_worker("doomed")
    cluster.run_until(lambda: spare.holds(future))
    spare.finish(future, "pong")
    cluster.settle()
    assert future.result(0) == "pong" and future.attempts == ("doomed", "spare")
    assert client.engine.retried == 1


def test_a_call_sent_while_an_idle_worker_leaves_is_requeued_not_lost(make_cluster: MakeCluster) -> None:
    # SPEC §2: stop() answers calls it holds but never started -- "and any that arrive
    # meanwhile" -- with "not run", which the client re-queues. An idle worker finishes (final
    # DISCONNECT, socket closed) in the same turn it says it is leaving, so a REQUEST already
    # on its way finds no one, and the client fails a call that never ran with WorkerLost.
    cluster = make_cluster(latency=0.05)
    client = cluster.add_client()
    leaving = cluster.add_worker("leaving", pool_size=1)
    cluster.run(0.5)
    leaving.leave(timeout=5.0)
    cluster.settle()
    future = client.submit("ping")  # the client has not heard yet
    cluster.run(0.5)
    spare = cluster.add_worker("spare")
    cluster.run(0.5)
    assert not future.done(), f"a call that never ran failed: {future.exception(0)!r}"
    assert spare.holds(future)


def finish_everything(
    cluster: Cluster, worker: WorkerNode, futures: list[CallFuture], result: object = "pong",
) -> None:
    """Let the worker's actors return as soon as they get calls, until every future is done."""
    for _ in range(100):
        if all(f.done() for f in futures):
            return
        for request_id in worker.running():
            worker.finish(request_id, result)
        cluster.run(0.1)
    raise AssertionError("calls left unfinished")


def test_a_worker_serving_two_clients_runs_the_calls_of_both_within_its_capacity(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    first, second = cluster.add_client("first"), cluster.add_client("second")
    worker = cluster.add_worker("shared", client=["first", "second"], pool_size=2, prefetch=2)
    assert first.session.workers and second.session.workers
    futures = [client.submit("ping") for _ in range(6) for client in (first, second)]
    finish_everything(cluster, worker, futures)  # (the harness checks capacity every turn)
    assert [f.result(0) for f in futures] == ["pong"] * 12
    assert {f.request_id for f in futures} == set(worker.told_ids())  # each ran once


def test_a_client_that_closes_touches_only_its_own_calls_on_a_shared_worker(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()
    first, second = cluster.add_client("first"), cluster.add_client("second")
    worker = cluster.add_worker("shared", client=["first", "second"], pool_size=2, prefetch=2)
    mine, theirs = first.submit("ping"), second.submit("ping")
    cluster.settle()
    assert worker.holds(mine) and worker.holds(theirs)
    first.close()
    cluster.run(0.5)
    assert isinstance(mine.exception(0), PirateError) and not theirs.done()
    assert worker.lane("first").engine.calls == {}
    assert worker.retirements == [worker.actor_of(mine).urn]  # its call runs on, unheard
    worker.finish(mine, "nobody listens")
    worker.finish(theirs, "pong")
    cluster.run(0.5)
    assert theirs.result(0) == "pong"
    assert len(worker.live_actors()) == 2


def test_a_retried_call_skips_a_worker_that_has_missed_its_heartbeat(cluster: Cluster) -> None:
    """Hosts cut off together are given up one by one, a little apart: a call handed back by
    the first must not go to another that is just as silent and burn its retries there."""
    client = cluster.clients["client"]
    first = cluster.add_worker("first", pool_size=1, prefetch=0, idempotent=("ping",))
    future = client.submit("ping")
    cluster.settle()
    assert first.holds(future)
    cluster.add_worker("silent", pool_size=4, idempotent=("ping",))  # the freest: chosen if not skipped
    cluster.add_worker("alive", pool_size=1, prefetch=0, idempotent=("ping",))
    alive = cluster.workers[b"alive"]
    cluster.settle()
    cluster.freeze("first")
    cluster.run(1.5)
    cluster.freeze("silent")
    cluster.run_until(lambda: alive.holds(future))
    alive.finish(future, "pong")
    cluster.settle()
    assert future.result(0) == "pong" and future.attempts == ("first", "alive")
