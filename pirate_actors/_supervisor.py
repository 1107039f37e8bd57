"""The supervised pool of procedure actors: spawn, retire, replace, back off.

The pool knows actors, not calls (which call runs where is the worker engine's). It keeps
``size`` live actors: one that exits (a procedure raised a ``BaseException`` or stopped its own
actor) is replaced at once, one that died before serving anything (its ``on_start`` failed?) is
replaced after an exponential backoff instead of in a busy loop, and one whose running call was
cancelled is *retired*: it is stopped after that call returns and a fresh actor takes its place
now. Every new actor's urn goes to ``on_actor``, so the engine can give it work.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any, Callable

import pykka
from pykka import ActorRef
from pykka._envelope import Envelope

from ._procedures import CancelSlot, Run, spawning

__all__ = ["Pool"]

logger = logging.getLogger("pirate_actors.supervisor")


class Pool:
    """``size`` live procedure actors, created by ``start_actor`` in the caller's thread."""

    def __init__(
        self,
        start_actor: Callable[[], ActorRef[Any]],
        size: int,
        sink: ActorRef[Any],
        on_actor: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
        max_restarts: int = 10,
        restart_window: float = 10.0,
        slots: int = 1,
        cancels_tasks: bool = False,
    ):
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self._deaths: collections.deque[float] = collections.deque()  # when actors died, recent
        self.crashed: str | None = None
        """Why the pool gave up (more than ``max_restarts`` deaths within ``restart_window``)."""
        self._start_actor = start_actor
        self._clock = clock
        self._sink = sink
        self._on_actor = on_actor
        self.size = size
        self.slots = slots
        """Calls each actor runs at once (``max_concurrency`` of an async actor class): the
        engine sees each actor as that many slots, ``urn/0`` … (just ``urn`` when 1)."""
        self.cancels_tasks = cancels_tasks
        """The actors are async: retiring a slot cancels its call's task instead."""
        self._actors: dict[str, ActorRef[Any]] = {}
        self._retired: dict[str, ActorRef[Any]] = {}
        self.replacements = 0
        self.closed = False
        self._served: set[str] = set()  # actors that finished at least one call
        self._failed_starts = 0  # consecutive actors that died before serving anything
        self._pending_spawns: list[float] = []  # when to start delayed replacements
        self.next_spawn = float("inf")  # when the earliest of them is due (inf if none)

    def fill(self) -> None:
        """Start the first ``size`` actors."""
        for _ in range(self.size - len(self._actors)):
            self._spawn()

    def live_actors(self) -> int:
        return len(self._actors)

    def slots_of(self, urn: str) -> list[str]:
        """The engine's names for actor ``urn``'s slots."""
        return [urn] if self.slots == 1 else [f"{urn}/{n}" for n in range(self.slots)]

    def urn_of(self, slot: str) -> str:
        return slot if self.slots == 1 else slot.rpartition("/")[0]

    # -- what the socket actor tells it

    def tell(self, slot: str, run: Run) -> bool:
        """Hand ``run`` to the actor of ``slot``; False if the actor is dead."""
        run.slot = slot
        ref = self._actors.get(slot if self.slots == 1 else self.urn_of(slot))
        if ref is None or ref.actor_stopped.is_set():
            return False
        ref.actor_inbox.put(Envelope(run))  # ActorRef.tell, less its own lookups
        return True

    def served(self, slot: str) -> None:
        """The actor of ``slot`` answered a call: it started fine."""
        urn = self.urn_of(slot)
        if urn not in self._served:
            self._served.add(urn)
            self._failed_starts = 0

    def retire(self, slot: str) -> None:
        """The call on ``slot`` was cancelled. A thread actor is stopped once that call
        returns, and its replacement starts now; an async actor cancels the call's task, and
        the slot takes calls again once the coroutine has returned."""
        if self.cancels_tasks:
            ref = self._actors.get(self.urn_of(slot))
            if ref is not None:
                try:
                    ref.tell(CancelSlot(slot))
                except pykka.ActorDeadError:
                    pass
            return
        urn = slot
        ref = self._actors.pop(urn, None)
        if ref is None:
            return
        self._retired[urn] = ref
        try:
            ref.stop(block=False)  # queued behind the running call
        except pykka.ActorDeadError:
            pass
        if not self.closed:
            self._spawn()

    def exited(self, urn: str, reason: str = "a procedure actor exited") -> None:
        """An actor's loop ended: replace it if it was live."""
        served = urn in self._served
        self._served.discard(urn)
        if self._retired.pop(urn, None) is not None or self._actors.pop(urn, None) is None:
            return  # retired (already replaced), or already forgotten
        if self.closed:
            return
        self.replacements += 1
        if self._died(reason):
            return
        if served:
            logger.info("procedure actor exited; starting a replacement")
            self._spawn()
        else:
            self._backoff("procedure actor died before serving a call")

    def _died(self, why: str) -> bool:
        """Count a death (Erlang's restart intensity); True if that was one too many."""
        now = self._clock()
        deaths = self._deaths
        deaths.append(now)
        while deaths and deaths[0] < now - self.restart_window:
            deaths.popleft()
        if len(deaths) <= self.max_restarts:
            return False
        self.crashed = (
            f"{len(deaths)} procedure actors died within {self.restart_window:g} s "
            f"(max_restarts={self.max_restarts}); the last: {why}"
        )
        logger.error("giving up: %s", self.crashed)
        self.closed = True
        return True

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

    def _spawn(self) -> None:
        spawning.sink = self._sink
        try:
            ref = self._start_actor()
        except Exception as exc:  # noqa: BLE001 - the user's __init__ raised
            if not self._died(f"could not create a procedure actor ({exc!r})"):
                self._backoff(f"could not create a procedure actor ({exc!r})")
            return
        finally:
            spawning.sink = None
        self._actors[ref.actor_urn] = ref
        for slot in self.slots_of(ref.actor_urn):
            self._on_actor(slot)

    # -- shutdown

    def close(self) -> list[ActorRef[Any]]:
        """Tell every actor to stop, without waiting (a running procedure cannot be
        interrupted); returns their refs so the caller can wait for them as long as it likes."""
        self.closed = True
        refs = [*self._actors.values(), *self._retired.values()]
        for ref in refs:
            try:
                ref.stop(block=False)
            except pykka.ActorDeadError:
                pass
        self._actors.clear()
        self._retired.clear()
        return refs
