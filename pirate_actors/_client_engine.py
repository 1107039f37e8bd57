"""The client's call engine, sans-IO: every unfinished call from submission to outcome.

It owns the client's session (:class:`~pirate_actors.protocol.ClientProtocol`, whose
``workers`` is the one registry of workers and their load), a queue per procedure, dispatch,
requeue, no-worker deadlines, cancels and the batches to send. Input: submitted calls, cancels,
frames from workers, and ``now``; output: frames to send (:attr:`ClientEngine.out`) and outcomes
for the futures (:attr:`ClientEngine.partials`, :attr:`ClientEngine.settled`). No sockets, no
clock, no threads: the client thread in ``_client.py`` drives it, and tests drive it in memory.

Counts are derived: queued is the size of the queues, in flight the calls the workers hold,
free capacity the worker's capacity minus its calls.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import _codec
from ._codec import ErrorKind
from ._errors import CallTimeout, NoWorkerError, PirateError, ProtocolError, WorkerLost
from ._future import CallFuture
from .protocol import (
    DEADLINE,
    ENTRY_HEADER,
    RETRYABLE,
    STARTED,
    BadCalls,
    CallsReceived,
    CapacityChanged,
    ClientProtocol,
    Command,
    Entry,
    Event,
    EventEntry,
    EventsReceived,
    WorkerGone,
    WorkerLeaving,
    WorkerPeer,
    WorkerRegistered,
    WorkerState,
    deadline_head,
)

__all__ = ["Call", "ClientEngine"]

logger = logging.getLogger("pirate_actors.client")

_REGISTERED = WorkerState.REGISTERED


@dataclass(slots=True, eq=False)
class Call:
    """One unfinished call: queued while ``peer`` is None, else held by that worker."""

    request_id: int
    procedure: str
    body: bytes
    future: CallFuture
    submitted: float
    peer: bytes | None = None
    retries: int | None = None
    """Times it may be sent again after its worker was lost; None: the client's ``retries``
    if the worker announced the procedure idempotent, else never."""
    deadline: float | None = None
    """When it fails with CallTimeout (or NoWorkerError) wherever it is; None: never."""
    attempts: list[str] = field(default_factory=list)
    """The workers it was sent to, in order."""
    registrations: int = -1
    """The engine's registrations when it was submitted (-1: there was a worker then)."""
    losses: int = 0
    """Workers lost while holding it (calls answered "not run" do not count)."""


Outcome = tuple[CallFuture, Any, "BaseException | None"]

_Vacancy = tuple[int, int, bytes, WorkerPeer]
"""(-free, order, routing id, record) as they were when the entry was made."""


class Vacancies:
    """Registered workers by free capacity, one heap per set of procedures served, so that
    dispatch finds the freest worker for a procedure in O(log workers) rather than scanning
    every worker for every call.

    An index over :attr:`ClientProtocol.workers`, never a second record: an entry says what a
    worker's free capacity was when it changed; one that no longer matches its worker (which
    has changed again, is leaving, or is gone) is dropped when it comes to the top. Whoever
    changes a worker's calls or capacity calls :meth:`changed`.
    """

    def __init__(self, workers: dict[bytes, WorkerPeer]) -> None:
        self._workers = workers
        self._heaps: dict[frozenset[str], list[_Vacancy]] = {}
        self._serving: dict[str, list[list[_Vacancy]]] = {}
        """Per procedure, the heaps of the workers that serve it (rebuilt as groups come and go)."""
        self._order = itertools.count()
        """Ties go to the worker whose free capacity changed first: calls spread round robin."""

    def changed(self, peer: bytes, worker: WorkerPeer) -> None:
        heap = self._heaps.get(worker.procedures)
        if heap is None:
            heap = self._heaps[worker.procedures] = []
            self._serving.clear()
        heapq.heappush(heap, (-worker.free, next(self._order), peer, worker))
        if len(heap) > 4 * len(self._workers) + 64:
            self._rebuild(worker.procedures)

    def _rebuild(self, procedures: frozenset[str]) -> None:
        """Only the current entries of one group: stale ones deeper in the heap pile up."""
        heap = self._heaps[procedures]  # in place: _serving holds it too
        heap[:] = [(-w.free, next(self._order), p, w) for p, w in self._workers.items()
                   if w.procedures == procedures and w.state is _REGISTERED]
        if heap:
            heapq.heapify(heap)
        else:
            del self._heaps[procedures]
            self._serving.clear()

    def _top(self, heap: list[_Vacancy]) -> _Vacancy | None:
        workers = self._workers
        while heap:
            entry = heap[0]
            worker = entry[3]
            if workers.get(entry[2]) is worker and worker.state is _REGISTERED and -entry[0] == worker.free:
                return entry
            heapq.heappop(heap)
        return None

    def best(self, procedure: str) -> bytes | None:
        """The freest registered worker that serves ``procedure``, or if none does the freest
        of all (it answers UnknownProcedure); None while those are full."""
        heaps = self._serving.get(procedure)
        if heaps is None:
            heaps = self._serving[procedure] = [
                heap for procedures, heap in self._heaps.items() if procedure in procedures]
        best = self._freest(heaps)
        if best is None:
            best = self._freest(list(self._heaps.values()))
        if best is None or best[0] >= 0:
            return None
        return best[2]

    def _freest(self, heaps: list[list[_Vacancy]]) -> _Vacancy | None:
        best: _Vacancy | None = None
        for heap in heaps:
            top = self._top(heap)
            if top is not None and (best is None or top < best):
                best = top
        return best


class ClientEngine:
    """Calls in, frames and outcomes out. Not thread-safe: one thread drives it."""

    def __init__(self, session: ClientProtocol, timeout: float, now: float, retries: int = 2) -> None:
        self.session = session
        self.timeout = timeout
        self.retries = retries
        """Re-sends of a call to an idempotent procedure whose worker was lost."""
        self.retried = 0
        """Calls sent again after their worker was lost, ever."""
        self._deadlines: list[tuple[float, int]] = []  # (deadline, request id), a heap
        self.calls: dict[int, Call] = {}
        """Every unfinished call, queued or in flight, by request id."""
        self._queues: dict[str, collections.OrderedDict[int, Call]] = {}
        """Queued calls per procedure, in submission order; a procedure with none has no entry."""
        self.no_worker_since = now
        self.registrations = 0
        """READYs that registered a worker, ever (``call()`` tells "no worker" from "too slow")."""
        self.workers_changed = False
        """Set when the registered workers changed; the driver clears it once it has told."""
        self.deadline = float("inf")
        """When :meth:`tick` next has work: only ever too early, never too late."""
        self.out: list[tuple[bytes, list[bytes]]] = []
        self.partials: list[tuple[CallFuture, Any]] = []
        self.events: list[tuple[str, tuple[EventEntry, ...]]] = []
        """Events received, by worker id, in arrival order (decoded by the driver)."""
        self.events_received = 0
        self.submitted = 0
        """Calls submitted, ever."""
        self.outcomes: collections.Counter[str] = collections.Counter()
        """How calls ended, ever: succeeded, raised (the procedure raised), timed_out, no_worker,
        lost (their worker died or left while they ran), protocol (too large, undecodable),
        cancelled (by their caller) and closed (the client closed first)."""
        self.explain: Callable[[], str] = _nothing
        """Adds to "no worker" errors what was dropped and why (the driver's :class:`DropLog`)."""
        self.settled: collections.deque[Outcome] = collections.deque()
        self._requests: dict[bytes, list[Entry]] = {}
        self._cancels: dict[bytes, list[Entry]] = {}
        self._in_out: dict[int, list[Entry]] = {}
        """The entries of each REQUEST message the last :meth:`flush` put in :attr:`out`, by
        the message's index there: until the driver has sent it, they have not left this
        process (see :meth:`not_sent`)."""
        self._vacancies = Vacancies(session.workers)

    # -- derived counts

    @property
    def queued(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    @property
    def in_flight(self) -> int:
        return sum(len(worker.calls) for worker in self.session.workers.values())

    def registered(self) -> int:
        """Workers that take calls now (leaving ones do not)."""
        return sum(1 for worker in self.session.workers.values() if worker.state is _REGISTERED)

    def _any_registered(self) -> bool:
        """``registered() > 0``, without counting them all (it is asked for every call)."""
        return any(worker.state is _REGISTERED for worker in self.session.workers.values())

    # -- input: calls

    def submit(self, call: Call, now: float) -> None:
        self.submitted += 1
        self.calls[call.request_id] = call
        call.future._attempts = call.attempts
        if call.registrations == -1 and not self._any_registered():
            call.registrations = self.registrations
        if call.deadline is not None:
            deadlines = self._deadlines
            if len(deadlines) > 2 * len(self.calls) + 64:
                # Calls that ended before their deadline leave their entry behind: drop those.
                deadlines[:] = [d for d in deadlines if d[1] in self.calls]
                heapq.heapify(deadlines)
            heapq.heappush(deadlines, (call.deadline, call.request_id))
            self.deadline = min(self.deadline, call.deadline)
        queue = self._queues.get(call.procedure)
        if queue is None:
            queue = self._queues[call.procedure] = collections.OrderedDict()
        queue[call.request_id] = call
        # Its no-worker deadline, should every worker be gone or leaving then (only ever too
        # early: a tick that finds a worker registered just looks again later).
        self.deadline = min(self.deadline, max(now, self.no_worker_since) + self.timeout)

    def cancel(self, request_id: int) -> None:
        """The caller cancelled a call: forget it (counted as cancelled)."""
        if request_id in self.calls:
            self.outcomes["cancelled"] += 1
            self._drop(request_id)

    def _drop(self, request_id: int) -> None:
        """Forget a call: taken out of its queue, or its worker is told to drop it."""
        call = self.calls.pop(request_id, None)
        if call is None:
            return
        if call.peer is None:
            self._unqueue(call)
            return
        if call.peer in self.session.workers:
            self._release(call)
            self._cancels.setdefault(call.peer, []).append(Entry(request_id))

    def _unqueue(self, call: Call) -> None:
        queue = self._queues[call.procedure]
        del queue[call.request_id]
        if not queue:
            del self._queues[call.procedure]

    # -- input: the network and time

    def receive(self, peer: bytes, frames: list[bytes], now: float) -> None:
        """A message from worker ``peer`` (a ROUTER's frames without the routing id)."""
        events, out = self.session.receive(peer, frames, now)
        if out:
            self.out.extend(out)
        if len(events) == 1:
            event = events[0]
            if type(event) is CallsReceived:
                self._answers(event)  # answers never bring a deadline forward
                return
            if type(event) is EventsReceived:
                self._events(event)  # nor do events
                return
        self._handle(events, now)
        self.deadline = self._next_deadline()

    def tick(self, now: float, drained: bool = True) -> None:
        """Expire silent workers (only once the backlog is read), heartbeat the others, and
        fail queued calls that found no worker in time."""
        events, out = self.session.tick(now, expire=drained)
        self.out.extend(out)
        self._handle(events, now)
        self._expire_queued(now)
        if self._deadlines:
            self._expire_deadlines(now)
        self.deadline = self._next_deadline()

    def _expire_deadlines(self, now: float) -> None:
        """Calls past their deadline fail, and are cancelled wherever they are."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, request_id = heapq.heappop(deadlines)
            call = self.calls.get(request_id)
            if call is None or call.deadline != deadline:
                continue
            saw_worker = (
                call.registrations == -1 or call.registrations != self.registrations
                or self._any_registered()
            )
            self._drop(request_id)
            wait = deadline - call.submitted
            if saw_worker:
                error: Exception = CallTimeout(
                    f"{call.procedure!r} got no reply within {wait:g} s; cancelled")
            else:
                error = NoWorkerError(
                    f"no worker registered within {wait:g} s to take {call.procedure!r}{self.explain()}")
            self._settle(call, None, error)

    def _next_deadline(self) -> float:
        deadline = self.session.next_deadline()
        if self._deadlines:
            deadline = min(deadline, self._deadlines[0][0])
        if self._queues and not self._any_registered():
            oldest = min(min(c.submitted for c in q.values()) for q in self._queues.values())
            deadline = min(deadline, max(oldest, self.no_worker_since) + self.timeout)
        return deadline

    # -- output

    def flush(self, now: float) -> None:
        """Dispatch what can go, then turn the batches into frames in :attr:`out`."""
        if self._in_out:
            self._in_out.clear()  # what the previous flush put out has been sent since
        if self._queues:
            self._dispatch(now)
        session = self.session
        for batches, command in ((self._cancels, Command.CANCEL), (self._requests, Command.REQUEST)):
            if not batches:
                continue
            for peer, entries in batches.items():
                worker = session.workers.get(peer)
                if worker is None:
                    continue  # gone meanwhile: its calls already ended
                for chunk in self._chunks(entries, worker):
                    if command is Command.REQUEST:
                        self._in_out[len(self.out)] = chunk
                    self.out.append(session.calls(peer, command, chunk, now))
            batches.clear()

    def not_sent(self, peer: bytes, indexes: Iterable[int]) -> None:
        """The socket refused these messages of the last flush's :attr:`out` (by index), all to
        ``peer``: their calls never left this process, so they go back to the queue as they
        were, no retry spent. Nothing can have answered them: call this before reading more."""
        worker = self.session.workers.get(peer)
        for index in indexes:
            for entry in self._in_out.pop(index, ()):
                call = self.calls.get(entry.request_id)
                if call is not None and call.peer == peer:
                    if worker is not None and call.attempts and call.attempts[-1] == worker.id:
                        call.attempts.pop()  # it was never sent there
                    self._requeue(call)

    def unreachable(self, peer: bytes, now: float) -> None:
        """The socket has no connection to ``peer`` any more (a send to it failed): that
        worker is gone for good, since one that reconnects comes with a new routing id. The
        calls it holds were sent before and are lost, as when it falls silent."""
        self._handle(self.session.unreachable(peer), now)

    def _chunks(self, entries: list[Entry], worker: WorkerPeer) -> list[list[Entry]]:
        """Split a batch so that no message exceeds either side's max_message_size."""
        limit = self.session.codec.room(self._limit(worker))
        chunks: list[list[Entry]] = [[]]
        size = 0
        for entry in entries:
            entry_size = entry.size + ENTRY_HEADER
            if chunks[-1] and size + entry_size > limit:
                chunks.append([])
                size = 0
            chunks[-1].append(entry)
            size += entry_size
        return chunks

    def _limit(self, worker: WorkerPeer) -> int:
        own = self.session.codec.max_message_size
        return min(own, worker.ready.max_message_size or own)

    # -- dispatch

    def _dispatch(self, now: float) -> None:
        """Hand queued calls to the worker with the most free capacity among those that serve
        their procedure (any worker if none does: it answers UnknownProcedure). Each procedure
        keeps its submission order; a procedure no free worker serves holds back no other."""
        workers = self.session.workers
        if not workers:
            return
        heads = [(next(iter(queue)), procedure) for procedure, queue in self._queues.items()]
        heapq.heapify(heads)
        vacancies = self._vacancies
        while heads:
            request_id, procedure = heads[0]
            peer = vacancies.best(procedure)
            if peer is None or (self._queues[procedure][request_id].losses
                                and _silent(workers[peer], now)):
                # Waits; later procedures still go. A call already lost once waits too rather
                # than go to a worker that missed its heartbeat: hosts cut off together are
                # given up one by one, and it would burn its retries on each.
                heapq.heappop(heads)
                continue
            queue = self._queues[procedure]
            call = queue.pop(request_id)
            if queue:
                heapq.heapreplace(heads, (next(iter(queue)), procedure))
            else:
                heapq.heappop(heads)
                del self._queues[procedure]
            worker = workers[peer]
            limit = self._limit(worker)
            flags, head = 0, b""
            if call.deadline is not None:
                flags, head = DEADLINE, deadline_head(call.deadline - now)
            if len(head) + len(call.body) > self.session.codec.max_body(limit):
                # Its socket would cut the worker off (zmq.MAXMSGSIZE): fail just this call.
                self._finish(call, exception=ProtocolError(
                    f"call {procedure!r} of {len(call.body)} bytes exceeds the max_message_size "
                    f"of worker {worker.ready.name} ({limit})"
                ))
                continue
            if self._retries_allowed(call, worker) > call.losses:
                flags |= RETRYABLE
            call.peer = peer
            call.attempts.append(worker.id)
            call.future.worker = worker.id
            worker.calls.add(request_id)
            vacancies.changed(peer, worker)
            self._requests.setdefault(peer, []).append(Entry(request_id, flags, call.body, head))

    def _requeue(self, call: Call) -> None:
        """A call goes back to the queue, ahead of newer calls of its procedure."""
        self._release(call)
        call.peer = None
        call.future.worker = None
        queue = self._queues.get(call.procedure)
        if queue is None:
            self._queues[call.procedure] = collections.OrderedDict([(call.request_id, call)])
            return
        queue[call.request_id] = call
        if next(iter(queue)) > call.request_id:
            queue.move_to_end(call.request_id, last=False)
        elif any(other > call.request_id for other in queue):
            # Rare: several requeued calls out of order; restore submission order.
            self._queues[call.procedure] = collections.OrderedDict(sorted(queue.items()))

    # -- events

    def _handle(self, events: list[Event], now: float) -> None:
        for event in events:
            if isinstance(event, CallsReceived):
                self._answers(event)
            elif isinstance(event, EventsReceived):
                self._events(event)
            elif isinstance(event, WorkerRegistered):
                ready = event.ready
                logger.info(
                    "worker %s (%s) registered: capacity %d, heartbeat %.3g s x %d, procedures %s",
                    ready.name, ready.id or event.peer.decode(errors="replace"), ready.capacity,
                    ready.heartbeat, ready.liveness, ", ".join(ready.procedures),
                )
                self.registrations += 1
                self.workers_changed = True
                self._vacancies.changed(event.peer, self.session.workers[event.peer])
            elif isinstance(event, WorkerGone):
                self._worker_gone(event, now)
            elif isinstance(event, CapacityChanged):
                self._vacancies.changed(event.peer, self.session.workers[event.peer])
            elif isinstance(event, WorkerLeaving):
                worker = self.session.workers.get(event.peer)
                if worker is not None:
                    logger.info("worker %s is leaving", worker.ready.name)
                self._workers_changed(now)
            elif isinstance(event, BadCalls):
                error = ProtocolError(f"malformed {event.command.name} from the worker: {event.reason}")
                for request_id in event.request_ids:
                    call = self.calls.get(request_id)
                    if call is not None and call.peer == event.peer:
                        self._finish(call, exception=error)

    def _worker_gone(self, event: WorkerGone, now: float) -> None:
        worker = event.worker
        if worker is None:
            return
        if event.graceful:
            logger.info("worker %s left", worker.ready.name)
        else:
            logger.warning("worker %s lost: %s", worker.ready.name, event.reason)
        for request_id in sorted(worker.calls):
            call = self.calls.get(request_id)
            if call is None:
                continue
            if event.graceful:
                self._requeue(call)  # sent while it was leaving: it never received it
            else:
                self._lost(call, worker, event.reason)
        self._cancels.pop(event.peer, None)
        self._requests.pop(event.peer, None)
        self._workers_changed(now)

    def _lost(self, call: Call, worker: WorkerPeer, reason: str) -> None:
        """The call's worker was lost (or stopped) while holding it: it may have run. Sent
        again if its retries allow, else it fails with WorkerLost naming each worker tried."""
        call.losses += 1
        if call.losses <= self._retries_allowed(call, worker):
            self.retried += 1
            self._requeue(call)
            return
        tried = ", ".join(call.attempts)
        self._finish(call, exception=WorkerLost(
            f"worker {worker.ready.name} was lost before replying: {reason} "
            f"(sent to {len(call.attempts)} worker(s): {tried})"
        ))

    def _retries_allowed(self, call: Call, worker: WorkerPeer) -> int:
        """How often ``call`` may be sent again if ``worker`` is lost while holding it."""
        if call.retries is not None:
            return call.retries
        return self.retries if call.procedure in worker.ready.idempotent else 0

    def _workers_changed(self, now: float) -> None:
        if not self._any_registered():
            self.no_worker_since = now
        self.workers_changed = True

    def _events(self, event: EventsReceived) -> None:
        worker = self.session.workers.get(event.peer)
        self.events.append((worker.id if worker is not None else event.peer.decode(errors="replace"),
                            event.entries))
        self.events_received += len(event.entries)

    def _answers(self, event: CallsReceived) -> None:
        command, peer, calls = event.command, event.peer, self.calls
        for entry in event.entries:
            call = calls.get(entry.request_id)
            if call is None or call.peer != peer:
                continue  # cancelled, or a late answer for a call that ended otherwise
            future = call.future
            if entry.flags & STARTED:
                self.partials.append((future, "started"))
            if command is Command.PARTIAL:
                if not entry.flags & STARTED:
                    try:
                        self.partials.append((future, _codec.loads(entry.body)))
                    except Exception as exc:  # noqa: BLE001
                        logger.warning("undecodable partial for call %d: %r", entry.request_id, exc)
            elif command is Command.REPLY:
                try:
                    result = _codec.loads(entry.body)
                except Exception as exc:  # noqa: BLE001
                    self._finish(call, exception=ProtocolError(f"undecodable result: {exc!r}"))
                else:
                    self._finish(call, result=result)
            else:
                kind, exception = _codec.load_error(entry.body)
                if kind == ErrorKind.NOT_RUN:
                    self._requeue(call)
                elif kind == ErrorKind.ABANDONED and peer in self.session.workers:
                    self._lost(call, self.session.workers[peer], str(exception))
                else:
                    self._finish(call, exception=exception)

    def _release(self, call: Call) -> None:
        """The worker that held ``call`` (if it is still registered) holds it no more."""
        if call.peer is not None:
            worker = self.session.workers.get(call.peer)
            if worker is not None:
                worker.calls.discard(call.request_id)
                self._vacancies.changed(call.peer, worker)

    def _finish(self, call: Call, *, result: Any = None, exception: BaseException | None = None) -> None:
        """The call is over: forget it; its future is settled by the driver."""
        del self.calls[call.request_id]
        self._release(call)
        self._settle(call, result, exception)

    def _settle(self, call: Call, result: Any, exception: BaseException | None) -> None:
        """Hand the outcome to the driver, and count it by how it ended."""
        self.outcomes[_outcome(exception)] += 1
        self.settled.append((call.future, result, exception))

    def _expire_queued(self, now: float) -> None:
        if not self._queues or self._any_registered():
            return
        for queue in list(self._queues.values()):
            for call in list(queue.values()):
                if now - max(call.submitted, self.no_worker_since) >= self.timeout:
                    self._unqueue(call)
                    self._finish(call, exception=NoWorkerError(
                        f"no worker registered for {self.timeout:g} s to take {call.procedure!r}"
                        f"{self.explain()}"))

    # -- the end

    def close(self, now: float) -> None:
        """DISCONNECT to every worker, and fail whatever is unfinished."""
        self.out.extend(self.session.close(now))
        self.fail_all()

    def fail_all(self) -> None:
        error = "the client was closed"
        for call in list(self.calls.values()):
            if call.peer is None:
                self._unqueue(call)
            self._finish(call, exception=PirateError(error))


def _silent(worker: WorkerPeer, now: float) -> bool:
    """Has ``worker`` said nothing for longer than its heartbeat (it sends at least that often)?"""
    return now - worker.peer.last_received > worker.peer.heartbeat


def _nothing() -> str:
    return ""


def _outcome(exception: BaseException | None) -> str:
    """The ``outcomes`` counter a call's end goes to."""
    if exception is None:
        return "succeeded"
    if isinstance(exception, CallTimeout):
        return "timed_out"
    if isinstance(exception, NoWorkerError):
        return "no_worker"
    if isinstance(exception, WorkerLost):
        return "lost"
    if isinstance(exception, ProtocolError):
        return "protocol"
    if type(exception) is PirateError:
        return "closed"
    return "raised"
