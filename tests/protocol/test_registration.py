"""Registration and re-registration (SPEC §5): READY, the client's acknowledging HEARTBEAT,
incarnations, DISCONNECT both ways, and a client that restarts under a worker's feet."""

from __future__ import annotations

from typing import Callable

import pytest

from pirate_actors.protocol import (
    Calls,
    CallsReceived,
    ClientLost,
    ClientProtocol,
    ClientRegistered,
    Command,
    Disconnect,
    Entry,
    FrameCodec,
    Heartbeat,
    Ready,
    WorkerGone,
    WorkerLeaving,
    WorkerProtocol,
    WorkerRegistered,
)

from .conftest import CLIENT, Network, TICK_GRANULARITY, decode

pytestmark = pytest.mark.timeout(10)


def readies(net: Network, peer: bytes, since: float = float("-inf")) -> list[Ready]:
    return [decode(s.frames) for s in net.sent(peer, Command.READY, since=since)]  # type: ignore[misc]


# ----------------------------------------------------------------------------- first contact


def test_a_worker_sends_ready_the_client_acknowledges_with_a_heartbeat_and_the_worker_is_registered(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.5, liveness=4)
    worker = net.add_worker(b"w1", heartbeat=2.0, liveness=3, capacity=6, procedures=("ping", "compare"))
    assert [s.command for s in net.log] == [Command.READY, Command.HEARTBEAT]
    assert net.log[0].source == b"w1" and net.log[1].target == b"w1"
    assert net.client is not None
    # the client announces its own settings, and its session id
    assert decode(net.log[1].frames) == Heartbeat(0.5, 4, 64 * 2**20, net.client.session)
    ready = Ready("w1", 6, 2.0, 3, ("ping", "compare"), 0)
    assert net.events(CLIENT) == [WorkerRegistered(b"w1", ready)]
    assert net.events(b"w1") == [ClientRegistered(0.5, 4)]
    assert worker.registered
    assert net.client is not None and net.client.workers[b"w1"].ready == ready


def test_a_worker_that_is_not_registered_sends_no_heartbeats_only_ready(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.kill_client()
    net.add_worker(b"w1", heartbeat=1.0)
    net.run(10.0)
    assert {s.command for s in net.sent(b"w1")} == {Command.READY}


def test_a_waiting_worker_re_sends_ready_every_heartbeat(network: Callable[..., Network]) -> None:
    net = network()
    net.kill_client()
    start = net.now
    net.add_worker(b"w1", heartbeat=0.5)
    net.run(10.0)
    times = [s.time - start for s in net.sent(b"w1", Command.READY)]
    assert times == pytest.approx([0.5 * i for i in range(21)])
    assert {r.incarnation for r in readies(net, b"w1")} == {0}  # waiting loses nothing


def test_a_worker_waiting_for_an_hour_is_registered_as_soon_as_its_client_binds(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.kill_client()
    net.add_worker(b"w1", heartbeat=1.0)
    net.run(3600.0)
    bound_at = net.now
    net.start_client()
    [(when, _)] = net.timed_events(CLIENT, WorkerRegistered)
    assert when == bound_at  # the new connection brings a READY at once
    assert net.workers[b"w1"].registered


def test_a_waiting_worker_is_registered_within_one_heartbeat_even_without_a_connection_event(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.kill_client()
    net.add_worker(b"w1", heartbeat=1.0)
    net.run(100.25)
    bound_at = net.now
    net.start_client(connect=False)
    took = net.run_until(lambda: net.workers[b"w1"].registered)
    assert took <= 1.0
    assert net.timed_events(CLIENT, WorkerRegistered)[0][0] - bound_at <= 1.0


# ----------------------------------------------------------------------------- duplicates and incarnations


def test_a_duplicate_ready_with_the_same_incarnation_is_only_acknowledged_again(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    events, out = net.inject_to_client(b"w1", FrameCodec().encode(worker.ready))
    assert events == []
    assert [(peer, decode(frames)) for peer, frames in out] == [(b"w1", Heartbeat(1.0, 3, 64 * 2**20, net.client.session))]
    assert net.events(CLIENT, WorkerGone) == []


def test_a_duplicate_ready_keeps_the_calls_the_client_sent_and_counts_as_a_sign_of_life(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    assert net.client is not None
    net.client.workers[b"w1"].calls.add(7)
    net.clock.advance(2.0)
    net.inject_to_client(b"w1", FrameCodec().encode(worker.ready))
    assert net.client.workers[b"w1"].calls == {7}
    assert net.client.workers[b"w1"].peer.last_received == net.now


def test_a_link_slower_than_the_heartbeat_makes_ready_repeat_but_registers_the_worker_once(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, latency=1.6)
    net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(20.0)
    assert len(readies(net, b"w1")) >= 3  # re-sent while the acknowledgement travelled
    assert len(net.events(CLIENT, WorkerRegistered)) == 1
    assert net.events(CLIENT, WorkerGone) == []
    assert net.events(b"w1") == [ClientRegistered(1.0, 3)]


def test_a_ready_with_a_new_incarnation_from_a_known_worker_yields_worker_gone_then_worker_registered(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    again = Ready("w1", worker.ready.capacity, 1.0, 3, worker.ready.procedures, 1)
    events, out = net.inject_to_client(b"w1", FrameCodec().encode(again))
    assert [type(e) for e in events] == [WorkerGone, WorkerRegistered]
    assert events[0].peer == b"w1" and events[1] == WorkerRegistered(b"w1", again)
    assert net.client is not None
    assert [decode(frames) for _, frames in out] == [Heartbeat(1.0, 3, 64 * 2**20, net.client.session)]
    assert net.client is not None and net.client.workers[b"w1"].calls == set()


def test_an_older_incarnation_also_counts_as_a_new_one(network: Callable[..., Network]) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    net.inject_to_client(b"w1", FrameCodec().encode(Ready("w1", 4, 1.0, 3, worker.ready.procedures, 5)))
    events, _ = net.inject_to_client(b"w1", FrameCodec().encode(worker.ready))
    assert [type(e) for e in events] == [WorkerGone, WorkerRegistered]


# ----------------------------------------------------------------------------- losing the client


def test_after_its_client_falls_silent_a_worker_waits_again_with_a_bumped_incarnation(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0)
    net.run(5.0)
    net.kill_client()
    net.run_until(lambda: not worker.registered)
    lost_at = net.now
    assert net.events(b"w1", ClientLost) == [ClientLost("the client fell silent", silent=True)]
    assert worker.ready.incarnation == 1
    # READY goes out in the same tick, then every heartbeat
    assert [s.time for s in net.sent(b"w1", Command.READY, since=lost_at)] == [lost_at]
    net.run(3.0)
    assert [r.incarnation for r in readies(net, b"w1", since=lost_at)] == [1, 1, 1, 1]


def test_after_a_disconnect_from_its_client_a_worker_waits_again_with_a_bumped_incarnation(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    net.run(2.0)
    net.close_client()
    assert net.events(b"w1", ClientLost) == [ClientLost("the client closed", closed=True)]
    assert not worker.registered and worker.ready.incarnation == 1
    assert worker.next_deadline() == float("-inf")  # announce again at the next tick


def test_a_client_that_closes_disconnects_every_worker_and_forgets_them(
    network: Callable[..., Network],
) -> None:
    net = network()
    for peer in (b"w1", b"w2", b"w3"):
        net.add_worker(peer)
    client = net.client
    assert client is not None
    out = client.close(net.now)
    assert sorted(peer for peer, _ in out) == [b"w1", b"w2", b"w3"]
    assert {decode(frames) for _, frames in out} == {Disconnect(True)}
    assert client.workers == {} and client.next_deadline() == float("inf")


def test_a_client_that_comes_back_after_being_expired_gets_the_worker_back_as_a_new_incarnation(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(2.0)
    net.client_frozen = True  # the client process is stopped; the worker still reaches its socket
    net.run(4.0)
    assert net.events(b"w1", ClientLost) == [ClientLost("the client fell silent", silent=True)]
    net.client_frozen = False
    net.run(1.0)
    assert [type(e) for e in net.events(CLIENT)] == [WorkerRegistered, WorkerGone, WorkerRegistered]
    assert net.client is not None and net.client.workers[b"w1"].ready.incarnation == 1
    assert worker.registered
    net.run(30.0)
    assert len(net.events(CLIENT, WorkerGone)) == 1


def test_a_message_from_an_unknown_worker_gets_a_disconnect_and_that_worker_registers_again(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.freeze(b"w1")  # stopped long enough to be declared dead...
    net.run(3.5)
    assert net.events(CLIENT, WorkerGone) == [WorkerGone(b"w1", "it fell silent")]
    net.thaw(b"w1")  # ...then it carries on as if nothing happened
    worker_answer = net.worker_send(b"w1", Command.REPLY, [Entry(1, 0, b"late")])
    net.deliver()
    [disconnect] = net.sent(CLIENT, Command.DISCONNECT, since=worker_answer.time)
    assert disconnect.target == b"w1" and decode(disconnect.frames) == Disconnect(True)
    assert net.events(CLIENT, CallsReceived) == []  # the late answer is not delivered
    assert net.events(b"w1", ClientLost) == [ClientLost("the client closed", closed=True)]
    net.run(TICK_GRANULARITY)
    assert worker.registered and worker.ready.incarnation == 1
    assert [type(e) for e in net.events(CLIENT)] == [WorkerRegistered, WorkerGone, WorkerRegistered]


def test_a_disconnect_from_an_unknown_worker_gets_no_reply(network: Callable[..., Network]) -> None:
    net = network()
    assert net.inject_to_client(b"stranger", FrameCodec().encode(Disconnect(True))) == ([], [])
    assert net.inject_to_client(b"stranger", FrameCodec().encode(Disconnect(False))) == ([], [])


@pytest.mark.parametrize("command", [Command.HEARTBEAT, Command.PARTIAL, Command.REPLY, Command.ERROR])
def test_any_other_message_from_an_unknown_worker_gets_a_disconnect(
    command: Command, network: Callable[..., Network],
) -> None:
    net = network()
    message = Heartbeat(1.0, 3) if command is Command.HEARTBEAT else Calls(command, (Entry(1, 0, b"x"),))
    events, out = net.inject_to_client(b"stranger", FrameCodec().encode(message))
    assert events == []
    assert [(peer, decode(frames)) for peer, frames in out] == [(b"stranger", Disconnect(True))]


# ----------------------------------------------------------------------------- a restarted client


def test_a_restarted_client_registers_a_worker_that_had_not_noticed_the_previous_clients_death(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(2.0)
    net.kill_client()
    net.run(0.5)  # far less than the 3 s the worker would need to notice
    assert worker.registered
    restarted_at = net.now
    net.start_client()  # the worker's socket reports the new connection: connected()
    assert net.events(b"w1", ClientLost) == [
        ClientLost("a new connection to the endpoint (the client restarted)")
    ]
    assert [ready.incarnation for ready in readies(net, b"w1", since=restarted_at)] == [1]
    assert net.timed_events(CLIENT, WorkerRegistered, since=restarted_at)[0][0] == restarted_at
    assert worker.registered
    assert net.events(b"w1", ClientRegistered) == [ClientRegistered(1.0, 3)] * 2


def test_a_restarted_client_registers_a_stale_worker_even_without_a_connection_event(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(2.0)
    net.kill_client()
    net.start_client(connect=False)  # the worker's next heartbeat meets a client that never saw it
    restarted_at = net.now
    net.run_until(lambda: bool(net.events(CLIENT, WorkerRegistered, since=restarted_at)))
    assert net.now - restarted_at <= 1.0 + TICK_GRANULARITY
    assert net.events(b"w1", ClientLost) == [ClientLost("the client closed", closed=True)]
    assert worker.registered and worker.ready.incarnation == 1


def test_a_new_connection_while_waiting_loses_nothing_and_keeps_the_incarnation(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.kill_client()
    worker = net.add_worker(b"w1")
    net.run(5.0)
    assert worker.connected(net.now) == []
    assert worker.ready.incarnation == 0


def test_a_restarted_client_with_several_workers_registers_them_all_within_one_heartbeat(
    network: Callable[..., Network],
) -> None:
    net = network()
    for index, peer in enumerate((b"a", b"b", b"c", b"d")):
        net.add_worker(peer, heartbeat=0.25 * (index + 1))
    net.run(3.0)
    net.kill_client()
    net.run(0.4)
    net.start_client(connect=False)
    restarted_at = net.now
    net.run(1.0 + TICK_GRANULARITY)
    again = net.events(CLIENT, WorkerRegistered, since=restarted_at)
    assert sorted(e.peer for e in again) == [b"a", b"b", b"c", b"d"]


# ----------------------------------------------------------------------------- leaving


def test_a_worker_disconnect_not_final_means_leaving_and_final_means_gone(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.add_worker(b"w1")
    net.worker_disconnect(b"w1", final=False)
    net.deliver()
    assert net.events(CLIENT)[-1] == WorkerLeaving(b"w1")
    assert net.client is not None and net.client.workers[b"w1"].leaving
    net.worker_send(b"w1", Command.REPLY, [Entry(1, 0, b"finished")])  # still answers
    net.worker_disconnect(b"w1", final=True)
    net.deliver()
    assert net.events(CLIENT)[-2:] == [
        CallsReceived(Command.REPLY, (Entry(1, 0, b"finished"),), b"w1"),
        WorkerGone(b"w1", "it left"),
    ]
    assert b"w1" not in net.client.workers
    assert net.sent(CLIENT, Command.DISCONNECT) == []  # a final DISCONNECT gets no answer


def test_a_worker_that_leaves_at_once_is_gone_without_a_leaving_step(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.add_worker(b"w1")
    net.worker_disconnect(b"w1", final=True)
    net.deliver()
    assert net.events(CLIENT)[1:] == [WorkerGone(b"w1", "it left")]


def test_a_leaving_worker_is_not_registered_again_by_its_clients_heartbeats(
    network: Callable[..., Network],
) -> None:
    net = network()
    worker = net.add_worker(b"w1")
    net.run(1.0)
    net.worker_disconnect(b"w1", final=False)
    net.close_client()
    restarted_at = net.now
    net.start_client()  # a new connection: a leaving worker does not announce itself
    net.run(10.0)
    assert net.sent(b"w1", Command.READY, since=restarted_at) == []
    assert not worker.registered and worker.leaving
    assert worker.receive(FrameCodec().encode(Heartbeat(1.0, 3)), net.now) == []
    assert not worker.registered


# ----------------------------------------------------------------------------- calls


def test_requests_and_cancels_reach_the_worker_and_answers_reach_the_client_naming_the_worker(
    network: Callable[..., Network],
) -> None:
    net = network()
    net.add_worker(b"w1")
    net.add_worker(b"w2")
    net.client_send(b"w1", Command.REQUEST, [Entry(1, 0, b"a"), Entry(2, 0, b"b")])
    net.client_send(b"w2", Command.CANCEL, [Entry(3)])
    net.deliver()
    assert net.events(b"w1", CallsReceived) == [
        CallsReceived(Command.REQUEST, (Entry(1, 0, b"a"), Entry(2, 0, b"b")))
    ]
    assert net.events(b"w2", CallsReceived) == [CallsReceived(Command.CANCEL, (Entry(3),))]
    net.worker_send(b"w1", Command.PARTIAL, [Entry(1, 1), Entry(2, 1)])
    net.worker_send(b"w1", Command.REPLY, [Entry(1, 0, b"ra")])
    net.worker_send(b"w1", Command.ERROR, [Entry(2, 0, b"eb")])
    net.deliver()
    assert [(e.command, e.peer, [x.request_id for x in e.entries])
            for e in net.events(CLIENT, CallsReceived)] == [
        (Command.PARTIAL, b"w1", [1, 2]), (Command.REPLY, b"w1", [1]), (Command.ERROR, b"w1", [2]),
    ]


def test_a_fresh_worker_protocol_is_waiting_and_a_fresh_client_protocol_knows_no_worker() -> None:
    worker = WorkerProtocol(FrameCodec(), Ready("w", 1, 1.0, 3, ()), 0.0)
    assert not worker.registered and not worker.leaving and worker.ready.incarnation == 0
    client = ClientProtocol(FrameCodec(), 1.0, 3)
    assert client.workers == {}


@pytest.mark.parametrize("latency", [0.0, 0.05, 0.4])
def test_a_worker_thawed_after_being_declared_dead_registers_again_once_however_many_stale_messages_it_sends(
    latency: float, network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.2, liveness=3, latency=latency)
    worker = net.add_worker(b"w1", heartbeat=0.2, liveness=3)
    net.run(1.0)
    net.freeze(b"w1")
    net.run(2.0)
    assert net.events(CLIENT, WorkerGone) == [WorkerGone(b"w1", "it fell silent")]
    net.thaw(b"w1")
    for request_id in range(5):  # answers it had ready when it stopped
        net.worker_send(b"w1", Command.REPLY, [Entry(request_id, 0, b"late")])
    net.run(20.0)
    assert [type(e) for e in net.events(CLIENT)] == [WorkerRegistered, WorkerGone, WorkerRegistered]
    assert net.events(CLIENT, CallsReceived) == []
    # told by the client's DISCONNECT, or (on a link slower than the client's patience) by its
    # silence first: either way the worker loses the client once
    [lost] = net.events(b"w1", ClientLost)
    assert lost.reason in ("the client closed", "the client fell silent")
    assert worker.registered and worker.ready.incarnation == 1
