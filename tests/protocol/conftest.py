"""An in-memory network for the sans-IO protocol: one ClientProtocol, any number of
WorkerProtocols, frames passed as lists of bytes, and a fake clock. No sockets, no sleeps.

The :class:`Network` plays the part of the two socket loops (``_client.py`` and ``_worker.py``):
it ticks every peer when one of their deadlines comes, hands each message to ``receive`` and
sends what comes back. What the loops would do on top (futures, the procedure pool) is left out;
events are only recorded, with the fake time they happened at.

Things a test can do to the network: add, kill, freeze and thaw workers, kill and restart the
client, cut a worker's link, add latency, and inject raw frames.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import pytest

from pirate_actors.protocol import (
    SIGNATURE,
    ClientLost,
    ClientProtocol,
    Command,
    Entry,
    FrameCodec,
    Ready,
    WorkerProtocol,
)

CLIENT = "client"
"""The name the :class:`Network` gives the client in its log (workers go by routing id)."""

TICK_GRANULARITY = 0.001
"""The loops poll with millisecond timeouts: a deadline that has come but did nothing (an expiry
is strict, ``now > expiry``) is looked at again one millisecond later."""


class FakeClock:
    """The only time the protocol objects ever see. Starts far from 0 on purpose."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def advance(self, seconds: float) -> float:
        assert seconds >= 0, "time never goes back"
        self.now += seconds
        return self.now


@dataclass
class Sent:
    """One message put on the wire: who sent it to whom, when, and whether it arrived."""

    time: float
    source: Any  # CLIENT or a worker's routing id
    target: Any
    frames: list[bytes]
    dropped: bool = False

    @property
    def command(self) -> Command:
        return Command(self.frames[0][len(SIGNATURE)] & 0x7F)  # without the SIGNED bit


class Network:
    """A client and its workers joined in memory, with a fake clock.

    Every ``send`` goes through the network: a message is dropped when its receiver is dead or
    its link is cut (as a ZeroMQ socket with ``IMMEDIATE`` drops it), otherwise it arrives after
    ``latency`` seconds; a frozen receiver (SIGSTOP) gets its messages when thawed.
    """

    def __init__(
        self,
        clock: FakeClock,
        *,
        heartbeat: float = 1.0,
        liveness: int = 3,
        key: bytes | None = None,
        max_message_size: int | None = None,
        latency: float = 0.0,
    ) -> None:
        self.clock = clock
        self.key = key
        self.max_message_size = max_message_size
        self.latency = latency
        self.log: list[Sent] = []
        self.client: ClientProtocol | None = None
        self.client_frozen = False
        self.client_events: list[tuple[float, Any]] = []
        self.workers: dict[bytes, WorkerProtocol] = {}
        self.worker_events: dict[bytes, list[tuple[float, Any]]] = {}
        self.frozen: set[bytes] = set()
        self.cut: set[bytes] = set()
        self._seq = itertools.count()
        self._in_flight: list[tuple[float, int, Any, Any, list[bytes]]] = []
        self.start_client(heartbeat=heartbeat, liveness=liveness)

    # ------------------------------------------------------------------ helpers

    @property
    def now(self) -> float:
        return self.clock.now

    def codec(self, key: Any = "network") -> FrameCodec:
        key = self.key if key == "network" else key
        if self.max_message_size is None:
            return FrameCodec(key)
        return FrameCodec(key, self.max_message_size)

    def _alive(self, name: Any) -> bool:
        if name == CLIENT:
            return self.client is not None
        return name in self.workers

    def _frozen(self, name: Any) -> bool:
        return self.client_frozen if name == CLIENT else name in self.frozen

    def send(self, source: Any, target: Any, frames: Sequence[bytes]) -> Sent:
        """Put a message on the wire from ``source`` to ``target``."""
        worker = target if target != CLIENT else source
        dropped = not self._alive(target) or worker in self.cut
        sent = Sent(self.now, source, target, list(frames), dropped)
        self.log.append(sent)
        if not dropped:
            self._in_flight.append((self.now + self.latency, next(self._seq), source, target, list(frames)))
        return sent

    def _record(self, name: Any, events: Sequence[Any]) -> None:
        target = self.client_events if name == CLIENT else self.worker_events[name]
        target.extend((self.now, event) for event in events)

    # ------------------------------------------------------------------ the client

    def start_client(
        self, *, heartbeat: float = 1.0, liveness: int = 3, key: Any = "network", connect: bool = True
    ) -> ClientProtocol:
        """A fresh ClientProtocol binds the endpoint. With ``connect``, every live worker's
        connection comes up as it does in ``_worker.py``: ``connected()`` then READY."""
        self.client = ClientProtocol(self.codec(key), heartbeat, liveness)
        self.client_frozen = False
        if connect:
            for peer in list(self.workers):
                if peer not in self.frozen and peer not in self.cut:
                    self.connection_up(peer)
        self.deliver()
        return self.client

    def kill_client(self) -> None:
        """The client process dies: no DISCONNECT, nothing more in or out."""
        self.client = None
        self._in_flight = [item for item in self._in_flight if item[3] != CLIENT]

    def close_client(self) -> None:
        """The client closes: DISCONNECT to every worker, then it is gone."""
        assert self.client is not None
        for peer, frames in self.client.close(self.now):
            self.send(CLIENT, peer, frames)
        self.client = None
        self.deliver()

    def client_send(self, peer: bytes, command: Command, entries: Sequence[Entry]) -> Sent:
        assert self.client is not None
        target, frames = self.client.calls(peer, command, entries, self.now)
        return self.send(CLIENT, target, frames)

    # ------------------------------------------------------------------ workers

    def add_worker(
        self,
        peer: bytes,
        *,
        heartbeat: float = 1.0,
        liveness: int = 3,
        capacity: int = 4,
        procedures: Sequence[str] = ("ping", "echo"),
        name: str | None = None,
        key: Any = "network",
        connect: bool = True,
    ) -> WorkerProtocol:
        """Start a worker whose DEALER connects to the client's endpoint."""
        ready = Ready(name or peer.decode(), capacity, heartbeat, liveness, tuple(procedures))
        worker = WorkerProtocol(self.codec(key), ready, self.now)
        self.workers[peer] = worker
        self.worker_events[peer] = []
        if connect and self.client is not None:
            self.connection_up(peer)
        elif connect:
            # No client listens, but the harness does not model TCP handshakes: the worker
            # believes its link is up, and what it sends is lost on the wire.
            worker.connection_up = True
        self.deliver()
        if worker.sealed:
            self.tick()  # the worker's HEARTBEAT that completes a signed registration is due
        return worker

    def connection_up(self, peer: bytes) -> None:
        """The worker's socket reports a new connection (HANDSHAKE_SUCCEEDED)."""
        worker = self.workers[peer]
        if worker.leaving:
            return
        self._record(peer, worker.connected(self.now))
        self.send(peer, CLIENT, worker.ready_frames(self.now))

    def kill_worker(self, peer: bytes) -> None:
        """SIGKILL: the worker says nothing more and hears nothing more."""
        del self.workers[peer]
        self.frozen.discard(peer)
        self._in_flight = [item for item in self._in_flight if item[3] != peer]

    def freeze(self, peer: bytes) -> None:
        """SIGSTOP: no ticks; messages to it wait in its socket."""
        self.frozen.add(peer)

    def thaw(self, peer: bytes) -> None:
        self.frozen.discard(peer)
        self.deliver()

    def cut_link(self, peer: bytes) -> None:
        """The network between the worker and the client fails: messages both ways are lost."""
        self.cut.add(peer)
        self._in_flight = [item for item in self._in_flight if peer not in (item[2], item[3])]

    def restore_link(self, peer: bytes, *, reconnect: bool = True) -> None:
        """The network comes back; with ``reconnect``, ZeroMQ makes a new TCP connection, which
        the worker's socket monitor reports (otherwise the old connection simply carries on)."""
        self.cut.discard(peer)
        if reconnect and self.client is not None and peer in self.workers:
            self.connection_up(peer)
        self.deliver()

    def worker_send(self, peer: bytes, command: Command, entries: Sequence[Entry]) -> Sent:
        return self.send(peer, CLIENT, self.workers[peer].calls(command, entries, self.now))

    def worker_disconnect(self, peer: bytes, final: bool) -> Sent:
        return self.send(peer, CLIENT, self.workers[peer].disconnect(self.now, final))

    # ------------------------------------------------------------------ raw frames

    def inject_to_client(self, peer: bytes, frames: Sequence[bytes]) -> tuple[list[Any], list[Any]]:
        """Hand raw frames to the client as if ``peer`` sent them; its answers go on the wire."""
        assert self.client is not None
        events, out = self.client.receive(peer, list(frames), self.now)
        self._record(CLIENT, events)
        for target, reply in out:
            self.send(CLIENT, target, reply)
        return events, out

    def inject_to_worker(self, peer: bytes, frames: Sequence[bytes]) -> list[Any]:
        events = self.workers[peer].receive(list(frames), self.now)
        self._record(peer, events)
        return events

    # ------------------------------------------------------------------ time

    def deliver(self) -> None:
        """Hand every message that has arrived by now to its receiver (answers included)."""
        for _ in range(100_000):
            if not self._in_flight:
                return
            due = [item for item in self._in_flight if item[0] <= self.now and not self._frozen(item[3])]
            if not due:
                return
            item = min(due)
            self._in_flight.remove(item)
            _, _, source, target, frames = item
            if not self._alive(target):
                continue
            if target == CLIENT:
                assert self.client is not None
                events, out = self.client.receive(source, frames, self.now)
                self._record(CLIENT, events)
                for peer, reply in out:
                    self.send(CLIENT, peer, reply)
            else:
                self._record(target, self.workers[target].receive(frames, self.now))
        raise AssertionError("the peers never stopped talking")

    def tick(self) -> None:
        """Deliver what has arrived, then let every running peer look at the clock."""
        self.deliver()
        if self.client is not None and not self.client_frozen:
            events, out = self.client.tick(self.now)
            self._record(CLIENT, events)
            for peer, frames in out:
                self.send(CLIENT, peer, frames)
        for peer, worker in list(self.workers.items()):
            if peer in self.frozen:
                continue
            events, frames_list = worker.tick(self.now)
            self._record(peer, events)
            for frames in frames_list:
                self.send(peer, CLIENT, frames)
            if any(isinstance(e, ClientLost) and e.silent for e in events):
                # The worker's socket code starts over with a fresh socket; the harness does
                # not model its TCP handshake: the new connection is up at once (what the
                # worker sends to a client that is not there is lost on the wire).
                self.connection_up(peer)
        self.deliver()

    def next_deadline(self) -> float:
        deadlines = [float("inf")]
        if self.client is not None and not self.client_frozen:
            deadlines.append(self.client.next_deadline())
        deadlines.extend(w.next_deadline() for p, w in self.workers.items() if p not in self.frozen)
        deadlines.extend(item[0] for item in self._in_flight if not self._frozen(item[3]))
        return min(deadlines)

    def run(self, seconds: float) -> Network:
        """Let ``seconds`` of fake time pass, waking up exactly when the loops would."""
        end = self.now + seconds
        self.tick()
        for _ in range(1_000_000):
            wake = self.next_deadline()
            if wake <= self.now:
                wake = self.now + TICK_GRANULARITY
            if wake > end:
                break
            self.clock.now = wake
            self.tick()
        else:
            raise AssertionError("time stood still")
        self.clock.now = end
        self.tick()
        return self

    def run_until(self, predicate: Callable[[], bool], limit: float = 60.0) -> float:
        """Advance fake time until ``predicate()``; returns the time it took."""
        start = self.now
        self.tick()
        while not predicate():
            if self.now - start > limit:
                raise AssertionError(f"not reached within {limit} s of fake time")
            wake = max(self.next_deadline(), self.now + TICK_GRANULARITY)
            self.clock.now = min(wake, start + limit + TICK_GRANULARITY)
            self.tick()
        return self.now - start

    # ------------------------------------------------------------------ queries

    def timed_events(
        self, name: Any, kind: type | None = None, *, since: float = float("-inf")
    ) -> list[tuple[float, Any]]:
        """``(time, event)`` for the events ``name`` (CLIENT, whichever client it was, or a
        routing id) saw, optionally only of one type and only from ``since`` on."""
        recorded = self.client_events if name == CLIENT else self.worker_events[name]
        return [
            (time, event) for time, event in recorded
            if (kind is None or isinstance(event, kind)) and time >= since
        ]

    def events(self, name: Any, kind: type | None = None, *, since: float = float("-inf")) -> list[Any]:
        return [event for _, event in self.timed_events(name, kind, since=since)]

    def sent(
        self, source: Any = None, command: Command | None = None, *, since: float = float("-inf"),
        target: Any = None,
    ) -> list[Sent]:
        return [
            s for s in self.log
            if (source is None or s.source == source)
            and (target is None or s.target == target)
            and (command is None or s.command is command)
            and s.time >= since
        ]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def network(clock: FakeClock) -> Callable[..., Network]:
    """Make a :class:`Network` on the test's fake clock: ``network(heartbeat=..., key=...)``."""

    def make(**kwargs: Any) -> Network:
        return Network(clock, **kwargs)

    return make


@pytest.fixture
def trap(tmp_path: Any) -> Iterator[Callable[[], tuple[bytes, Any]]]:
    """Pickles that create a file when unpickled: ``body, path = trap()``.

    The fixture checks that a control copy really does create its file, so a test that finds
    no file proves the body was never unpickled, not that the trap was broken."""
    import pickle

    made: list[Any] = []

    class Trap:
        def __init__(self, path: str) -> None:
            self.path = path

        def __reduce__(self) -> tuple[Any, ...]:
            return (open, (self.path, "w"))

    control = tmp_path / "control-was-unpickled"
    pickle.loads(pickle.dumps(Trap(str(control)))).close()
    assert control.exists(), "the trap does not work: it proves nothing"

    def make() -> tuple[bytes, Any]:
        path = tmp_path / f"unpickled-{len(made)}"
        made.append(path)
        return pickle.dumps(Trap(str(path))), path

    yield make


def decode(frames: list[bytes]) -> object:
    """Decode frames with a keyless default codec (what the harness peers use)."""
    return FrameCodec().decode(frames)
