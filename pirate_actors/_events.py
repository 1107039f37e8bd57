"""Events on the client side: what arrives, who listens, and the queues that hold them.

Workers emit events (``ProcedureActor.emit``, ``Worker.emit``); the client thread decodes each
one into an :class:`Event` and hands it to :class:`Subscribers`, which calls every subscriber
whose topic prefix matches: a callback (:class:`Subscription`) or a bounded queue
(:class:`EventQueue`, oldest dropped when full). Subscribing and closing happen on user threads;
delivery on the client thread.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator

__all__ = ["Event", "EventQueue", "Subscribers", "Subscription"]

logger = logging.getLogger("pirate_actors.client")


@dataclass(frozen=True)
class Event:
    """Something a worker said on its own: ``topic``, ``data``, the worker's id and the worker's
    ``time.time()`` when it emitted it."""

    topic: str
    data: Any
    worker: str
    time: float


class _Subscriber:
    """A topic prefix and what to do with a matching event (on the client thread)."""

    def __init__(self, subscribers: Subscribers, topic: str) -> None:
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a str, not {type(topic).__name__}")
        self._subscribers = subscribers
        self.topic = topic
        self.closed = False
        subscribers._add(self)

    def deliver(self, event: Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop receiving events."""
        if not self.closed:
            self.closed = True
            self._subscribers._remove(self)

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Subscription(_Subscriber):
    """``client.subscribe(callback, topic)``: calls ``callback(event)`` on the client's loop thread for
    every event whose topic starts with ``topic``, until :meth:`close`."""

    def __init__(self, subscribers: Subscribers, callback: Callable[[Event], object], topic: str) -> None:
        if not callable(callback):
            raise TypeError("callback must be callable")
        self.callback = callback
        super().__init__(subscribers, topic)

    def deliver(self, event: Event) -> None:
        try:
            self.callback(event)
        except Exception:
            logger.exception("event callback %r raised", self.callback)

    def __repr__(self) -> str:
        return f"<Subscription {self.topic!r} {self.callback!r}{' closed' if self.closed else ''}>"


class EventQueue(_Subscriber):
    """``client.events(topic, maxsize)``: the matching events, in arrival order, for any thread.

    When ``maxsize`` events wait, a new one pushes out the oldest (counted in :attr:`dropped`).
    ``get(timeout)`` raises ``queue.Empty`` when the timeout passes; iterating blocks for each
    next event and ends once the queue is closed (by :meth:`close` or the client closing) and
    empty."""

    def __init__(self, subscribers: Subscribers, topic: str, maxsize: int) -> None:
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError("maxsize must be an int >= 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: collections.deque[Event] = collections.deque()
        self._ready = threading.Condition()
        super().__init__(subscribers, topic)

    def deliver(self, event: Event) -> None:
        with self._ready:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(event)
            self._ready.notify()

    def get(self, timeout: float | None = None) -> Event:
        """The next event; ``queue.Empty`` if none comes within ``timeout`` (or it is closed)."""
        with self._ready:
            if not self._ready.wait_for(lambda: self._items or self.closed, timeout) or not self._items:
                raise queue.Empty
            return self._items.popleft()

    def qsize(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                yield self.get()
            except queue.Empty:
                return  # closed and drained

    def close(self) -> None:
        super().close()
        with self._ready:
            self._ready.notify_all()

    def __repr__(self) -> str:
        return f"<EventQueue {self.topic!r} {len(self._items)} waiting, {self.dropped} dropped>"


class Subscribers:
    """Every open subscription of one client. Copy-on-write, so delivery takes no lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: tuple[_Subscriber, ...] = ()
        self.closed = False

    def _add(self, subscriber: _Subscriber) -> None:
        with self._lock:
            if self.closed:
                subscriber.closed = True
                return
            self._all = (*self._all, subscriber)

    def _remove(self, subscriber: _Subscriber) -> None:
        with self._lock:
            self._all = tuple(s for s in self._all if s is not subscriber)

    def __bool__(self) -> bool:
        return bool(self._all)

    def deliver(self, event: Event) -> None:
        """To every subscriber whose topic prefix matches (the client thread calls this)."""
        for subscriber in self._all:
            if event.topic.startswith(subscriber.topic):
                subscriber.deliver(event)

    def close(self) -> None:
        """The client closed: every queue ends once drained; nothing more is delivered."""
        with self._lock:
            self.closed = True
            closing, self._all = self._all, ()
        for subscriber in closing:
            subscriber.close()
