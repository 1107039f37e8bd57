"""Real-socket regression tests for the wave-1 defects (SPEC §2, §3, §6, §15).

Each test runs a real Client and real Workers over loopback TCP on free ports (no mocks of
zmq) and waits on events, futures or partials; the only bounded wait without an event is the
one that proves something *never* happens (a worker with no client sends nothing).

1. A cancelled ``CallFuture`` (queued or running) counts as done for ``wait``/``as_completed``.
2. ``Client.stats()`` never reports negative counts after cancels.
3. ``Worker.stats()["sent"]`` counts only messages actually sent.
4. No head-of-line blocking across procedures.
5. A call of exactly ``max_message_size`` bytes is accepted; one byte more is refused at submit.
6. pykka is pinned below the major version whose internals the code uses.
"""

from __future__ import annotations

import concurrent.futures
import configparser
import re
import socket
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Iterator

import pytest

from pirate_actors import CallFuture, Client, ProcedureActor, ProtocolError, Worker
from pirate_actors._codec import dumps_call
from pirate_actors.protocol import SIGNATURE
from tests.conftest import GATES
from tests.helpers.sync import started_event, wait_until

pytestmark = pytest.mark.timeout(30)

HEARTBEAT = 0.1
ROOT = Path(__file__).resolve().parents[2]


# -- procedures (gates and the ``gate`` fixture are tests/conftest.py's) ----------------------


def _hold(gate: str, result: Any) -> Any:
    GATES[gate].entered.release()
    if not GATES[gate].opened.wait(25):
        raise RuntimeError("gate never opened")
    return result


class SlowOnly(ProcedureActor):
    """Serves only ``slow``, which blocks on a gate the test opens."""

    def slow(self, gate: str, result: Any = None) -> Any:
        return _hold(gate, result)


class FastOnly(ProcedureActor):
    """Serves only ``fast``."""

    def fast(self) -> str:
        return "fast"


class Sized(ProcedureActor):
    """``echo(data)`` returns ``len(data)``: a large call with a small reply."""

    def echo(self, data: bytes) -> int:
        return len(data)


# -- set-up helpers ------------------------------------------------------------------------------


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    """Clients and workers entered here are closed at teardown, after every gate is opened
    (so no worker waits on a blocked procedure while it stops)."""
    with ExitStack() as es:
        try:
            yield es
        finally:
            for g in list(GATES.values()):
                g.opened.set()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _client(es: ExitStack, bind: str = "tcp://127.0.0.1:*", **kwargs: Any) -> Client:
    kwargs.setdefault("heartbeat", HEARTBEAT)
    kwargs.setdefault("timeout", 20.0)  # queued calls must not fail with NoWorkerError meanwhile
    client = Client(bind, **kwargs).start()
    es.callback(client.close)
    return client


def _worker(es: ExitStack, actor_class: type[ProcedureActor], connect: str, **kwargs: Any) -> Worker:
    kwargs.setdefault("heartbeat", HEARTBEAT)
    worker = Worker(actor_class, connect, **kwargs).start()
    es.callback(worker.stop, 2.0)
    return worker


# -- 1. a cancelled future counts as done ---------------------------------------------------------


def test_a_cancelled_queued_future_counts_as_done_for_as_completed_and_wait(stack: ExitStack, gate: Any) -> None:
    client = _client(stack)  # no worker: all three calls wait in the client
    name, _ = gate()
    futures = [client.submit("slow", name, i) for i in range(3)]
    assert futures[1].cancel()

    done, not_done = concurrent.futures.wait(
        futures, timeout=2.0, return_when=concurrent.futures.FIRST_COMPLETED)
    assert done == {futures[1]}, f"wait() did not see the cancelled call as done: {done=}"
    assert not_done == {futures[0], futures[2]}

    first = next(concurrent.futures.as_completed(futures, timeout=2.0))
    assert first is futures[1] and first.cancelled(), "as_completed() did not yield the cancelled call"


def test_a_cancelled_running_future_counts_as_done_for_as_completed_and_wait(
    stack: ExitStack, gate: Any
) -> None:
    client = _client(stack)
    _worker(stack, SlowOnly, client.endpoint, pool_size=1, prefetch=0)
    client.wait_for_worker(timeout=5)
    name, g = gate()
    running = client.submit("slow", name, "running")
    started = started_event(running)
    g.wait_entered()
    assert started.wait(5), "no 'started' partial"
    waiting = [client.submit("slow", name, i) for i in range(2)]  # the worker is full
    futures = [running, *waiting]
    assert running.cancel()

    done, _ = concurrent.futures.wait(futures, timeout=2.0, return_when=concurrent.futures.FIRST_COMPLETED)
    assert running in done, f"wait() did not see the cancelled running call as done: {done=}"
    first = next(concurrent.futures.as_completed(futures, timeout=2.0))
    assert first is running and first.cancelled()


# -- 2. stats never negative --------------------------------------------------------------------


def test_client_stats_after_cancelling_queued_calls_count_one_queued_and_none_in_flight(
    stack: ExitStack, gate: Any
) -> None:
    client = _client(stack)  # no worker
    name, _ = gate()
    futures = [client.submit("slow", name, i) for i in range(3)]
    assert futures[0].cancel() and futures[2].cancel()
    stats = client.stats()  # answered by the client thread after it took the submits and cancels
    assert (stats["queued"], stats["in_flight"]) == (1, 0), stats
    assert all(value >= 0 for value in stats.values() if isinstance(value, int)), stats


# -- 3. a worker counts only what it sent -----------------------------------------------------------


def test_a_worker_with_no_client_counts_nothing_sent_until_a_client_binds_and_it_registers(
    stack: ExitStack,
) -> None:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    worker = _worker(stack, FastOnly, endpoint, heartbeat=0.05)
    # Nobody listens, so nothing can have been sent. "Never" has no event to wait on: watch the
    # counter for 10 heartbeats (a READY is due every heartbeat), failing at the first send.
    window = time.monotonic() + 10 * 0.05
    while time.monotonic() < window:
        assert worker.stats()["sent"] == 0, f"no client listens, yet stats say {worker.stats()}"
        time.sleep(0.01)

    client = _client(stack, endpoint, heartbeat=0.05)
    client.wait_for_worker(timeout=5)
    assert client.call("fast", timeout=5) == "fast"
    wait_until(lambda: worker.stats()["sent"] > 0, 5, "worker stats counting its sends")


# -- 4. no head-of-line blocking ------------------------------------------------------------------


def test_a_call_no_free_worker_serves_does_not_hold_back_a_call_another_worker_serves(
    stack: ExitStack, gate: Any
) -> None:
    client = _client(stack)
    _worker(stack, SlowOnly, client.endpoint, pool_size=1, prefetch=0, name="slow-worker")
    _worker(stack, FastOnly, client.endpoint, name="fast-worker")
    wait_until(lambda: len(client.workers()) == 2, 5, "both workers registered")
    name, g = gate()
    first = client.submit("slow", name, 1)
    g.wait_entered()  # the slow worker's only slot is taken
    second = client.submit("slow", name, 2)  # must wait: only the slow worker serves it
    fast = client.submit("fast")

    assert fast.result(timeout=3) == "fast", "the fast call waited behind the queued slow call"
    assert not second.done() and second.worker is None, "the second slow call should still be queued"
    assert client.stats()["queued"] == 1

    g.opened.set()
    assert (first.result(timeout=5), second.result(timeout=5)) == (1, 2)


# -- 5. the exact size cap -------------------------------------------------------------------------

LIMIT = 4096
KEY = bytes(range(32))


def _request_size(body: int, key: bool) -> int:
    """docs/protocol.md: SIGNATURE, command byte, 4-byte entry count, 13-byte entry header,
    the body, then the 24-byte seal and the 32-byte HMAC when a key is set."""
    return len(SIGNATURE) + 1 + 4 + 13 + body + (24 + 32 if key else 0)


def _payload_for(message_size: int, key: bool) -> bytes:
    """``data`` such that ``submit("echo", data)`` is a REQUEST of exactly ``message_size`` bytes."""
    n = 2000
    for _ in range(10):
        size = _request_size(len(dumps_call("echo", (b"x" * n,), {})), key)
        if size == message_size:
            return b"x" * n
        n += message_size - size
    raise AssertionError(f"no payload makes a {message_size}-byte REQUEST")


@pytest.mark.parametrize("key", [None, KEY], ids=["without-key", "with-key"])
def test_a_call_of_exactly_max_message_size_succeeds_and_one_byte_more_is_refused_at_submit(
    stack: ExitStack, key: bytes | None
) -> None:
    client = _client(stack, max_message_size=LIMIT, key=key)
    _worker(stack, Sized, client.endpoint, max_message_size=LIMIT, key=key)
    client.wait_for_worker(timeout=5)

    exact = _payload_for(LIMIT, key is not None)
    future = client.submit("echo", exact)
    assert future.result(timeout=5) == len(exact)

    over = client.submit("echo", _payload_for(LIMIT + 1, key is not None))
    assert over.done(), "a call over the limit must fail at submit, not later"
    with pytest.raises(ProtocolError):
        over.result(timeout=0)
    assert client.call("echo", b"still works", timeout=5) == len(b"still works")


# -- 6. pykka pinned --------------------------------------------------------------------------------


def test_pykka_is_pinned_below_5_or_its_private_envelope_module_is_not_used() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    requirements = [
        line.strip() for line in config["options"]["install_requires"].splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    pykka = [r for r in requirements if re.match(r"pykka\b", r, re.IGNORECASE)]
    assert len(pykka) == 1, requirements
    pinned = re.search(r"<\s*5(\.0)*\b", pykka[0]) is not None
    users = sorted(
        str(path.relative_to(ROOT)) for path in (ROOT / "pirate_actors").rglob("*.py")
        if re.search(r"pykka\._envelope|from\s+pykka\s+import\s+[^\n]*_envelope", path.read_text())
    )
    assert pinned or not users, (
        f"the requirement {pykka[0]!r} has no upper bound <5, yet {users} import pykka._envelope"
    )
