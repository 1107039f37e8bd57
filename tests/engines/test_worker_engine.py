"""The worker's call engine (``WorkerEngine``) and its session (``WorkerProtocol``), driven in
memory by a real client engine, with procedure actors the tests play: the order calls are handed
to actors, actors that die, cancels, leaving, and what the session refuses to send."""

from __future__ import annotations

import pytest

from pirate_actors import RemoteError, WorkerLost, _codec
from pirate_actors._worker_engine import CallState
from pirate_actors.protocol import (
    Calls,
    Command,
    Disconnect,
    Entry,
    Flag,
    FrameCodec,
    Heartbeat,
    LocalProtocolError,
    Ready,
    SessionState,
    WorkerProtocol,
)

from .conftest import Cluster, MakeCluster

pytestmark = pytest.mark.timeout(20)


def commands_from(cluster: Cluster, peer: str, since: int = 0) -> list[Command]:
    return [s.command for s in cluster.sent(peer, since=since) if s.command is not Command.HEARTBEAT]


def errors_from(cluster: Cluster, peer: str) -> list[int]:
    return [i for s in cluster.sent(peer, Command.ERROR) for i in s.request_ids]


# --------------------------------------------------------------------------- hand-over order


def test_calls_wait_in_arrival_order_for_idle_actors(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=3)
    futures = [client.submit("ping") for _ in range(4)]
    cluster.settle()
    assert worker.engine.waiting == 3 and worker.engine.running == 1
    arrived = [i for s in cluster.sent("client", Command.REQUEST) for i in s.request_ids]
    for future in futures:
        (running,) = worker.running()
        worker.finish(running, "pong")
        cluster.settle()
    assert worker.told_ids() == arrived == [f.request_id for f in futures]
    assert len({urn for _, urn in worker.told}) == 1  # one actor, one call at a time


def test_a_call_told_to_a_dead_actor_goes_back_first_with_the_later_ones_in_order_and_never_fails(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=2, prefetch=2)
    dead, alive = worker.live_actors()
    worker.kill_actor(dead, announce=False)  # it died; its Exited is not read yet
    first, second, third = (client.submit("ping") for _ in range(3))
    cluster.settle()
    # The engine handed first -> dead, second -> alive; telling the dead one failed, so both
    # went back, in order, ahead of third, and were told again to live actors.
    replacement = worker.live_actors()[-1]
    assert worker.told == [(first.request_id, alive), (second.request_id, replacement)]
    assert worker.engine.waiting == 1 and not errors_from(cluster, "w")
    for future in (first, second, third):
        worker.finish(future, "pong")
        cluster.settle()
    assert [f.result(0) for f in (first, second, third)] == ["pong"] * 3
    assert worker.told_ids() == [first.request_id, second.request_id, third.request_id]
    assert dead not in worker.live_actors() and len(worker.live_actors()) == 2


def test_an_actor_that_dies_running_a_call_fails_that_call_and_the_calls_it_never_started_run_elsewhere(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=2, prefetch=1)
    running, told, waiting = (client.submit("ping") for _ in range(3))
    cluster.settle()
    worker.start(running)
    cluster.settle()
    first_actor = worker.kill_actor(running)  # dies inside the procedure
    second_actor = worker.kill_actor(told)  # dies before it began its call: Exited.unrun
    cluster.settle()
    with pytest.raises(RemoteError) as failed:
        running.result(0)
    assert failed.value.type_name == "ActorDeadError"
    assert running.partials == ["started"]  # "started" still precedes its error
    assert not told.done() and not waiting.done()
    assert {worker.actor_of(told).urn, worker.actor_of(waiting).urn}.isdisjoint(
        {first_actor.urn, second_actor.urn})
    worker.finish(told, "pong")
    worker.finish(waiting, "pong")
    cluster.settle()
    assert told.result(0) == waiting.result(0) == "pong"
    assert errors_from(cluster, "w") == [running.request_id]
    assert len(worker.live_actors()) == 2


def test_a_call_cancelled_before_its_actor_was_told_leaves_that_actor_idle(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=1)
    (actor,) = worker.live_actors()
    cluster.freeze("w")
    future = client.submit("ping")
    cluster.settle()
    future.cancel()
    cluster.settle()
    cluster.thaw("w")  # REQUEST then CANCEL in one turn: handed, then cancelled, never told
    assert worker.told == [] and worker.retirements == []
    assert worker.engine.idle_actors() == 1 and not worker.engine.calls
    again = client.submit("ping")
    cluster.settle()
    assert worker.told == [(again.request_id, actor)]


def test_a_call_cancelled_while_running_retires_its_actor_and_a_fresh_one_takes_its_place(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=0)
    future = client.submit("ping")
    cluster.settle()
    worker.start(future)
    cluster.settle()
    (old,) = worker.live_actors()
    future.cancel()
    cluster.settle()
    assert worker.retirements == [old]
    (fresh,) = worker.live_actors()
    assert fresh != old and worker.engine.idle_actors() == 1 and worker.engine.running == 0
    assert worker.engine.retired[old].state is CallState.RETIRED
    worker.finish(future, "late")  # the retired actor returns, then stops
    cluster.settle()
    assert not cluster.sent("w", Command.REPLY)  # its late answer was dropped
    assert not worker.engine.retired and worker.live_actors() == [fresh]


def test_answers_of_several_calls_in_one_turn_go_out_in_one_message_per_command(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=3, prefetch=0)
    futures = [client.submit("ping") for _ in range(3)]
    cluster.settle()
    worker.finish(futures[0], 0)
    worker.finish(futures[1], 1)
    worker.raise_(futures[2], ValueError("no"))
    cluster.settle()
    (replies,) = cluster.sent("w", Command.REPLY)
    (errors,) = cluster.sent("w", Command.ERROR)
    assert replies.request_ids == [futures[0].request_id, futures[1].request_id]
    assert errors.request_ids == [futures[2].request_id]
    with pytest.raises(ValueError, match="no"):
        futures[2].result(0)


def test_partials_go_out_before_their_reply_with_started_first(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w")
    future = client.submit("ping")
    cluster.settle()
    worker.start(future)
    worker.report(future, "one")
    worker.report(future, "two")
    worker.finish(future, "done")
    cluster.settle()  # all in one turn: one PARTIAL message, then the REPLY
    partial, reply = [s for s in cluster.sent("w") if s.command in (Command.PARTIAL, Command.REPLY)]
    assert partial.command is Command.PARTIAL and reply.command is Command.REPLY
    assert [e.flags for e in partial.entries] == [Flag.STARTED, 0, 0]
    assert [_codec.loads(e.body) for e in partial.entries[1:]] == ["one", "two"]
    assert reply.entries[0].flags == 0  # "started" already went out
    assert future.partials == ["started", "one", "two"] and future.result(0) == "done"


def test_a_quick_calls_started_rides_on_its_reply_as_a_flag(cluster: Cluster) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w")
    future = client.submit("ping")
    cluster.settle()
    since = cluster.mark()
    worker.finish(future, "pong")  # Started and Done in the same turn
    cluster.settle()
    (reply,) = [s for s in cluster.sent("w", since=since) if s.command is not Command.HEARTBEAT]
    assert reply.command is Command.REPLY and reply.entries[0].flags == Flag.STARTED
    assert future.partials == ["started"] and future.result(0) == "pong"


def test_a_request_beyond_the_workers_capacity_is_answered_not_run_and_never_handed_over(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=0)  # capacity 1
    held = client.submit("ping")
    cluster.settle()
    # A client whose view of the capacity lags (a smaller offer still on its way) sends more:
    extra = Calls(Command.REQUEST, (Entry(999, 0, _codec.dumps_call("ping", (), {})),))
    cluster.inject("client", "w", client.codec.encode(extra))
    cluster.settle()
    assert errors_from(cluster, "w") == [999] and worker.told_ids() == [held.request_id]
    assert worker.lanes.held() == 1


# --------------------------------------------------------------------------- leaving


def test_leaving_answers_waiting_calls_not_run_and_finishes_once_running_calls_are_done(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=2)
    running, waiting_1, waiting_2 = (client.submit("ping") for _ in range(3))
    cluster.settle()
    worker.start(running)
    cluster.settle()
    since = cluster.mark()
    worker.leave(timeout=5.0)
    cluster.settle()
    assert errors_from(cluster, "w") == [waiting_1.request_id, waiting_2.request_id]
    assert not worker.engine.finished and worker.engine.waiting == 0
    assert not waiting_1.done() and client.queued == 2  # "not run": back in the client's queue
    cluster.run(1.0)
    assert not worker.engine.finished  # the running call may take as long as the timeout
    worker.finish(running, "pong")
    cluster.settle()
    assert worker.engine.finished and worker.stopped
    assert commands_from(cluster, "w", since) == [
        Command.DISCONNECT, Command.ERROR, Command.REPLY, Command.DISCONNECT]
    first, last = cluster.sent("w", Command.DISCONNECT)
    assert first.message == Disconnect(final=False) and last.message == Disconnect(final=True)
    assert running.result(0) == "pong"


def test_leaving_finishes_at_the_stop_timeout_when_a_running_call_never_returns(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1)
    future = client.submit("ping")
    cluster.settle()
    worker.start(future)
    worker.leave(timeout=2.0)
    assert cluster.run_until(lambda: worker.engine.finished) == pytest.approx(2.0)
    assert cluster.sent("w", Command.DISCONNECT)[-1].message == Disconnect(final=True)
    cluster.settle()
    assert isinstance(future.exception(0), WorkerLost)  # it stopped before replying
    assert "stopped before the call finished" in str(future.exception(0))
    since = cluster.mark()
    worker.finish(future, "too late")
    cluster.run(3.0)
    assert not cluster.sent("w", since=since)  # a stopped worker says nothing more


def test_a_call_that_arrives_while_the_worker_leaves_is_answered_not_run(make_cluster: MakeCluster) -> None:
    cluster = make_cluster(latency=0.05)
    client = cluster.add_client()
    worker = cluster.add_worker("w", pool_size=1, prefetch=1)
    running = client.submit("ping")
    cluster.run(0.5)
    worker.start(running)
    worker.leave(timeout=5.0)
    cluster.settle()
    late = client.submit("ping")  # sent before the client hears that the worker leaves
    cluster.run(0.2)
    assert worker.told_ids() == [running.request_id]
    assert errors_from(cluster, "w") == [late.request_id]
    assert not late.done() and client.queued == 1  # re-queued, for another worker
    other = cluster.add_worker("other")
    cluster.run(0.2)
    assert other.told_ids() == [late.request_id]
    worker.finish(running, "pong")
    cluster.run(0.2)
    assert worker.engine.finished and running.result(0) == "pong"


# --------------------------------------------------------------------------- the session's states


def test_a_waiting_worker_session_refuses_to_send_calls_and_counts_nothing() -> None:
    session = WorkerProtocol(FrameCodec(), Ready("w", 2, 1.0, 3, ("ping",)), 10.0)
    assert session.state is SessionState.WAITING
    for command in (Command.PARTIAL, Command.REPLY, Command.ERROR):
        with pytest.raises(LocalProtocolError, match="waiting"):
            session.calls(command, [Entry(1)], 10.0)
    with pytest.raises(LocalProtocolError):
        session.capacity(3, 10.0)
    assert session.stats.sent == 0


def test_a_worker_session_with_no_connection_up_sends_and_counts_nothing() -> None:
    session = WorkerProtocol(FrameCodec(), Ready("w", 2, 1.0, 3, ("ping",)), 10.0)
    for now in (10.0, 11.0, 15.0, 100.0):
        assert session.tick(now) == ([], [])
    assert session.leave(100.0) == [] and session.close(100.0) == []
    assert session.stats.sent == 0 and session.state is SessionState.CLOSED


def test_a_worker_engine_with_no_client_there_sends_nothing(make_cluster: MakeCluster) -> None:
    cluster = make_cluster()  # no client bound: no connection ever comes up
    worker = cluster.add_worker("w")
    cluster.run(10.0)
    assert cluster.log == [] and worker.session.stats.sent == 0


def test_a_registered_worker_session_that_closed_refuses_every_send() -> None:
    codec = FrameCodec()
    session = WorkerProtocol(codec, Ready("w", 2, 1.0, 3, ("ping",)), 10.0)
    session.connected(10.0)
    session.ready_frames(10.0)
    session.receive(codec.encode(Heartbeat(1.0, 3)), 10.0)
    assert session.registered
    session.calls(Command.REPLY, [Entry(1)], 10.5)
    (goodbye,) = session.close(11.0)
    assert codec.decode(goodbye) == Disconnect(final=True)
    sent = session.stats.sent
    with pytest.raises(LocalProtocolError, match="closed"):
        session.calls(Command.REPLY, [Entry(2)], 11.0)
    assert session.tick(20.0)[1] == [] and session.stats.sent == sent


def test_a_leaving_worker_session_still_answers_but_announces_no_capacity() -> None:
    codec = FrameCodec()
    session = WorkerProtocol(codec, Ready("w", 2, 1.0, 3, ("ping",)), 10.0)
    session.connected(10.0)
    session.ready_frames(10.0)
    session.receive(codec.encode(Heartbeat(1.0, 3)), 10.0)
    (disconnect,) = session.leave(10.5)
    assert codec.decode(disconnect) == Disconnect(final=False)
    reply = session.calls(Command.REPLY, [Entry(1, 0, b"r")], 10.6)
    assert isinstance(codec.decode(reply), Calls)
    with pytest.raises(LocalProtocolError, match="leaving"):
        session.capacity(1, 10.7)


def test_a_leaving_worker_whose_last_running_call_is_cancelled_finishes_at_once(cluster: Cluster) -> None:
    # Found by a probe: the cancel freed the last slot, but the stop waited for its timeout.
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1)
    future = client.submit("ping")
    cluster.settle()
    worker.start(future)
    worker.leave(timeout=30.0)
    cluster.settle()
    assert not worker.engine.finished
    future.cancel()
    took = cluster.run_until(lambda: worker.engine.finished)
    assert took < 1.0


# --------------------------------------------------------------------------- for operators


def test_the_oldest_running_call_is_timed_from_when_its_actor_got_it_and_waiting_ones_do_not_count(
    cluster: Cluster,
) -> None:
    client = cluster.clients["client"]
    worker = cluster.add_worker("w", pool_size=1, prefetch=1)
    assert worker.engine.oldest_running(cluster.now) == 0.0  # nothing running
    first = client.submit("ping")
    cluster.settle()
    cluster.run(2.0)
    second = client.submit("ping")  # waits inside the worker behind the first
    cluster.settle()
    cluster.run(3.0)
    assert worker.engine.waiting == 1
    assert worker.engine.oldest_running(cluster.now) == pytest.approx(5.0)
    worker.finish(first, "pong")
    cluster.settle()
    assert worker.running() == [second.request_id]
    assert worker.engine.oldest_running(cluster.now) == pytest.approx(0.0)  # the second just began
    cluster.run(1.5)
    assert worker.engine.oldest_running(cluster.now) == pytest.approx(1.5)
    worker.finish(second, "pong")
    cluster.settle()
    assert worker.engine.oldest_running(cluster.now) == 0.0
