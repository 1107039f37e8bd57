"""Replay protection (SPEC §13): a signed message captured off the wire and sent again — to the
same peer or another, at once or later — is dropped and counted, never acted on.

Sessions on a fake clock, in memory (see conftest's :class:`Network`): every frame a peer sent
is in ``net.log``, so a test replays exactly what an eavesdropper would have captured."""

from __future__ import annotations

from typing import Callable

import pytest

from pirate_actors.protocol import (
    CallsReceived,
    ClientRegistered,
    Command,
    Entry,
    FrameCodec,
    Ready,
    WorkerGone,
    WorkerRegistered,
)

from .conftest import CLIENT, Network

pytestmark = pytest.mark.timeout(10)

KEY = b"0123456789abcdef-shared-secret"
OLD_KEY = b"the-key-we-used-last-month-0001"


def captured(net: Network, source: object, command: Command) -> list[bytes]:
    """The frames of the last ``command`` that ``source`` put on the wire."""
    return net.sent(source, command)[-1].frames


def sent_request(net: Network, peer: bytes) -> list[bytes]:
    """Send REQUEST 7 to ``peer``, deliver it, and return its frames as captured on the wire."""
    net.client_send(peer, Command.REQUEST, [Entry(7, 0, b"call")])
    net.deliver()
    return captured(net, CLIENT, Command.REQUEST)


def requests_seen(net: Network, peer: bytes) -> list[int]:
    return [e.request_id for ev in net.events(peer, CallsReceived)
            if ev.command is Command.REQUEST for e in ev.entries]


def test_a_replayed_request_is_dropped_counted_and_never_reaches_the_worker_again(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY)
    worker = net.add_worker(b"w1")
    request = sent_request(net, b"w1")
    assert requests_seen(net, b"w1") == [7]
    for _ in range(3):
        assert net.inject_to_worker(b"w1", request) == []
    net.run(5)  # and later
    assert net.inject_to_worker(b"w1", request) == []
    assert requests_seen(net, b"w1") == [7]
    assert worker.stats.replayed == 4 and worker.stats.unauthenticated == 0
    assert worker.registered  # nothing else changed


def test_a_request_for_one_worker_sent_to_another_is_a_replay(network: Callable[..., Network]) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1")
    other = net.add_worker(b"w2")
    assert net.inject_to_worker(b"w2", sent_request(net, b"w1")) == []
    assert requests_seen(net, b"w2") == [] and other.stats.replayed == 1


def test_a_request_of_an_earlier_session_is_refused_after_the_worker_registers_again(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY)
    worker = net.add_worker(b"w1")
    old_request = sent_request(net, b"w1")
    net.kill_client()
    net.start_client()  # a new client: the worker's connection comes up again, a new session
    net.run(2)
    assert worker.registered and len(net.events(CLIENT, WorkerRegistered)) == 2
    assert net.inject_to_worker(b"w1", old_request) == []
    assert requests_seen(net, b"w1") == [7] and worker.stats.replayed == 1


def test_a_replayed_ready_never_registers_a_worker_from_the_same_or_another_connection(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1")
    assert net.client is not None and list(net.client.workers) == [b"w1"]
    ready = captured(net, b"w1", Command.READY)
    registered = len(net.events(CLIENT, WorkerRegistered))
    assert net.inject_to_client(b"w1", ready) == ([], [])
    assert net.inject_to_client(b"intruder", ready) == ([], [])  # no answer: no handshake either
    net.run(10)
    assert len(net.events(CLIENT, WorkerRegistered)) == registered
    assert list(net.client.workers) == [b"w1"] and net.client.stats.replayed == 2


def test_a_ready_replayed_after_its_worker_left_registers_nothing(network: Callable[..., Network]) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1")
    ready = captured(net, b"w1", Command.READY)
    net.worker_disconnect(b"w1", final=True)
    net.deliver()
    assert net.events(CLIENT, WorkerGone) and net.client is not None and not net.client.workers
    assert net.inject_to_client(b"w1", ready) == ([], [])
    assert net.inject_to_client(b"w9", ready) == ([], [])
    net.run(10)
    assert not net.client.workers and net.client.stats.replayed == 2


def test_a_ready_the_client_has_never_seen_opens_a_handshake_that_only_the_key_holder_completes(
    network: Callable[..., Network],
) -> None:
    # A READY from before this client started (so not remembered): it is answered, but the
    # worker is registered only by a message sealed with the client's answer, which a replay
    # cannot produce.
    net = network(key=KEY)
    net.add_worker(b"w1")
    ready = captured(net, b"w1", Command.READY)
    proof = captured(net, b"w1", Command.HEARTBEAT)  # its answer to the old client's nonce
    net.kill_client()
    net.kill_worker(b"w1")
    net.run(1)
    client = net.start_client()
    started = net.now
    events, answers = net.inject_to_client(b"intruder", ready)
    assert events == [] and [peer for peer, _ in answers] == [b"intruder"]
    assert net.inject_to_client(b"intruder", proof) == ([], [])  # sealed for another client nonce
    assert client.stats.replayed == 1
    net.run(10)
    assert client.workers == {} and client.pending == {}  # the half-open handshake expired
    assert net.events(CLIENT, WorkerRegistered, since=started) == []


def test_a_signed_registration_completes_only_when_the_worker_answers_with_both_nonces(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY)
    worker = net.add_worker(b"w1", connect=False)
    net.connection_up(b"w1")
    net.deliver()
    # READY went out and the client answered; the worker counts as registered on its side ...
    assert worker.registered and net.events(b"w1", ClientRegistered)
    assert net.client is not None and b"w1" in net.client.pending and not net.client.workers
    # ... and its HEARTBEAT, due at once, completes the client's side.
    net.tick()
    assert list(net.client.workers) == [b"w1"] and not net.client.pending
    heartbeat = net.sent(b"w1", Command.HEARTBEAT)[0]
    _, seal = FrameCodec(KEY).open(heartbeat.frames)
    assert seal is not None and seal.receiver == net.client.workers[b"w1"].client_nonce


def test_without_a_key_a_ready_registers_at_once(network: Callable[..., Network]) -> None:
    net = network()
    worker = net.add_worker(b"w1", connect=False)
    net.connection_up(b"w1")
    net.deliver()
    assert worker.registered and net.client is not None and list(net.client.workers) == [b"w1"]


def test_replayed_answers_never_reach_the_client_twice(network: Callable[..., Network]) -> None:
    net = network(key=KEY)
    net.add_worker(b"w1")
    net.worker_send(b"w1", Command.REPLY, [Entry(7, 0, b"result")])
    net.deliver()
    reply = captured(net, b"w1", Command.REPLY)
    assert net.inject_to_client(b"w1", reply) == ([], [])
    assert net.inject_to_client(b"w2", reply) == ([], [])
    assert len(net.events(CLIENT, CallsReceived)) == 1
    assert net.client is not None and net.client.stats.replayed == 2


def test_a_replayed_disconnect_does_not_unregister_the_worker_again(network: Callable[..., Network]) -> None:
    net = network(key=KEY)
    worker = net.add_worker(b"w1")
    net.close_client()  # its DISCONNECT is captured
    goodbye = captured(net, CLIENT, Command.DISCONNECT)
    net.start_client()
    net.run(2)
    assert worker.registered
    assert net.inject_to_worker(b"w1", goodbye) == []
    assert worker.registered and worker.stats.replayed == 1


def test_a_worker_the_client_forgot_is_asked_to_register_again_and_does(network: Callable[..., Network]) -> None:
    # Not a replay: a live worker whose session the client ended (it fell silent too long)
    # speaks again with fresh numbers; the client asks it to register, and it does.
    net = network(key=KEY)
    worker = net.add_worker(b"w1")
    net.freeze(b"w1")
    net.run(3.5)
    assert net.client is not None and not net.client.workers
    net.thaw(b"w1")
    net.run(3)
    assert net.client.workers and worker.registered
    assert net.client.stats.replayed == 0 and worker.stats.replayed == 0


@pytest.mark.parametrize("client_keys, worker_keys", [
    ((OLD_KEY, KEY), (OLD_KEY,)),  # step 1: the new key added second, here first
    ((KEY, OLD_KEY), (OLD_KEY, KEY)),  # step 2: signing with the new key, here first
    ((KEY, OLD_KEY), (KEY,)),  # step 3: the old key removed, here first
], ids=["new key accepted", "new key signs", "old key removed"])
def test_key_rotation_keeps_workers_registered_and_calls_flowing_both_ways(
    network: Callable[..., Network], client_keys: tuple[bytes, ...], worker_keys: tuple[bytes, ...],
) -> None:
    net = network(key=client_keys)
    net.add_worker(b"w1", key=worker_keys)
    assert net.client is not None and list(net.client.workers) == [b"w1"]
    net.client_send(b"w1", Command.REQUEST, [Entry(7, 0, b"call")])
    net.deliver()
    net.worker_send(b"w1", Command.REPLY, [Entry(7, 0, b"result")])
    net.run(5)
    assert requests_seen(net, b"w1") == [7]
    assert [e.entries for e in net.events(CLIENT, CallsReceived)] == [(Entry(7, 0, b"result"),)]
    assert net.client.stats.unauthenticated == 0


@pytest.mark.parametrize("client_keys, worker_keys", [
    ((KEY,), (OLD_KEY,)),
    ((KEY, OLD_KEY), (OLD_KEY,)),  # signing with a key the worker does not accept yet
], ids=["no key in common", "a step skipped"])
def test_peers_that_cannot_verify_each_other_never_register(
    network: Callable[..., Network], client_keys: tuple[bytes, ...], worker_keys: tuple[bytes, ...],
) -> None:
    net = network(key=client_keys)
    worker = net.add_worker(b"w1", key=worker_keys)
    net.run(5)
    assert net.events(CLIENT, WorkerRegistered) == [] and not worker.registered


def test_a_ready_is_not_registered_twice_when_the_worker_repeats_it_before_the_answer(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY, latency=1.5)  # the answer takes longer than a heartbeat
    net.add_worker(b"w1")
    net.run(6)
    assert len(net.events(CLIENT, WorkerRegistered)) == 1
    assert net.client is not None and net.client.stats.replayed == 0
    assert isinstance(FrameCodec(KEY).decode(captured(net, b"w1", Command.READY)), Ready)


def test_a_worker_that_reconnects_on_the_same_socket_registers_again_at_once(
    network: Callable[..., Network],
) -> None:
    # A TCP drop: libzmq reconnects the same DEALER (same routing id) and the worker starts a
    # new session while the client still holds the old one. The answer to the new READY must be
    # sealed for the new session, not the old (review finding: it was, and the worker dropped it).
    net = network(key=KEY)
    worker = net.add_worker(b"w1")
    assert net.client is not None
    old = net.client.workers[b"w1"].nonce
    net.connection_up(b"w1")
    net.run(0.1)
    assert worker.registered and net.client.workers[b"w1"].nonce != old
    assert net.client.stats.replayed == 0 and worker.stats.replayed == 0


def test_a_heartbeat_replayed_to_another_client_with_the_key_cannot_be_turned_into_a_goodbye(
    network: Callable[..., Network],
) -> None:
    # Review finding: a second client sharing the key used to answer a replayed message of a
    # session it never saw with a signed DISCONNECT for that session, which, injected on the
    # worker's connection, cut it off. Now it answers nothing, and a goodbye not sealed by the
    # worker's own client is a replay to the worker.
    from pirate_actors.protocol import ClientProtocol, Disconnect, Seal

    net = network(key=KEY)
    worker = net.add_worker(b"w1")
    heartbeat = captured(net, b"w1", Command.HEARTBEAT)
    other = ClientProtocol(FrameCodec(KEY), 1.0, 3)
    assert other.receive(b"w1", heartbeat, net.now) == ([], [])
    forged = FrameCodec(KEY).encode(Disconnect(True), Seal(0, worker.nonce, 1))  # what it used to send
    assert net.inject_to_worker(b"w1", forged) == []
    assert worker.registered and worker.stats.replayed == 1


def test_two_connections_of_one_worker_to_the_same_client_do_not_replace_each_other(
    network: Callable[..., Network],
) -> None:
    # Review finding: endpoints such as 127.0.0.1:P and localhost:P reach one client; both
    # connections carry the worker's id, and each replaced the other in a tight loop.
    from pirate_actors.protocol import Ready

    net = network(key=KEY)
    for lane, peer in enumerate((b"w.1", b"w.2")):
        net.add_worker(peer)
        net.workers[peer].ready = Ready("w", 4, 1.0, 3, ("ping",), id="the-worker", lane=lane)
    net.kill_client()
    net.start_client()
    net.run(5)
    assert net.client is not None and sorted(net.client.workers) == [b"w.1", b"w.2"]
    assert net.events(CLIENT, WorkerGone, since=net.now - 4) == []


def test_an_answer_to_the_ready_before_a_client_restarted_is_late_not_a_replay(
    network: Callable[..., Network],
) -> None:
    # A client closes and another binds the endpoint: the worker's next READY (a new nonce)
    # may already be queued on the new connection when the worker hears of it and starts yet
    # another session. The new client's answer to that READY is dropped as late, with no
    # warning of an attack, and the READY after it registers the worker.
    net = network(key=KEY, latency=0.001)  # the READY is still on its way when...
    worker = net.add_worker(b"w1")
    net.close_client()
    net.start_client(connect=False)  # bound, and the worker's connection not reported yet
    net.tick()  # the worker's READY goes out on the new connection
    net.connection_up(b"w1")  # ... and now its socket reports the connection: a new session
    net.run(3)
    assert worker.registered and net.client is not None and list(net.client.workers) == [b"w1"]
    assert worker.stats.late == 1 and worker.stats.replayed == 0
    assert worker.stats.last_drop is not None and worker.stats.last_drop[0] == "late"


def test_a_message_for_the_previous_session_is_a_replay_once_the_new_one_heard_its_client(
    network: Callable[..., Network],
) -> None:
    net = network(key=KEY, latency=0.001)
    worker = net.add_worker(b"w1")
    net.close_client()
    before = len(net.sent(CLIENT, Command.HEARTBEAT))
    net.start_client(connect=False)
    net.tick()
    net.connection_up(b"w1")
    net.run(3)
    assert worker.registered and worker.stats.late == 1
    late = net.sent(CLIENT, Command.HEARTBEAT)[before].frames  # the answer dropped as late
    assert net.inject_to_worker(b"w1", late) == []  # again, now that the new session is on
    assert worker.stats.late == 1 and worker.stats.replayed == 1


def test_only_heartbeats_and_only_a_few_pass_for_late_anything_else_of_that_session_is_a_replay(
    network: Callable[..., Network],
) -> None:
    # An eavesdropper who replays the previous session while the new one waits for its
    # client: a REQUEST and a fourth HEARTBEAT are counted (and warned about) as replays.
    net = network(key=KEY, latency=0.001)
    worker = net.add_worker(b"w1")
    net.run(1)  # registered (what the latency delayed has arrived)
    request = sent_request(net, b"w1")
    heartbeat = captured(net, CLIENT, Command.HEARTBEAT)
    net.kill_client()  # no goodbye: the worker's session goes on until ...
    net.connection_up(b"w1")  # ... a new connection: a new session, waiting for its client
    assert not worker.registered and worker.stats.late == 0
    assert net.inject_to_worker(b"w1", request) == []
    assert worker.stats.replayed == 1 and worker.stats.late == 0
    for _ in range(4):
        assert net.inject_to_worker(b"w1", heartbeat) == []
    assert worker.stats.late == 3 and worker.stats.replayed == 2


def test_a_heartbeat_for_the_session_two_back_is_a_replay(network: Callable[..., Network]) -> None:
    net = network(key=KEY, latency=0.001)
    worker = net.add_worker(b"w1")
    net.run(1)  # registered (what the latency delayed has arrived)
    heartbeat = captured(net, CLIENT, Command.HEARTBEAT)
    net.kill_client()
    net.connection_up(b"w1")
    net.connection_up(b"w1")  # and another: the registered session is two back now
    assert net.inject_to_worker(b"w1", heartbeat) == []
    assert worker.stats.replayed == 1 and worker.stats.late == 0
