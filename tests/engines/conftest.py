"""An in-memory cluster: real ClientEngines and WorkerEngines (and their real sessions) joined
by a fake network, on a fake clock. No sockets, no threads, no sleeps; deterministic.

Each node is driven exactly as its adapter drives its engine, one *turn* at a time, in the order
of :class:`pirate_actors._loop.SocketLoop`: the socket monitor's events, the frames that arrived
(``receive``), the timers (``tick`` once ``now >= engine.deadline``), the mailbox or inbox, then
``flush``. What each flush does is copied from the adapters:

- a worker (``_worker.py``'s ``_SocketActor.flush``), with one engine per client endpoint (a
  *lane*) sharing one :class:`Lanes` and one pool: ``lanes.rebalance(now)`` if it has several,
  then per lane ``engine.flush(now)``, ``engine.out`` onto that lane's wire and
  ``engine.to_retire`` retired (a replacement actor at once, through ``lanes.actor_ready``);
  then every engine's ``to_tell`` told to the actors (skipping calls no longer HANDED;
  ``engine.told``, or ``engine.tell_failed`` for an actor found dead); a fresh connection for a
  lane whose ``engine.reconnect_wanted``; and the worker stops once every engine is
  ``finished``;
- a client (``_client.py``'s ``_Driver.flush``): ``engine.flush(now)``, ``engine.out`` onto the
  wire (each ``(peer, frames)`` to the worker with that routing id), then ``engine.partials``
  into the futures (``CallFuture._add_partial``) and ``engine.settled`` into them.

The procedure actors are fakes that the test plays: a call the engine hands over appears on its
fake actor, and the test decides when it starts (:meth:`WorkerNode.start`), reports
(:meth:`WorkerNode.report`), returns (:meth:`WorkerNode.finish`), raises
(:meth:`WorkerNode.raise_`) or dies (:meth:`WorkerNode.kill_actor`). What an actor says goes
into its worker's inbox and is handled in the worker's next turn, as the socket actor's
``on_inbox`` would. The fake pool replaces an actor at once (backoff is the real ``Pool``'s
business, tested in ``tests/worker/test_pool.py``).

Time only moves in :meth:`Cluster.run` and :meth:`Cluster.run_until`, which wake at the earliest
``engine.deadline`` as the loops do (or a millisecond later, as a poll timeout in whole
milliseconds would, when a deadline has come and gone without work).
"""

from __future__ import annotations

import collections
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import pytest

from pirate_actors import _codec
from pirate_actors._client_engine import Call, ClientEngine
from pirate_actors._codec import ErrorKind
from pirate_actors._errors import ProtocolError
from pirate_actors._future import CallFuture, deliver_partials, settle
from pirate_actors._procedures import Run
from pirate_actors._worker_engine import CallState, Lanes, WorkerCall, WorkerEngine
from pirate_actors.protocol import (
    DEFAULT_MAX_MESSAGE_SIZE,
    SIGNATURE,
    Calls,
    ClientProtocol,
    Command,
    Entry,
    FrameCodec,
    Message,
    Ready,
    WorkerProtocol,
)

from ..protocol.conftest import FakeClock

__all__ = [
    "Cluster", "ClientNode", "FakeActor", "FakeClock", "MakeCluster", "Sent", "WorkerNode",
    "args_of_size",
]

TICK = 0.001
"""The loops poll with timeouts in whole milliseconds: a deadline that came without work
(liveness is strict, ``now > expiry``) is looked at again a millisecond later."""

STUCK_LIMIT = 50
"""Wake-ups in a row at a deadline already past before the harness calls it a busy loop."""

MakeCluster = Callable[..., "Cluster"]
"""The ``make_cluster`` fixture: ``make_cluster(key=..., latency=...)``."""

RequestRef = Any
"""A request id, or a :class:`CallFuture` (its ``request_id``)."""


def _rid(ref: RequestRef) -> int:
    request_id: int = ref.request_id if isinstance(ref, CallFuture) else ref
    return request_id


# --------------------------------------------------------------------------- the wire


@dataclass
class Sent:
    """One message put on the wire: when, from whom to whom, and whether it was dropped."""

    time: float
    source: Any  # a client's name (str) or a worker's routing id (bytes)
    target: Any
    """A client's name, or the routing id of the worker (whose lane for ``source`` gets it)."""
    frames: list[bytes]
    message: Message | None
    """Decoded for the test (None if it would not decode)."""
    dropped: bool = False

    @property
    def command(self) -> Command:
        return Command(self.frames[0][len(SIGNATURE)] & 0x7F)  # without the SIGNED bit

    @property
    def size(self) -> int:
        return sum(len(frame) for frame in self.frames)

    @property
    def entries(self) -> tuple[Entry, ...]:
        return self.message.entries if isinstance(self.message, Calls) else ()

    @property
    def request_ids(self) -> list[int]:
        return [entry.request_id for entry in self.entries]


# --------------------------------------------------------------------------- clients


class ClientNode:
    """One client: a real ClientEngine with its ClientProtocol, driven like ``_client.py``."""

    def __init__(
        self, cluster: Cluster, name: str, *, heartbeat: float, liveness: int, timeout: float,
        retries: int, max_message_size: int,
    ) -> None:
        self.cluster = cluster
        self.name = name
        self.codec = FrameCodec(cluster.key, max_message_size)
        self.session = ClientProtocol(self.codec, heartbeat, liveness)
        self.engine = ClientEngine(self.session, timeout, cluster.now, retries)
        self.mailbox: collections.deque[Any] = collections.deque()
        """What user threads put in the client's mailbox: Calls and request ids to cancel."""
        self._ids = itertools.count(1 + 1_000_000 * len(cluster.clients))  # (ids differ, as random ones do)
        self.registered = 0
        """Workers taking calls, as the client last told its users (``workers_changed``)."""
        self.closed = False
        self._ticked_at: float | None = None

    # -- what user threads do (``Client.submit``, ``CallFuture.cancel``)

    def submit(self, procedure: str, /, *args: Any, **kwargs: Any) -> CallFuture:
        return self.submit_with(procedure, args, kwargs)

    def submit_with(
        self, procedure: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None, *,
        retries: int | None = None, timeout: float | None = None,
    ) -> CallFuture:
        """``Client._submit``: the same checks, then the call goes into the mailbox."""
        request_id = next(self._ids)
        future = CallFuture(procedure, self._cancel, request_id)
        body = _codec.dumps_call(procedure, tuple(args), dict(kwargs or {}))
        if len(body) > self.codec.max_body():
            future.set_exception(ProtocolError(
                f"call {procedure!r} of {len(body)} bytes exceeds max_message_size "
                f"({self.codec.max_message_size})"
            ))
            return future
        now = self.cluster.now
        deadline = None if timeout is None else now + timeout
        self.mailbox.append(Call(request_id, procedure, body, future, now, retries=retries,
                                 deadline=deadline))
        return future

    def _cancel(self, future: CallFuture) -> None:
        self.mailbox.append(future.request_id)

    # -- derived views

    @property
    def queued(self) -> int:
        return self.engine.queued

    @property
    def in_flight(self) -> int:
        return self.engine.in_flight

    def held_by(self, peer: bytes) -> set[int]:
        """Request ids the client believes ``peer`` holds."""
        worker = self.session.workers.get(peer)
        return set(worker.calls) if worker is not None else set()

    # -- one turn of the client thread's loop

    def turn(self, now: float) -> bool:
        if self.closed:
            return False
        engine = self.engine
        busy = False
        for source, frames in self.cluster._arrived(self.name):  # _Driver.on_frames
            busy = True
            engine.receive(source, frames, now)
            engine.events.clear()  # (events are no business of these tests)
            self._deliver_partials()
        if now >= engine.deadline and (self._ticked_at != now or busy):  # _Driver.on_wake
            self._ticked_at = now
            busy = True
            engine.tick(now)
        while self.mailbox:  # _Driver.on_inbox
            busy = True
            item = self.mailbox.popleft()
            if isinstance(item, Call):
                engine.submit(item, item.submitted)
            else:
                engine.cancel(item)
        return self._flush(now) or busy

    def _flush(self, now: float) -> bool:
        """``_Driver.flush``."""
        engine = self.engine
        engine.events.clear()
        before = {peer: len(worker.calls) for peer, worker in self.session.workers.items()}
        engine.flush(now)
        for peer, worker in self.session.workers.items():  # (a CAPACITY may lower it below)
            if len(worker.calls) > before.get(peer, 0):
                assert len(worker.calls) <= worker.capacity, (
                    f"the client gave worker {peer!r} {len(worker.calls)} calls, beyond its "
                    f"capacity {worker.capacity}")
        busy = bool(engine.out)
        out, engine.out = engine.out, []
        for peer, frames in out:
            self.cluster._send(self.name, peer, frames)
        if engine.workers_changed:
            engine.workers_changed = False
            self.registered = engine.registered()
        busy = self._deliver_partials() or busy
        if engine.settled:
            busy = True
            settle(engine.settled)  # the client thread's own settling
        # The counters are derived, never stored twice: every call submitted is unfinished or
        # has ended exactly one way.
        assert engine.submitted == sum(engine.outcomes.values()) + len(engine.calls), (
            f"{engine.submitted} submitted, but {dict(engine.outcomes)} ended and {len(engine.calls)} open")
        assert all(count >= 0 for count in engine.outcomes.values())
        return busy

    def _deliver_partials(self) -> bool:
        partials, self.engine.partials = self.engine.partials, []
        deliver_partials(partials)
        return bool(partials)

    def close(self) -> None:
        """``Client.close``: DISCONNECT to every worker, every unfinished call fails, and the
        socket closes (each worker's monitor then says its connection dropped)."""
        now = self.cluster.now
        self.engine.close(now)
        self._flush(now)
        self.closed = True
        for worker in self.cluster.workers.values():
            for lane in worker.lane_list:
                if lane.client == self.name:
                    lane.monitor.append(False)  # EVENT_DISCONNECTED


# --------------------------------------------------------------------------- workers


@dataclass(eq=False)
class FakeActor:
    """A procedure actor the test plays."""

    urn: str
    call: WorkerCall | None = None
    """The call it was told and has not answered yet."""
    began: bool = False
    """It said Started for :attr:`call`."""
    alive: bool = True
    retiring: bool = False
    """Retired by the pool: it stops once its call returns."""
    told: list[int] = field(default_factory=list)
    """Request ids it was told, in order."""


class WorkerLane:
    """One client endpoint of a worker (``_worker.py``'s ``_Lane``): its engine and socket."""

    def __init__(self, client: str, engine: WorkerEngine) -> None:
        self.client = client
        """The name of the client whose endpoint this lane connects to."""
        self.engine = engine
        self.monitor: list[bool] = []
        """Socket monitor events not read yet: a connection came up (True) or dropped."""
        self.ticked_at: float | None = None


class WorkerNode:
    """One worker: a real WorkerEngine (and WorkerProtocol) per client endpoint, sharing one
    :class:`Lanes`, driven like ``_worker.py``, with a fake pool of fake actors."""

    def __init__(
        self, cluster: Cluster, peer: bytes, clients: Sequence[str], *, procedures: Sequence[str],
        pool_size: int, prefetch: int | None, heartbeat: float, liveness: int,
        max_message_size: int, idempotent: Sequence[str], name: str | None,
    ) -> None:
        self.cluster = cluster
        self.peer = peer
        self.pool_size = pool_size
        self.capacity = pool_size + (pool_size if prefetch is None else prefetch)
        ready = Ready(name or peer.decode(), self.capacity, heartbeat, liveness,
                      tuple(sorted(procedures)), max_message_size=max_message_size,
                      idempotent=tuple(sorted(idempotent)))
        self.lanes = Lanes(self.capacity)
        self.lane_list = [
            WorkerLane(client, WorkerEngine(
                WorkerProtocol(FrameCodec(cluster.key, max_message_size), ready, cluster.now),
                None, heartbeat * liveness, lanes=self.lanes, endpoint=client))
            for client in clients
        ]
        self.engines = [lane.engine for lane in self.lane_list]
        self.actors: dict[str, FakeActor] = {}
        """Every actor this worker ever had, by urn."""
        self._pool: dict[str, FakeActor] = {}  # the live pool (what Pool._actors holds)
        self._retired: set[str] = set()  # what Pool._retired holds
        self._urns = itertools.count()
        self.inbox: collections.deque[tuple[Any, ...]] = collections.deque()
        """The socket actor's inbox: what actors (and ``stop()``) told it, in order."""
        self._late: list[tuple[Any, ...]] = []  # Exited messages that arrive after the next tell
        self.told: list[tuple[int, str]] = []
        """(request id, actor urn) of every call told to an actor, in order."""
        self.retirements: list[str] = []
        """Actors the engines asked to retire, in order."""
        self.stopped = False
        """The worker's socket actor stopped (every engine ``finished``): nothing in or out."""
        self.killed = False
        self.frozen = False
        for _ in range(pool_size):  # Pool.fill(), in on_start (after the sockets connect)
            self._spawn()

    @property
    def engine(self) -> WorkerEngine:
        """The engine of the first (usually the only) lane."""
        return self.engines[0]

    @property
    def session(self) -> WorkerProtocol:
        return self.engines[0].session

    def lane(self, client: str) -> WorkerLane:
        (lane,) = [lane for lane in self.lane_list if lane.client == client]
        return lane

    # -- the fake pool (``Pool``: actors only)

    def _spawn(self) -> str:
        urn = f"{self.peer.decode()}/actor-{next(self._urns)}"
        actor = self.actors[urn] = FakeActor(urn)
        self._pool[urn] = actor
        self.lanes.actor_ready(urn)  # Pool's on_actor
        return urn

    def _pool_tell(self, urn: str, call: WorkerCall) -> bool:
        actor = self._pool.get(urn)
        if actor is None or not actor.alive:
            return False
        assert actor.call is None, f"{urn} was told call {call.request_id} while it runs another"
        actor.call, actor.began = call, False
        actor.told.append(call.request_id)
        return True

    def _pool_retire(self, urn: str) -> None:
        actor = self._pool.pop(urn, None)
        if actor is None:
            return
        self._retired.add(urn)
        actor.retiring = True
        if actor.call is None and actor.alive:  # an idle actor stops at once
            actor.alive = False
            self.inbox.append(("exited", urn, ()))
        self._spawn()

    def _pool_exited(self, urn: str) -> None:
        if urn in self._retired:
            self._retired.discard(urn)
            return
        if self._pool.pop(urn, None) is None:
            return  # already forgotten
        self._spawn()

    # -- what the test does as the actors (and as ``Worker.stop``)

    def actor_of(self, ref: RequestRef) -> FakeActor:
        """The actor holding call ``ref`` (told, not answered)."""
        request_id = _rid(ref)
        for actor in self.actors.values():
            if actor.call is not None and actor.call.request_id == request_id:
                return actor
        raise AssertionError(f"no actor of {self.peer!r} holds call {request_id}")

    def holds(self, ref: RequestRef) -> bool:
        """Call ``ref`` was told to one of this worker's actors and is not answered yet."""
        request_id = _rid(ref)
        return any(a.call is not None and a.call.request_id == request_id for a in self.actors.values())

    def running(self) -> list[int]:
        """Request ids the actors hold now, in the order they were told."""
        held = {a.call.request_id for a in self.actors.values() if a.call is not None}
        return [request_id for request_id, _ in self.told if request_id in held]

    def told_ids(self) -> list[int]:
        return [request_id for request_id, _ in self.told]

    def arguments(self, ref: RequestRef) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
        """(procedure, args, kwargs) of the call an actor holds."""
        call = self.actor_of(ref).call
        assert call is not None
        procedure, args, kwargs = _codec.loads(call.run.body)
        return procedure, tuple(args), dict(kwargs)

    def start(self, ref: RequestRef) -> None:
        """The actor begins the call (``Started``)."""
        actor = self.actor_of(ref)
        assert not actor.began, "started twice"
        actor.began = True
        self.inbox.append(("started", _rid(ref), self._lane_of(actor)))

    def _lane_of(self, actor: FakeActor) -> int:
        assert actor.call is not None
        return actor.call.run.lane

    def report(self, ref: RequestRef, message: Any) -> None:
        """``self.report(message)`` inside the procedure."""
        actor = self.actor_of(ref)
        assert actor.began, "a procedure reports only once it has started"
        self.inbox.append(("partial", _rid(ref), _codec.dumps(message), self._lane_of(actor)))

    def finish(self, ref: RequestRef, result: Any = None) -> None:
        """The procedure returns ``result`` (it says Started first if it had not)."""
        self.answer(ref, Command.REPLY, _codec.dumps(result))

    def raise_(self, ref: RequestRef, exception: BaseException) -> None:
        """The procedure raises ``exception``."""
        self.answer(ref, Command.ERROR, _codec.dump_exception(exception))

    def unknown(self, ref: RequestRef) -> None:
        """The actor has no such procedure (it answers at once, without Started)."""
        procedure = self.arguments(ref)[0]
        body = _codec.dump_error(ErrorKind.UNKNOWN, "UnknownProcedure", f"no procedure {procedure!r}")
        self.answer(ref, Command.ERROR, body, start=False)

    def answer(self, ref: RequestRef, command: Command, body: bytes, *, start: bool = True) -> None:
        """``Done``: the call's final REPLY or ERROR body. A retiring actor then stops."""
        actor = self.actor_of(ref)
        lane = self._lane_of(actor)
        if start and not actor.began:
            actor.began = True
            self.inbox.append(("started", _rid(ref), lane))
        actor.call, actor.began = None, False
        self.inbox.append(("done", _rid(ref), actor.urn, command, body, lane))
        if actor.retiring:
            actor.alive = False
            self.inbox.append(("exited", actor.urn, ()))

    def kill_actor(self, which: RequestRef | str, *, announce: bool = True) -> FakeActor:
        """The actor's loop ends (by urn, or the actor holding a call). A call it was told but
        had not begun comes back in ``Exited.unrun``. With ``announce=False`` its ``Exited`` is
        read only after the next hand-over (the socket actor finds it dead when telling it)."""
        actor = self.actors[which] if isinstance(which, str) else self.actor_of(which)
        assert actor.alive, f"{actor.urn} is already dead"
        actor.alive = False
        unrun: tuple[Run, ...] = ()
        if actor.call is not None and not actor.began:
            unrun = (actor.call.run,)
        actor.call, actor.began = None, False
        message = ("exited", actor.urn, unrun)
        (self.inbox if announce else self._late).append(message)
        return actor

    def leave(self, timeout: float = 5.0) -> None:
        """``Worker.stop(timeout)``: ``_BeginStop`` in the socket actor's inbox."""
        self.inbox.append(("leave", timeout))

    def live_actors(self) -> list[str]:
        return list(self._pool)

    # -- one turn of the socket actor's loop

    def turn(self, now: float) -> bool:
        if self.stopped or self.killed or self.frozen:
            return False
        busy = False
        for lane in self.lane_list:  # the watched monitors first, as the loop reads them
            while lane.monitor:  # _on_monitor
                busy = True
                lane.engine.connection(lane.monitor.pop(0), now)
        for lane in self.lane_list:
            for _, frames in self.cluster._arrived((self.peer, lane.client)):  # the lane's socket
                busy = True
                lane.engine.receive(frames, now)
        for lane in self.lane_list:  # on_wake
            engine = lane.engine
            if now >= engine.deadline and (lane.ticked_at != now or busy):
                lane.ticked_at = now
                busy = True
                engine.tick(now)
        while self.inbox and not self.stopped:  # on_inbox, and on_receive for the rest
            busy = True
            self._handle(self.inbox.popleft(), now)
        return self._flush(now) or busy

    def _handle(self, message: tuple[Any, ...], now: float) -> None:
        engines, kind = self.engines, message[0]
        if kind == "started":
            _, request_id, lane = message
            engines[lane].started(request_id)
        elif kind == "partial":
            _, request_id, body, lane = message
            engines[lane].partial(request_id, body)
        elif kind == "done":
            _, request_id, urn, command, body, lane = message
            engines[lane].done(request_id, urn, command, body, now)
        elif kind == "exited":
            _, urn, unrun = message
            self.lanes.actor_exited(urn, unrun)
            self._pool_exited(urn)
        elif kind == "leave":
            for engine in engines:
                engine.leave(now, message[1])
        else:  # pragma: no cover
            raise AssertionError(f"unknown inbox message {message!r}")

    def _flush(self, now: float) -> bool:
        """``_SocketActor.flush``."""
        busy = False
        if len(self.lane_list) > 1:
            self.lanes.rebalance(now)
        for lane in self.lane_list:
            engine = lane.engine
            engine.flush(now)
            busy = busy or bool(engine.out)
            out, engine.out = engine.out, []
            for frames in out:
                self.cluster._send(self.peer, lane.client, frames)
            if engine.to_retire:
                busy = True
                retire, engine.to_retire = engine.to_retire, []
                for urn in retire:
                    self.retirements.append(urn)
                    self._pool_retire(urn)
        for engine in self.engines:
            while engine.to_tell:
                busy = True
                self._tell(engine, now)
        if self._late:
            busy = True
            self.inbox.extend(self._late)
            self._late.clear()
        for lane in self.lane_list:
            if lane.engine.reconnect_wanted:
                busy = True
                lane.engine.reconnect_wanted = False
                self.cluster._drop_to((self.peer, lane.client))  # the old socket, and its queue
                lane.engine.connection(False, now)
                if self.cluster._can_connect(lane.client):
                    lane.monitor.append(True)
        held = self.lanes.held()
        assert held <= self.capacity, f"{self.peer!r} holds {held} calls, beyond {self.capacity}"
        if all(engine.finished for engine in self.engines) and not self.stopped:
            busy = True
            self.stopped = True
            self.cluster._drop_to(self.peer)
        return busy

    def _tell(self, engine: WorkerEngine, now: float) -> None:
        """``_SocketActor._tell``."""
        calls, engine.to_tell = engine.to_tell, []
        for index, call in enumerate(calls):
            if call.state is not CallState.HANDED:
                continue  # cancelled meanwhile
            assert call.actor is not None
            if not self._pool_tell(call.actor, call):
                dead = call.actor
                engine.tell_failed(calls[index:], dead)
                self._pool_exited(dead)
                return
            self.told.append((call.request_id, call.actor))
            engine.told(call, now)


# --------------------------------------------------------------------------- the cluster


class Cluster:
    """Clients and workers joined in memory, on a fake clock."""

    def __init__(
        self, clock: FakeClock, *, key: bytes | None = None, latency: float = 0.0,
    ) -> None:
        self.clock = clock
        self.key = key
        self.latency = latency
        self.clients: dict[str, ClientNode] = {}
        self.workers: dict[bytes, WorkerNode] = {}
        self.log: list[Sent] = []
        self._wire: list[tuple[float, int, Any, Any, list[bytes]]] = []
        self._seq = itertools.count()
        self._decoder = FrameCodec(key, 2**62)

    @property
    def now(self) -> float:
        return self.clock.now

    # -- nodes

    def add_client(
        self, name: str = "client", *, heartbeat: float = 1.0, liveness: int = 3,
        timeout: float = 5.0, retries: int = 2, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> ClientNode:
        """A client binds its endpoint; workers waiting for it connect."""
        assert name not in self.clients or self.clients[name].closed
        client = self.clients[name] = ClientNode(
            self, name, heartbeat=heartbeat, liveness=liveness, timeout=timeout, retries=retries,
            max_message_size=max_message_size)
        for worker in self.workers.values():
            if not (worker.killed or worker.stopped):
                for lane in worker.lane_list:
                    if lane.client == name:
                        lane.monitor.append(True)  # HANDSHAKE_SUCCEEDED
        self.settle()
        return client

    def add_worker(
        self, peer: bytes | str, *, client: str | Sequence[str] = "client",
        procedures: Sequence[str] = ("ping", "echo"), pool_size: int = 2,
        prefetch: int | None = None, heartbeat: float = 1.0, liveness: int = 3,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE, idempotent: Sequence[str] = (),
        name: str | None = None, settle: bool = True,
    ) -> WorkerNode:
        """A worker starts and connects to the endpoint of ``client`` (a name, or several: a
        lane each); with ``settle``, the network runs until it is registered (with the clients
        that are there)."""
        peer = peer.encode() if isinstance(peer, str) else peer
        assert peer not in self.workers, "routing ids are unique"
        clients = [client] if isinstance(client, str) else list(client)
        worker = self.workers[peer] = WorkerNode(
            self, peer, clients, procedures=procedures, pool_size=pool_size, prefetch=prefetch,
            heartbeat=heartbeat, liveness=liveness, max_message_size=max_message_size,
            idempotent=idempotent, name=name)
        for lane in worker.lane_list:
            if self._can_connect(lane.client):
                lane.monitor.append(True)  # the socket monitor's HANDSHAKE_SUCCEEDED
        if settle:
            self.settle()
        return worker

    def _can_connect(self, name: str) -> bool:
        client = self.clients.get(name)
        return client is not None and not client.closed

    def kill_worker(self, peer: bytes | str) -> None:
        """SIGKILL: it says nothing more and hears nothing more (no DISCONNECT)."""
        worker = self.workers[peer.encode() if isinstance(peer, str) else peer]
        worker.killed = True
        self._drop_to(worker.peer)

    def freeze(self, peer: bytes | str) -> None:
        """SIGSTOP: no turns; what is sent to it waits for it."""
        self.workers[peer.encode() if isinstance(peer, str) else peer].frozen = True

    def thaw(self, peer: bytes | str) -> None:
        self.workers[peer.encode() if isinstance(peer, str) else peer].frozen = False
        self.settle()

    # -- the wire

    def _alive(self, name: Any) -> bool:
        if isinstance(name, str):
            client = self.clients.get(name)
            return client is not None and not client.closed
        worker = self.workers.get(name)
        return worker is not None and not (worker.killed or worker.stopped)

    def _send(self, source: Any, target: Any, frames: list[bytes]) -> None:
        """From a client to a worker's routing id (its lane for that client gets it), or from a
        worker to a client's name."""
        try:
            message: Message | None = self._decoder.decode(frames)
        except ProtocolError:
            message = None
        dropped = not self._alive(target)
        self.log.append(Sent(self.now, source, target, list(frames), message, dropped))
        if not dropped:
            to = target if isinstance(target, str) else (target, source)  # (worker, its lane)
            self._wire.append((self.now + self.latency, next(self._seq), source, to, list(frames)))

    def inject(self, source: Any, target: Any, frames: list[bytes]) -> None:
        """Put raw frames on the wire as if ``source`` had sent them to ``target`` (a client's
        name, or a worker's routing id as bytes or str)."""
        if isinstance(target, str) and target not in self.clients:
            target = target.encode()
        self._send(source, target, frames)

    def _arrived(self, target: Any) -> list[tuple[Any, list[bytes]]]:
        """Take the messages for ``target`` that have arrived by now, in the order sent."""
        now = self.now
        arrived: list[tuple[float, int, Any, Any, list[bytes]]] = []
        rest: list[tuple[float, int, Any, Any, list[bytes]]] = []
        for item in self._wire:
            (arrived if item[3] == target and item[0] <= now else rest).append(item)
        self._wire = rest
        return [(source, frames) for _, _, source, _, frames in sorted(arrived)]

    def _drop_to(self, target: Any) -> None:
        """Forget what is on its way to ``target``: a client's name, a worker's routing id (all
        its lanes), or (routing id, client name) for one lane."""
        def bound(to: Any) -> bool:
            return to == target or (isinstance(to, tuple) and to[0] == target)
        self._wire = [item for item in self._wire if not bound(item[3])]

    def mark(self) -> int:
        """A place in :attr:`log`: ``sent(since=mark)`` is what was sent after it."""
        return len(self.log)

    def sent(
        self, source: Any = None, command: Command | None = None, *, target: Any = None,
        since: int = 0,
    ) -> list[Sent]:
        """What went on the wire (after ``since``, a :meth:`mark`), optionally only from
        ``source``, to ``target``, of ``command``."""
        source = source.encode() if isinstance(source, str) and source not in self.clients else source
        target = target.encode() if isinstance(target, str) and target not in self.clients else target
        return [
            s for s in self.log[since:]
            if (source is None or s.source == source) and (target is None or s.target == target)
            and (command is None or s.command is command)
        ]

    # -- time

    def _nodes(self) -> list[ClientNode | WorkerNode]:
        return [*self.clients.values(), *self.workers.values()]

    def settle(self, limit: int = 10_000) -> None:
        """Let every node take turns, at this very instant, until none has anything to do."""
        now = self.now
        for _ in range(limit):
            busy = False
            for node in self._nodes():
                busy = node.turn(now) or busy
            if not busy:
                return
        raise AssertionError("the engines never went quiet")

    def next_wake(self) -> float:
        """When the next loop wakes: the earliest engine deadline or arrival."""
        wake = float("inf")
        for node in self._nodes():
            if isinstance(node, ClientNode):
                if not node.closed:
                    wake = min(wake, node.engine.deadline)
            elif not (node.killed or node.stopped or node.frozen):
                wake = min(wake, *(engine.deadline for engine in node.engines))
        for arrival, _, _, target, _ in self._wire:
            worker = self.workers.get(target[0]) if isinstance(target, tuple) else None
            if worker is None or not worker.frozen:
                wake = min(wake, arrival)
        return wake

    def _advance_to(self, limit: float) -> bool:
        """Move the clock to the next wake-up if it is no later than ``limit``; False if not."""
        wake = self.next_wake()
        if wake <= self.now:
            self._stuck += 1
            if self._stuck > STUCK_LIMIT:
                raise AssertionError(
                    f"an engine's deadline stays in the past ({wake} <= {self.now}): "
                    "the real loop would spin")
            wake = self.now + TICK
        else:
            self._stuck = 0
        if wake > limit:
            return False
        self.clock.now = wake
        self.settle()
        return True

    _stuck = 0

    def run(self, seconds: float) -> Cluster:
        """Let ``seconds`` of fake time pass, waking exactly when the loops would."""
        end = self.now + seconds
        self.settle()
        self._stuck = 0
        while self._advance_to(end):
            pass
        self.clock.now = end
        self.settle()
        return self

    def run_until(self, predicate: Callable[[], bool], limit: float = 60.0) -> float:
        """Advance fake time until ``predicate()``; the fake seconds it took."""
        start = self.now
        self.settle()
        self._stuck = 0
        while not predicate():
            if not self._advance_to(start + limit):
                raise AssertionError(f"not reached within {limit} s of fake time")
        return self.now - start


def args_of_size(procedure: str, size: int) -> tuple[Any, ...]:
    """Arguments whose REQUEST body (``dumps_call``) is exactly ``size`` bytes."""
    empty = len(_codec.dumps_call(procedure, (b"",), {}))
    for n in range(max(0, size - empty - 16), size - empty + 16):
        args = (b"x" * n,)
        if len(_codec.dumps_call(procedure, args, {})) == size:
            return args
    raise AssertionError(f"no bytes argument makes a {size}-byte body")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_cluster(clock: FakeClock) -> Iterator[Callable[..., Cluster]]:
    """``make_cluster(key=..., latency=...)``: a :class:`Cluster` on the test's fake clock."""

    def make(**kwargs: Any) -> Cluster:
        return Cluster(clock, **kwargs)

    yield make


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    """A cluster with one client, ``"client"`` (heartbeat 1 s x 3, timeout 5 s), no workers."""
    c = make_cluster()
    c.add_client()
    return c
