"""Heartbeats and liveness on a fake clock (SPEC §5): each side judges the other by the interval
and liveness the other announced, heartbeats go out only when nothing else did, and different
settings on the two sides never cause a false death."""

from __future__ import annotations

from typing import Callable

import pytest

from pirate_actors.protocol import (
    SIGNATURE,
    ClientLost,
    ClientProtocol,
    ClientRegistered,
    Command,
    Entry,
    FrameCodec,
    Heartbeat,
    Peer,
    Ready,
    WorkerGone,
    WorkerLeaving,
    WorkerProtocol,
    WorkerRegistered,
)

from .conftest import CLIENT, FakeClock, Network, TICK_GRANULARITY, decode

pytestmark = pytest.mark.timeout(10)


# ----------------------------------------------------------------------------- expiry


def test_a_peer_is_dead_only_once_it_has_been_silent_for_more_than_heartbeat_times_liveness() -> None:
    peer = Peer(100.0, 0.5, 4)
    assert peer.expiry == 102.0
    assert not peer.expired(102.0)
    assert peer.expired(102.0 + 1e-9)
    peer.last_received = 101.0
    assert not peer.expired(102.5)


@pytest.mark.parametrize("stop", ["freeze", "kill"])
def test_a_worker_silent_for_its_heartbeat_times_liveness_is_declared_gone_at_the_next_tick_not_before(
    stop: str, network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    net.add_worker(b"w1", heartbeat=0.5, liveness=4)
    net.run(5.0)
    assert net.client is not None
    last = net.client.workers[b"w1"].peer.last_received
    getattr(net, f"{stop}_worker" if stop == "kill" else stop)(b"w1")
    net.run(last + 2.0 - net.now)
    assert net.now == last + 2.0
    assert net.events(CLIENT, WorkerGone) == []
    assert b"w1" in net.client.workers
    net.run(TICK_GRANULARITY)
    assert net.timed_events(CLIENT, WorkerGone) == [(net.now, WorkerGone(b"w1", "it fell silent"))]
    assert b"w1" not in net.client.workers


def test_the_client_judges_a_worker_by_the_longer_interval_the_worker_announced(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.1, liveness=3)
    net.add_worker(b"w1", heartbeat=2.0, liveness=3)
    net.run(10.0)
    net.freeze(b"w1")
    frozen_at = net.now
    net.run(5.5)  # far beyond the client's own 0.3 s
    assert net.events(CLIENT, WorkerGone) == []
    gone = net.run_until(lambda: bool(net.events(CLIENT, WorkerGone)))
    assert frozen_at + 5.5 + gone <= frozen_at + 6.0 + 2 * TICK_GRANULARITY


def test_the_client_judges_a_worker_by_the_shorter_interval_the_worker_announced(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=2.0, liveness=3)
    net.add_worker(b"w1", heartbeat=0.1, liveness=3)
    net.run(10.0)
    assert net.client is not None
    last = net.client.workers[b"w1"].peer.last_received
    net.freeze(b"w1")
    net.run_until(lambda: bool(net.events(CLIENT, WorkerGone)))
    assert last + 0.3 < net.now <= last + 0.3 + 2 * TICK_GRANULARITY


def test_the_worker_expires_a_silent_client_by_the_interval_the_client_announced(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.5, liveness=2)
    worker = net.add_worker(b"w1", heartbeat=2.0, liveness=3)
    net.run(10.0)
    assert (worker.client.heartbeat, worker.client.liveness) == (0.5, 2)
    last = worker.client.last_received
    net.client_frozen = True
    net.run(last + 1.0 - net.now)
    assert net.events(b"w1", ClientLost) == []
    assert worker.registered
    net.run(TICK_GRANULARITY)
    assert net.timed_events(b"w1", ClientLost) == [(net.now, ClientLost("the client fell silent", silent=True))]
    assert not worker.registered


def test_a_worker_does_not_judge_its_client_by_its_own_shorter_interval(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=2.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=0.1, liveness=3)
    net.run(10.0)
    last = worker.client.last_received
    net.client_frozen = True
    net.run(last + 6.0 - net.now)
    assert net.events(b"w1", ClientLost) == []
    net.run(TICK_GRANULARITY)
    assert len(net.events(b"w1", ClientLost)) == 1


def test_a_sign_of_life_of_any_kind_postpones_the_expiry(network: Callable[..., Network]) -> None:
    net = network(heartbeat=1.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    assert net.client is not None
    net.clock.advance(2.5)
    net.worker_send(b"w1", Command.PARTIAL, [Entry(1, 0, b"x")])
    net.deliver()
    assert net.client.workers[b"w1"].peer.expiry == net.now + 3.0
    net.client_send(b"w1", Command.CANCEL, [Entry(1)])
    net.deliver()
    assert worker.client.expiry == net.now + 3.0


def test_a_heartbeat_announcing_new_settings_changes_how_its_sender_is_judged(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    assert net.client is not None
    net.inject_to_client(b"w1", FrameCodec().encode(Heartbeat(5.0, 2)))
    assert net.client.workers[b"w1"].peer.expiry == net.now + 10.0
    net.inject_to_worker(b"w1", FrameCodec().encode(Heartbeat(0.25, 8)))
    assert worker.client.expiry == net.now + 2.0


def test_a_waiting_worker_expires_nothing_however_long_it_waits(network: Callable[..., Network]) -> None:
    net = network()
    net.kill_client()
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(600.0)
    assert net.events(b"w1") == []
    assert not worker.registered


def test_a_leaving_worker_keeps_heartbeating_and_is_not_declared_gone_while_it_finishes(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    net.add_worker(b"w1", heartbeat=0.5, liveness=3)
    net.worker_disconnect(b"w1", final=False)
    leaving_at = net.now
    net.run(60.0)
    assert net.events(CLIENT, WorkerLeaving) == [WorkerLeaving(b"w1")]
    assert net.events(CLIENT, WorkerGone) == []
    assert len(net.sent(b"w1", Command.HEARTBEAT, since=leaving_at)) == pytest.approx(120, abs=1)
    assert net.client is not None and net.client.workers[b"w1"].leaving


def test_a_leaving_worker_that_falls_silent_is_declared_gone(network: Callable[..., Network]) -> None:
    net = network()
    net.add_worker(b"w1", heartbeat=0.5, liveness=3)
    net.worker_disconnect(b"w1", final=False)
    net.run(1.0)
    net.kill_worker(b"w1")
    net.run(1.6)
    assert net.events(CLIENT, WorkerGone) == [WorkerGone(b"w1", "it fell silent")]


# ----------------------------------------------------------------------------- mismatched settings

MISMATCHED = [
    pytest.param((0.1, 3), (2.0, 3), 0.0, id="client 0.1x3, worker 2.0x3"),
    pytest.param((2.0, 3), (0.1, 3), 0.0, id="client 2.0x3, worker 0.1x3"),
    pytest.param((0.1, 3), (2.0, 3), 0.05, id="client 0.1x3, worker 2.0x3, 50 ms latency"),
    pytest.param((2.0, 3), (0.1, 3), 0.05, id="client 2.0x3, worker 0.1x3, 50 ms latency"),
    pytest.param((0.5, 1), (0.5, 1), 0.0, id="both 0.5x1"),
    pytest.param((3600.0, 1), (0.01, 1000), 0.0, id="client 3600x1, worker 0.01x1000"),
]


@pytest.mark.parametrize("client_settings, worker_settings, latency", MISMATCHED)
def test_different_heartbeat_settings_never_cause_a_false_death_in_either_direction(
    client_settings: tuple[float, int], worker_settings: tuple[float, int], latency: float,
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=client_settings[0], liveness=client_settings[1], latency=latency)
    worker = net.add_worker(b"w1", heartbeat=worker_settings[0], liveness=worker_settings[1])
    net.run(30.0)
    assert net.events(CLIENT, WorkerGone) == []
    assert net.events(b"w1", ClientLost) == []
    assert len(net.events(CLIENT, WorkerRegistered)) == 1
    assert len(net.events(b"w1", ClientRegistered)) == 1
    assert net.client is not None
    judged = net.client.workers[b"w1"].peer
    assert (judged.heartbeat, judged.liveness) == worker_settings
    assert (worker.client.heartbeat, worker.client.liveness) == client_settings


def test_workers_with_many_different_settings_stay_alive_with_one_client(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.2, liveness=3, latency=0.01)
    settings = {b"fast": (0.05, 3), b"slow": (1.0, 3), b"sleepy": (5.0, 2), b"tight": (0.3, 2)}
    for peer, (heartbeat, liveness) in settings.items():
        net.add_worker(peer, heartbeat=heartbeat, liveness=liveness)
    net.run(30.0)
    assert net.events(CLIENT, WorkerGone) == []
    assert all(net.events(peer, ClientLost) == [] for peer in settings)
    assert net.client is not None and set(net.client.workers) == set(settings)


def test_a_worker_that_registers_with_a_slow_link_is_not_judged_by_the_time_its_ready_took(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.1, liveness=3, latency=0.25)
    net.add_worker(b"w1", heartbeat=0.1, liveness=3)
    net.run(30.0)
    assert net.events(CLIENT, WorkerGone) == []
    assert net.events(b"w1", ClientLost) == []


# ----------------------------------------------------------------------------- when heartbeats go out


def test_an_idle_connection_carries_one_heartbeat_per_interval_each_way_at_each_sides_own_rate(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.5, liveness=3)
    net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    start = net.now
    net.run(10.0)
    from_client = [s.time - start for s in net.sent(CLIENT, Command.HEARTBEAT)]
    from_worker = [s.time - start for s in net.sent(b"w1", Command.HEARTBEAT)]
    # the client's first HEARTBEAT is its acknowledgement of READY, at once
    assert from_client == pytest.approx([0.5 * i for i in range(21)])
    assert from_worker == pytest.approx([1.0 * i for i in range(1, 11)])


def test_each_heartbeat_announces_its_senders_own_interval_and_liveness(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.5, liveness=4)
    net.add_worker(b"w1", heartbeat=2.0, liveness=5)
    net.run(10.0)
    session = net.client.session if net.client else b""
    assert {decode(s.frames) for s in net.sent(CLIENT, Command.HEARTBEAT)} == {Heartbeat(0.5, 4, 64 * 2**20, session)}
    assert {decode(s.frames) for s in net.sent(b"w1", Command.HEARTBEAT)} == {Heartbeat(2.0, 5, 64 * 2**20)}


def test_heartbeats_go_out_only_when_nothing_else_was_sent_within_the_interval(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    busy_from = net.now
    for request_id in range(20):  # both sides busy every 0.9 s for 18 s
        net.run(0.9)
        net.client_send(b"w1", Command.REQUEST, [Entry(request_id, 0, b"call")])
        net.worker_send(b"w1", Command.REPLY, [Entry(request_id, 0, b"result")])
    assert net.sent(CLIENT, Command.HEARTBEAT, since=busy_from + 0.5) == []
    assert net.sent(b"w1", Command.HEARTBEAT, since=busy_from + 0.5) == []
    idle_from = net.now
    net.run(5.0)
    assert len(net.sent(CLIENT, Command.HEARTBEAT, since=idle_from)) == 5
    assert len(net.sent(b"w1", Command.HEARTBEAT, since=idle_from)) == 5


def test_traffic_to_one_worker_does_not_stand_in_for_heartbeats_to_another(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=1.0, liveness=3)
    net.add_worker(b"busy")
    net.add_worker(b"idle")
    start = net.now
    for request_id in range(10):
        net.run(0.5)
        net.client_send(b"busy", Command.REQUEST, [Entry(request_id, 0, b"call")])
    assert net.sent(CLIENT, Command.HEARTBEAT, since=start + 0.1, target=b"busy") == []
    assert len(net.sent(CLIENT, Command.HEARTBEAT, since=start + 0.1, target=b"idle")) == 5
    assert net.events(b"idle", ClientLost) == []


# ----------------------------------------------------------------------------- deadlines


def test_the_workers_next_deadline_is_its_next_ready_while_waiting() -> None:
    worker = WorkerProtocol(FrameCodec(), Ready("w", 1, 2.0, 3, ()), 50.0)
    assert worker.next_deadline() == float("inf")  # no connection: nothing to send
    assert worker.tick(50.0) == ([], []) and worker.stats.sent == 0
    worker.connected(50.0)
    assert worker.next_deadline() == float("-inf")  # READY is due at once
    events, out = worker.tick(50.0)
    assert events == [] and [f[0][len(SIGNATURE)] for f in out] == [Command.READY]
    assert worker.next_deadline() == 52.0
    assert worker.tick(51.9) == ([], [])
    assert len(worker.tick(52.0)[1]) == 1


def test_the_workers_next_deadline_when_registered_is_its_next_heartbeat_or_the_clients_expiry() -> None:
    worker = WorkerProtocol(FrameCodec(), Ready("w", 1, 2.0, 3, ()), 50.0)
    worker.connected(50.0)
    worker.ready_frames(50.0)
    worker.receive(FrameCodec().encode(Heartbeat(0.1, 3)), 50.5)
    assert worker.registered
    assert worker.next_deadline() == pytest.approx(50.8)  # the client's expiry comes first
    worker.receive(FrameCodec().encode(Heartbeat(10.0, 3)), 50.6)
    assert worker.next_deadline() == 52.0  # now our own heartbeat does


def test_the_clients_next_deadline_is_the_earliest_heartbeat_or_expiry_over_its_workers() -> None:
    client = ClientProtocol(FrameCodec(), 1.0, 3)
    assert client.next_deadline() == float("inf")
    client.receive(b"a", FrameCodec().encode(Ready("a", 1, 5.0, 3, ())), 10.0)
    assert client.next_deadline() == 11.0  # our heartbeat to a
    client.receive(b"b", FrameCodec().encode(Ready("b", 1, 0.1, 2, ())), 10.5)
    assert client.next_deadline() == pytest.approx(10.7)  # b's expiry


def test_a_tick_before_any_deadline_does_nothing(clock: FakeClock) -> None:
    client = ClientProtocol(FrameCodec(), 1.0, 3)
    client.receive(b"a", FrameCodec().encode(Ready("a", 1, 1.0, 3, ())), clock.now)
    before = client.stats.sent
    assert client.tick(clock.now + 0.999) == ([], [])
    assert client.stats.sent == before


# ----------------------------------------------------------------------------- network partitions


def test_a_partition_longer_than_either_sides_patience_is_noticed_on_both_sides(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.5, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(2.0)
    net.cut_link(b"w1")
    net.run(3.5)
    assert net.events(CLIENT, WorkerGone) == [WorkerGone(b"w1", "it fell silent")]
    assert net.events(b"w1", ClientLost) == [ClientLost("the client fell silent", silent=True)]
    net.restore_link(b"w1")
    assert worker.registered and worker.ready.incarnation == 1
    assert [type(e) for e in net.events(CLIENT)] == [WorkerRegistered, WorkerGone, WorkerRegistered]


def test_a_partition_shorter_than_either_sides_patience_costs_nothing_when_the_connection_survives(
    network: Callable[..., Network],
) -> None:
    net = network(heartbeat=0.5, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(2.0)
    net.cut_link(b"w1")
    net.run(1.2)
    net.restore_link(b"w1", reconnect=False)
    net.run(30.0)
    assert net.events(CLIENT, WorkerGone) == [] and net.events(b"w1", ClientLost) == []
    assert worker.ready.incarnation == 0


def test_a_new_connection_to_the_same_live_client_counts_as_a_new_client_and_its_calls_are_lost(
    network: Callable[..., Network],
) -> None:
    # By design: the worker cannot tell a reconnection from a restarted client, so it gives up
    # its calls and announces a new incarnation; the client fails them with WorkerLost.
    net = network(heartbeat=0.5, liveness=3)
    worker = net.add_worker(b"w1", heartbeat=1.0, liveness=3)
    net.run(2.0)
    net.cut_link(b"w1")
    net.run(0.2)
    net.restore_link(b"w1", reconnect=True)
    assert net.events(b"w1", ClientLost) == [
        ClientLost("a new connection to the endpoint (the client restarted)")
    ]
    assert [type(e) for e in net.events(CLIENT)] == [WorkerRegistered, WorkerGone, WorkerRegistered]
    assert worker.registered and worker.ready.incarnation == 1


def test_a_worker_that_judged_its_client_silent_sends_nothing_until_its_fresh_connection_is_up() -> None:
    # It starts over with a fresh socket; a READY on the old one could reach the client first
    # and get the client's next calls routed into the connection being torn down.
    worker = WorkerProtocol(FrameCodec(), Ready("w", 1, 0.5, 3, ()), 50.0)
    worker.connected(50.0)
    worker.ready_frames(50.0)
    worker.receive(FrameCodec().encode(Heartbeat(0.5, 3)), 50.0)
    assert worker.registered
    events, out = worker.tick(60.0)
    assert [type(e) for e in events] == [ClientLost] and events[0].silent
    assert out == [] and worker.next_deadline() == float("inf")
    assert worker.tick(61.0) == ([], [])
    worker.connected(61.5)
    events, out = worker.tick(61.5)
    assert [f[0][len(SIGNATURE)] for f in out] == [Command.READY]
