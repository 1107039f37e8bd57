"""``CallFuture``: a ``concurrent.futures.Future`` that also carries a call's partial messages."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
from typing import Any, AsyncIterator, Callable, Generator, NamedTuple

__all__ = ["CallFuture", "WorkerInfo", "deliver_partials", "settle"]

logger = logging.getLogger("pirate_actors.client")

PartialCallback = Callable[["CallFuture", Any], object]


class CallFuture(concurrent.futures.Future):  # type: ignore[type-arg]
    """The pending result of one call, with the partial messages that came before it.

    ``cancel()`` succeeds for queued *and* running calls: the worker is told, and a late
    reply is dropped. ``worker`` is the id of the worker serving the call (None while queued).
    In asyncio code, ``await future`` gives the result (cancelling the awaiting task cancels
    the call) and ``async for message in future.apartials()`` the partials as they come.
    """

    def __init__(
        self, procedure: str, on_cancel: Callable[[CallFuture], None] | None = None,
        request_id: int = 0,
    ) -> None:
        super().__init__()
        self.procedure = procedure
        self.request_id = request_id
        self.partials: list[Any] = []
        self.worker: str | None = None
        self._attempts: list[str] = []  # the client engine's list: workers sent to, in order
        self._partial_callbacks: list[PartialCallback] = []
        self._partial_lock = threading.Lock()
        self._on_cancel = on_cancel

    @property
    def attempts(self) -> tuple[str, ...]:
        """Ids of the workers the call was sent to, in order (empty while it waits)."""
        return tuple(self._attempts)

    def add_partial_callback(self, fn: PartialCallback) -> None:
        """Call ``fn(future, message)`` for each partial; earlier ones are replayed now.

        Callbacks run in the thread that drives the client's loop (as done-callbacks do):
        the client thread, or a caller blocked in ``call()`` leading it. Keep them quick: a
        callback that blocks also delays that client's heartbeats."""
        with self._partial_lock:
            self._partial_callbacks.append(fn)
            earlier = list(self.partials)
        for message in earlier:
            self._invoke(fn, message)

    def _add_partial(self, message: Any) -> None:
        """Record a partial and run the callbacks (called by the client thread)."""
        with self._partial_lock:
            self.partials.append(message)
            callbacks = list(self._partial_callbacks)
        for fn in callbacks:
            self._invoke(fn, message)

    def _invoke(self, fn: PartialCallback, message: Any) -> None:
        try:
            fn(self, message)
        except Exception:
            logger.exception("partial callback %r raised", fn)

    def __await__(self) -> Generator[Any, None, Any]:
        """``await future`` in a running loop: the result, or the call's exception. Cancelling
        the awaiting task cancels the call (``asyncio.wrap_future`` passes the cancel on)."""
        return asyncio.wrap_future(self).__await__()

    async def apartials(self) -> AsyncIterator[Any]:
        """The call's partial messages as they arrive (earlier ones first), in the running
        loop; the iteration ends when the call is done (then ``await future`` for its result).
        The client thread hands each one over with ``call_soon_threadsafe``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue()

        def put(item: tuple[bool, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:
                pass  # the loop is closed: nobody is iterating any more

        self.add_partial_callback(lambda _future, message: put((False, message)))
        self.add_done_callback(lambda _future: put((True, None)))
        while True:
            done, message = await queue.get()
            if done:
                return
            yield message

    def cancel(self) -> bool:
        """Cancel the call, queued or running; False only if it already finished."""
        if self.cancelled():
            return True  # as concurrent.futures.Future does; nothing more to tell anyone
        if not super().cancel():
            return False
        # Future.cancel() wakes result() but not wait()/as_completed(): their waiters hear of
        # a cancel only here (executors call it when they would have run the call).
        try:
            self.set_running_or_notify_cancel()
        except RuntimeError:
            return True  # another thread cancelled it at the same moment and told everyone
        if self._on_cancel is not None:
            self._on_cancel(self)
        return True

    def __repr__(self) -> str:
        return f"<CallFuture {self.procedure} state={self._state} worker={self.worker}>"


def deliver_partials(partials: list[tuple[CallFuture, Any]]) -> None:
    """Record each ``(future, message)`` on its future, in order (the client thread's job)."""
    for future, message in partials:
        future._add_partial(message)


def settle(outcomes: collections.deque[tuple[CallFuture, Any, BaseException | None]]) -> None:
    """Complete each future with its result or exception, one at a time: if a done-callback
    raises a BaseException, the outcomes after it stay in ``outcomes`` for a later call."""
    while outcomes:
        future, result, exception = outcomes.popleft()
        try:
            if exception is None:
                future.set_result(result)
            else:
                future.set_exception(exception)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled meanwhile by a user thread


class WorkerInfo(NamedTuple):
    """A registered worker as the client sees it; ``id`` equals ``CallFuture.worker``."""

    id: str
    name: str
    procedures: tuple[str, ...]
    capacity: int
    in_flight: int
    idempotent: tuple[str, ...] = ()
    """Its procedures marked ``@idempotent``: lost calls to them are sent again."""
