"""The supervised pool of procedure actors, run inside the worker's socket actor thread.

It keeps ``size`` live actors at all times: an actor that exits (a procedure raised a
``BaseException`` or stopped its own actor) is replaced when it says so, and an actor whose
running call was cancelled is *retired* — a fresh one takes its place at once and the old one is
stopped when its call returns. Calls beyond the free actors wait here in arrival order.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable, Iterable

import pykka
from pykka import ActorRef

from ._procedures import Run, spawning

__all__ = ["Pool"]

logger = logging.getLogger("pirate_actors.supervisor")


class Pool:
    """Dispatches :class:`Run`\\ s to idle actors and keeps the pool at full strength."""

    def __init__(
        self,
        start_actor: Callable[[], ActorRef[Any]],
        size: int,
        sink: ActorRef[Any],
        clock: Callable[[], float] = time.monotonic,
    ):
        self._start_actor = start_actor
        self._clock = clock
        self._sink = sink
        self.size = size
        self._actors: dict[str, ActorRef[Any]] = {}
        self._idle: collections.deque[str] = collections.deque()
        self._running: dict[int, str] = {}  # request id -> actor urn
        self.starting: dict[int, float] = {}  # handed-over calls whose Started is unseen -> when
        self._unsent: dict[str, Run] = {}  # actor urn -> call dispatched to it, not yet told
        self._runs: dict[int, Run] = {}  # request id -> the running call
        self._busy: dict[str, int] = {}  # actor urn -> request id
        self._retired: dict[str, ActorRef[Any]] = {}
        self.waiting: collections.OrderedDict[int, Run] = collections.OrderedDict()
        self.replacements = 0
        self.closed = False
        self._served: set[str] = set()  # actors that finished at least one call
        self._failed_starts = 0  # consecutive actors that died before serving anything
        self._pending_spawns: list[float] = []  # when to start delayed replacements
        self.next_spawn = float("inf")  # when the earliest of them is due (inf if none)
        for _ in range(size):
            self._spawn()

    # -- state

    @property
    def running(self) -> int:
        """Calls running now (cancelled ones whose actor is retired not counted)."""
        return len(self._running)

    def holds(self, request_id: int) -> bool:
        return request_id in self._running or request_id in self.waiting

    def __len__(self) -> int:
        """Calls held: running plus waiting."""
        return len(self._running) + len(self.waiting)

    def live_actors(self) -> int:
        return len(self._actors)

    # -- calls

    def submit(self, run: Run) -> None:
        """Run now on an idle actor, or wait in arrival order."""
        self.waiting[run.request_id] = run
        self._dispatch()

    def _dispatch(self) -> None:
        while self.waiting and self._idle:
            urn = self._idle.popleft()
            request_id, run = self.waiting.popitem(last=False)
            self._running[request_id] = urn
            self._runs[request_id] = run
            self._busy[urn] = request_id
            self._unsent[urn] = run

    def send(self) -> None:
        """Hand the dispatched calls to their actors. The socket thread calls this last, just
        before it sleeps: an actor woken earlier would only wait for the GIL while the socket
        thread finishes its turn (one more sleep and wake-up per call, measured)."""
        while self._unsent:
            unsent = list(self._unsent.items())
            self._unsent = {}
            now = self._clock()
            for index, (urn, run) in enumerate(unsent):
                try:
                    self._actors[urn].tell(run)
                except pykka.ActorDeadError:
                    # This call and the later ones wait again, first and in order, so calls
                    # still start in the order they arrived.
                    for later_urn, later in reversed(unsent[index:]):
                        self._take_back(later_urn, later.request_id)
                        if later_urn != urn:
                            self._idle.appendleft(later_urn)
                    self._lost(urn)
                    break
                self.starting[run.request_id] = now
            self._dispatch()

    def _take_back(self, urn: str, request_id: int) -> None:
        """Undo the dispatch of a call its actor never received: it waits again, first."""
        del self._running[request_id]
        run = self._runs.pop(request_id)
        del self._busy[urn]
        self.waiting[request_id] = run
        self.waiting.move_to_end(request_id, last=False)

    def finished(self, request_id: int, actor_urn: str) -> bool:
        """A call returned; True if its reply should be sent (False: it was cancelled)."""
        retired = self._retired.pop(actor_urn, None)
        if retired is not None:
            retired.stop(block=False)
            return False
        if self._busy.get(actor_urn) != request_id:
            return False
        del self._busy[actor_urn]
        del self._running[request_id]
        self.starting.pop(request_id, None)
        self._runs.pop(request_id, None)
        self._served.add(actor_urn)
        self._failed_starts = 0
        if actor_urn in self._actors and not self.closed:
            self._idle.append(actor_urn)
            self._dispatch()
        return True

    def cancel(self, request_id: int) -> None:
        """Forget a waiting call, or retire the actor running it and replace it at once."""
        if self.waiting.pop(request_id, None) is not None:
            return
        urn = self._running.pop(request_id, None)
        if urn is None:
            return
        self.starting.pop(request_id, None)
        run = self._runs.pop(request_id, None)
        if run is not None:
            run.cancelled = True  # seen by the procedure thread: report() goes quiet
        del self._busy[urn]
        if self._unsent.pop(urn, None) is not None:
            self._idle.appendleft(urn)  # its actor never got the call: still idle
            self._dispatch()
            return
        self._retired[urn] = self._actors.pop(urn)
        logger.debug("call %d cancelled while running; retiring its actor", request_id)
        if not self.closed:
            self._spawn()
            self._dispatch()

    def cancel_running(self) -> None:
        """Cancel every running call (their client is gone): each actor is retired and replaced."""
        for request_id in list(self._running):
            self.cancel(request_id)

    def exited(self, actor_urn: str, unrun: Iterable[Run]) -> int | None:
        """An actor's loop ended. Its unstarted calls run elsewhere; returns the id of a call
        it was running without answering (the caller must fail that call), if any."""
        self._retired.pop(actor_urn, None)
        unrun = list(unrun)
        unsent = self._unsent.pop(actor_urn, None)
        if unsent is not None:
            unrun.append(unsent)  # never told: it goes back like the calls it never started
        orphan = self._busy.pop(actor_urn, None)
        if orphan is not None:
            self._running.pop(orphan, None)
            self._runs.pop(orphan, None)
            self.starting.pop(orphan, None)
            if any(run.request_id == orphan for run in unrun):
                orphan = None  # it was handed to the actor but never started
        for run in reversed(unrun):
            if run.request_id not in self._running and not self.closed and not run.cancelled:
                self.waiting[run.request_id] = run
                self.waiting.move_to_end(run.request_id, last=False)
        if actor_urn in self._actors:
            self._lost(actor_urn)
        self._dispatch()
        return orphan

    def _lost(self, urn: str, now: float | None = None) -> None:
        self._actors.pop(urn, None)
        try:
            self._idle.remove(urn)
        except ValueError:
            pass
        if self.closed:
            return
        self.replacements += 1
        if urn in self._served:
            logger.info("procedure actor exited; starting a replacement")
            self._spawn()
            return
        # It died before serving anything (its on_start failed?): back off, don't spin.
        self._backoff("procedure actor died before serving a call")

    def _backoff(self, why: str) -> None:
        self._failed_starts += 1
        delay = min(5.0, 0.05 * 2 ** min(self._failed_starts, 7))
        logger.error("%s; replacing it in %.2f s", why, delay)
        self._pending_spawns.append(self._clock() + delay)
        self.next_spawn = min(self._pending_spawns)

    def tick(self, now: float) -> None:
        """Start the delayed replacements that are due."""
        due = [t for t in self._pending_spawns if t <= now]
        if due and not self.closed:
            self._pending_spawns = [t for t in self._pending_spawns if t > now]
            self.next_spawn = min(self._pending_spawns, default=float("inf"))
            for _ in due:
                self._spawn()
            self._dispatch()

    def _spawn(self) -> None:
        spawning.sink = self._sink
        try:
            ref = self._start_actor()
        except Exception as exc:  # noqa: BLE001 - the user's __init__ raised
            self._backoff(f"could not create a procedure actor ({exc!r})")
            return
        finally:
            spawning.sink = None
        self._actors[ref.actor_urn] = ref
        self._idle.append(ref.actor_urn)

    # -- shutdown

    def take_waiting(self) -> list[int]:
        """Remove and return the ids of every call that has not started."""
        ids = list(self.waiting)
        self.waiting.clear()
        return ids

    def close(self) -> list[ActorRef[Any]]:
        """Tell every actor to stop, without waiting (a running procedure cannot be
        interrupted); returns their refs so the caller can wait for them as long as it likes."""
        self.closed = True
        for run in self._runs.values():
            run.cancelled = True  # nobody will read their answers: report() goes quiet
        refs = [*self._actors.values(), *self._retired.values()]
        for ref in refs:
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        self._actors.clear()
        self._retired.clear()
        self._idle.clear()
        self._unsent.clear()
        return refs
