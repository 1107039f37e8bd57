"""SPEC §13 on real sockets: replayed messages do nothing, a connection that claims a worker's
routing id cannot take it over, CURVE lets in only authorized certificates, and mistakes
explain themselves (error texts, one warning per address, the worker's unanswered READYs).

The man in the middle is a ZeroMQ relay in a thread: the worker connects to it, it connects to
the client, forwards every frame both ways and keeps a copy to send again."""

from __future__ import annotations

import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth

from pirate_actors import Client, NoWorkerError, ProcedureActor, Worker
from pirate_actors.protocol import SIGNATURE, Command
from tests.helpers import FAST
from tests.helpers.sync import wait_until

KEY = b"untrusted-network-key-0123456789"
OTHER_KEY = b"some-other-key-nobody-shares-xyz"


class Appender(ProcedureActor):
    """A procedure with a side effect that shows every run (not idempotent: no outcome cache
    would hide a second run)."""

    def append(self, path: str) -> int:
        with open(path, "a") as file:
            file.write("ran\n")
        with open(path) as file:
            return len(file.readlines())

    def ping(self) -> str:
        return "pong"


def _command(frame: bytes) -> Command:
    return Command(frame[len(SIGNATURE)] & 0x7F)


class Relay:
    """Workers connect to ``endpoint``; every frame is forwarded to or from ``upstream`` and
    kept in ``seen`` as (direction, frame). ``inject`` sends a kept frame again, on the same
    connections or on a brand new one to the client."""

    def __init__(self, upstream: str) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.front = self.context.socket(zmq.ROUTER)
        self.front.setsockopt(zmq.LINGER, 0)
        port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.back = self.context.socket(zmq.DEALER)
        self.back.setsockopt(zmq.LINGER, 0)
        self.back.connect(upstream)
        self.upstream = upstream
        self.seen: list[tuple[str, bytes]] = []
        self.worker: bytes | None = None
        self._todo: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        strangers: list[zmq.Socket[bytes]] = []
        while not self._stop.is_set():
            for socket in dict(poller.poll(10)):
                if socket is self.front:
                    self.worker, frame = self.front.recv_multipart()
                    self.seen.append(("to client", frame))
                    self.back.send(frame)
                else:
                    frame = self.back.recv()
                    self.seen.append(("to worker", frame))
                    if self.worker is not None:
                        self.front.send_multipart([self.worker, frame])
            while not self._todo.empty():
                where, frame = self._todo.get()
                if where == "to worker" and self.worker is not None:
                    self.front.send_multipart([self.worker, frame])
                elif where == "to client":
                    self.back.send(frame)
                else:  # a new connection to the client, as another eavesdropper would open
                    stranger = self.context.socket(zmq.DEALER)
                    stranger.setsockopt(zmq.LINGER, 0)
                    stranger.connect(self.upstream)
                    stranger.send(frame)
                    strangers.append(stranger)
        for socket in (self.front, self.back, *strangers):
            socket.close(0)

    def captured(self, direction: str, command: Command) -> list[bytes]:
        return [frame for where, frame in list(self.seen) if where == direction and _command(frame) is command]

    def inject(self, where: str, frame: bytes) -> None:
        self._todo.put((where, frame))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.context.term()


@pytest.fixture
def stack() -> Iterator[list[Any]]:
    """Things to close at teardown, newest first."""
    things: list[Any] = []
    yield things
    for thing in reversed(things):
        if isinstance(thing, Worker):
            thing.stop(timeout=0.5)
        elif isinstance(thing, zmq.Context):
            thing.destroy(0)
        else:
            thing.close()


def _client(stack: list[Any], bind: str = "tcp://127.0.0.1:*", **options: Any) -> Client:
    client = Client(bind, **{**FAST, **options})
    stack.append(client)
    return client.start()


def _worker(stack: list[Any], endpoint: str, **options: Any) -> Worker:
    worker = Worker(Appender, endpoint, **{**FAST, **options})
    stack.append(worker)
    return worker.start()


# --------------------------------------------------------------------------- replay


def _through_a_relay(stack: list[Any], log: str) -> tuple[Client, Relay, Worker]:
    """A keyed client and worker with a relay between them, after one call that appended to ``log``."""
    client = _client(stack, key=KEY)
    relay = Relay(client.endpoint)
    stack.append(relay)
    worker = _worker(stack, relay.endpoint, key=KEY)
    client.wait_for_worker(timeout=10)
    assert client.call("append", log, timeout=10) == 1
    return client, relay, worker


@pytest.mark.timeout(30)
def test_requests_and_readys_replayed_by_a_man_in_the_middle_do_nothing_and_are_counted(
    stack: list[Any], tmp_path: Path,
) -> None:
    log = str(tmp_path / "runs")
    client, relay, worker = _through_a_relay(stack, log)

    [request] = relay.captured("to worker", Command.REQUEST)
    [ready] = relay.captured("to client", Command.READY)
    for _ in range(3):
        relay.inject("to worker", request)  # on the worker's own connection
    relay.inject("to client", ready)  # on the worker's own connection to the client
    relay.inject("new connection", ready)  # from a connection of the attacker's own
    wait_until(lambda: worker.stats()["replayed"] == 3, 10, "the worker dropped the replays")
    wait_until(lambda: client.stats()["replayed"] == 2, 10, "the client dropped the replays")

    assert open(log).read() == "ran\n", "a replayed REQUEST ran the procedure again"
    assert [info.id for info in client.workers()] == [worker.id]
    assert client.call("append", log, timeout=10) == 2  # and the loop serves real calls on
    assert worker.stats()["duplicates"] == 0, "replays must not even reach the duplicate check"


@pytest.mark.timeout(30)
def test_a_replayed_request_from_a_session_that_ended_does_not_run_at_the_next_one(
    stack: list[Any], tmp_path: Path,
) -> None:
    log = str(tmp_path / "runs")
    client, relay, worker = _through_a_relay(stack, log)
    [request] = relay.captured("to worker", Command.REQUEST)
    client.close()  # the worker's session ends; a new client comes to the same endpoint
    again = _client(stack, bind=client.endpoint, key=KEY)
    again.wait_for_worker(timeout=10)
    relay.inject("to worker", request)
    wait_until(lambda: worker.stats()["replayed"] >= 1, 10, "the worker dropped the replay")
    assert open(log).read() == "ran\n"


# --------------------------------------------------------------------------- no takeover


@pytest.mark.timeout(40)
@pytest.mark.parametrize("key", [None, KEY], ids=["no key", "key"])
def test_connections_claiming_a_live_workers_routing_id_cannot_cut_it_off(
    stack: list[Any], key: bytes | None,
) -> None:
    client = _client(stack, key=key)
    worker = _worker(stack, client.endpoint, key=key)
    client.wait_for_worker(timeout=10)
    [routing_id] = client._ask(lambda engine: list(engine.session.workers), [])  # in clear on the wire

    stop = threading.Event()
    claims = [0]

    def claim() -> None:  # the attack of the issue: a keyless DEALER with that id, again and again
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        while not stop.is_set():
            impostor = context.socket(zmq.DEALER)
            impostor.setsockopt(zmq.LINGER, 0)
            impostor.setsockopt(zmq.ROUTING_ID, routing_id)
            impostor.connect(client.endpoint)
            impostor.send(b"garbage")
            stop.wait(0.05)
            impostor.close(0)
            claims[0] += 1
        context.term()

    attacker = threading.Thread(target=claim, daemon=True)
    attacker.start()
    try:
        results = [client.call("ping", timeout=5) for _ in range(60)]
        wait_until(lambda: claims[0] >= 20, 10, "the impostor connected many times")
        results += [client.call("ping", timeout=5) for _ in range(20)]
    finally:
        stop.set()
        attacker.join(5)
    assert results == ["pong"] * 80
    assert [info.id for info in client.workers()] == [worker.id]


# --------------------------------------------------------------------------- CURVE


def _certificates(tmp_path: Path, *names: str) -> dict[str, tuple[str, str]]:
    """``name -> (public, secret)`` certificate paths, as pirate-keygen writes them."""
    folder = tmp_path / "certificates"
    folder.mkdir(exist_ok=True)
    return {name: zmq.auth.create_certificates(str(folder), name) for name in names}


def _curve_client(
    stack: list[Any], tmp_path: Path, certs: dict[str, tuple[str, str]], *authorized_names: str,
) -> tuple[Client, Path]:
    """A CURVE client (certificate ``client``) whose authorized folder holds ``authorized_names``."""
    authorized = tmp_path / "authorized"
    authorized.mkdir()
    for name in authorized_names:
        shutil.copy(certs[name][0], authorized)
    return _client(stack, curve_secret=certs["client"][1], curve_authorized=authorized), authorized


@pytest.mark.timeout(40)
def test_curve_serves_authorized_workers_refuses_others_and_honours_certificates_added_later(
    stack: list[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    certs = _certificates(tmp_path, "client", "trusted", "newcomer")
    client, authorized = _curve_client(stack, tmp_path, certs, "trusted")
    trusted = _worker(stack, client.endpoint, curve_secret=certs["trusted"][1], curve_server=certs["client"][0])
    client.wait_for_worker(timeout=10)
    assert client.call("ping", timeout=10) == "pong"

    caplog.set_level(logging.WARNING, logger="pirate_actors.auth")
    newcomer = _worker(stack, client.endpoint, curve_secret=certs["newcomer"][1],
                       curve_server=certs["client"][0], name="newcomer")
    wait_until(lambda: client.stats()["refused"] >= 1, 10, "the newcomer was refused")
    assert [info.id for info in client.workers()] == [trusted.id]
    refusals = [r.getMessage() for r in caplog.records if r.name == "pirate_actors.auth"]
    assert refusals and "not in" in refusals[0] and "127.0.0.1" in refusals[0]

    shutil.copy(certs["newcomer"][0], authorized)  # authorized later: no restart needed
    wait_until(lambda: len(client.workers()) == 2, 15, "the newcomer registered")
    assert {info.id for info in client.workers()} == {trusted.id, newcomer.id}


@pytest.mark.timeout(30)
def test_a_worker_with_the_wrong_server_certificate_never_registers_and_says_what_to_check(
    stack: list[Any], tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pirate_actors.worker")
    certs = _certificates(tmp_path, "client", "impostor", "worker")
    client, _ = _curve_client(stack, tmp_path, certs, "worker")
    _worker(stack, client.endpoint, curve_secret=certs["worker"][1], curve_server=certs["impostor"][0])
    with pytest.raises(NoWorkerError):
        client.wait_for_worker(timeout=2)
    [warning] = wait_until(
        lambda: [r.getMessage() for r in caplog.records if "did not complete" in r.getMessage()],
        15, "the worker warned about its handshakes")
    assert "is curve_server the client's certificate?" in warning


def test_with_curve_any_endpoint_is_allowed_without_a_key(tmp_path: Path) -> None:
    certs = _certificates(tmp_path, "client", "worker")
    with pytest.raises(ValueError, match="without a key"):
        Client("tcp://0.0.0.0:5550")
    Client("tcp://0.0.0.0:5550", curve_secret=certs["client"][1], curve_authorized=tmp_path)
    Worker(Appender, "tcp://10.1.2.3:5550", curve_secret=certs["worker"][1], curve_server=certs["client"][0])


@pytest.mark.parametrize("options, message", [
    ({"curve_secret": "client"}, "both curve_secret"),
    ({"curve_authorized": "."}, "both curve_secret"),
    ({"curve_secret": "public", "curve_authorized": "."}, "secret one"),
    ({"curve_secret": "missing", "curve_authorized": "."}, "cannot read"),
])
def test_half_a_curve_setting_or_the_wrong_file_is_a_clear_value_error(
    tmp_path: Path, options: dict[str, str], message: str,
) -> None:
    certs = _certificates(tmp_path, "client")
    files = {"client": certs["client"][1], "public": certs["client"][0], "missing": str(tmp_path / "nope"),
             ".": str(tmp_path)}
    with pytest.raises(ValueError, match=message):
        Client("tcp://127.0.0.1:*", **{name: files[value] for name, value in options.items()})


# --------------------------------------------------------------------------- mistakes


@pytest.mark.timeout(30)
@pytest.mark.parametrize("client_key, worker_key, expected", [
    (KEY, OTHER_KEY, "another key"),
    (None, KEY, "has no key"),
    (KEY, None, "not signed"),
], ids=["other key", "keyed worker, keyless client", "keyless worker, keyed client"])
def test_mismatched_keys_give_a_no_worker_error_that_says_what_was_dropped_and_to_check_the_key(
    stack: list[Any], client_key: bytes | None, worker_key: bytes | None, expected: str,
) -> None:
    client = _client(stack, key=client_key)
    _worker(stack, client.endpoint, key=worker_key)
    with pytest.raises(NoWorkerError) as waited:
        client.wait_for_worker(timeout=1.5)
    with pytest.raises(NoWorkerError) as called:
        client.call("ping", timeout=1.5)
    for error in (waited.value, called.value):
        text = str(error)
        assert "dropped (" in text and "from 127.0.0.1" in text, text
        assert expected in text and "same key" in text, text


@pytest.mark.timeout(30)
def test_a_worker_whose_readys_go_unanswered_warns_naming_the_endpoint_and_the_likely_causes(
    stack: list[Any], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pirate_actors.worker")
    client = _client(stack, key=KEY)
    _worker(stack, client.endpoint, key=OTHER_KEY, heartbeat=0.05, liveness=3)

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if r.name == "pirate_actors.worker" and "no answer" in r.getMessage()]

    [warning] = wait_until(warnings, 10, "the worker warned")
    assert client.endpoint in warning and "after 5 READYs" in warning
    assert "same key" in warning and "version" in warning


@pytest.mark.timeout(60)
def test_a_thousand_forged_messages_are_all_counted_but_logged_far_fewer_times(
    stack: list[Any], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="pirate_actors.client")
    client = _client(stack, key=KEY)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    stack.append(context)
    forgers = []
    for _ in range(10):  # ten connections from one address: one budget for all of them
        forger = context.socket(zmq.DEALER)
        forger.setsockopt(zmq.LINGER, 0)
        forger.connect(client.endpoint)
        forgers.append(forger)
    for n in range(1000):
        forgers[n % 10].send(SIGNATURE + bytes([Command.REPLY | 0x80]) + os.urandom(80))
    wait_until(lambda: client.stats()["unauthenticated"] == 1000, 20, "every forgery counted")
    lines = [r for r in caplog.records if r.name == "pirate_actors.client" and "dropped" in r.getMessage()]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
    for forger in forgers:
        forger.close(0)


# --------------------------------------------------------------------------- genuine reconnects


@pytest.mark.timeout(40)
@pytest.mark.parametrize("noticed", [True, False], ids=["worker noticed", "worker did not wait"])
def test_with_a_key_a_worker_registers_with_a_restarted_client_within_1_5_s_of_its_bind(
    spawn: Any, make_worker: Any, make_client: Any, tmp_path: Path, noticed: bool,
) -> None:
    # SPEC §13 with §5: the signed handshake (one more round trip) keeps the bound.
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY)
    old = spawn("tests.helpers.client_process", "tcp://127.0.0.1:*", "--heartbeat", "0.2",
                "--key-file", str(key_file), name="old-client")
    endpoint = old.expect("BOUND ").split()[1]
    worker = make_worker(endpoint, key=KEY)  # default heartbeat and liveness
    old.expect("PONG")
    old.kill()
    if noticed:
        wait_until(lambda: not worker.stats()["registered"], 20, "the worker noticed its client died")
        threading.Event().wait(1.5)  # the length of the wait is what is under test
    began = time.monotonic()
    client = make_client(endpoint, key=KEY)
    client.wait_for_worker(timeout=10)
    elapsed = time.monotonic() - began
    assert elapsed <= 1.5, f"registered {elapsed:.2f} s after the new bind"
    assert client.call("ping", timeout=10) == "pong"
    assert client.stats()["replayed"] == 0 and worker.stats()["replayed"] == 0
