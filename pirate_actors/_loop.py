"""The one socket loop both sides run: poll sockets and a mailbox's fd, read in bounded
batches, run timers when due, and hand everything else to a driver.

A driver is the thin adapter between this loop and the call engines (``_client.py``'s client
thread, ``_worker.py``'s socket actor). The loop knows nothing of calls or the protocol; the
driver knows nothing of polling. Each turn: the driver flushes (sends what its engines batched),
the loop sleeps until a socket, the mailbox or a watched socket stirs or the driver's wake-up
time comes, reads each socket that has messages (at most a batch: see :func:`drain`) into its
handler, lets the driver run its timers, and lets it take its mailbox; the loop ends when the
driver says so. The client reads one socket; a worker one per client it serves.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Protocol

import zmq

from ._mailbox import Mailbox, drain

__all__ = ["Driver", "SocketLoop"]


class Driver(Protocol):
    """What a side plugs into :class:`SocketLoop`."""

    def flush(self) -> None:
        """Send what is batched; last thing before the loop sleeps."""

    def wake_at(self) -> float:
        """The latest time the loop may sleep until (``inf``: no deadline)."""

    def on_wake(self, now: float, drained: bool) -> None:
        """After reading: run the timers that are due (``drained``: no unread backlog)."""

    def on_inbox(self) -> bool:
        """Take what other threads put in the mailbox; False ends the loop."""


class SocketLoop:
    """Polls sockets of messages, watched sockets and a mailbox's wake-up fd, for one driver.

    A socket of messages (``add``) is read in bounded batches, each message to its handler; it
    can be removed and replaced (the worker reconnects with a fresh one). A watched socket (the
    worker's socket monitor) has a handler that reads it itself."""

    def __init__(self, mailbox: Mailbox[Any], driver: Driver) -> None:
        self.mailbox = mailbox
        self.driver = driver
        self.poller = zmq.Poller()
        self.poller.register(mailbox.fd, zmq.POLLIN)
        self._sockets: dict[zmq.Socket[bytes], Callable[[list[bytes], zmq.Frame], object]] = {}
        self._extra: dict[zmq.Socket[bytes], Callable[[], None]] = {}
        self.interruptible = False
        """True while the loop sleeps in its poll, or its driver runs user callbacks: a signal's
        handler may run then (see ``_client._Interrupts``), not in the midst of bookkeeping."""

    def add(self, socket: zmq.Socket[bytes], on_frames: Callable[[list[bytes], zmq.Frame], object]) -> None:
        self._sockets[socket] = on_frames
        self.poller.register(socket, zmq.POLLIN)

    def remove(self, socket: zmq.Socket[bytes]) -> None:
        if self._sockets.pop(socket, None) is not None:
            self.poller.unregister(socket)

    def watch(self, socket: zmq.Socket[bytes], handler: Callable[[], None]) -> None:
        self._extra[socket] = handler
        self.poller.register(socket, zmq.POLLIN)

    def unwatch(self, socket: zmq.Socket[bytes]) -> None:
        if self._extra.pop(socket, None) is not None:
            self.poller.unregister(socket)

    def run(self) -> None:
        """Serve until the driver's ``on_inbox`` returns False."""
        self.driver.flush()
        while self.turn():
            pass

    def turn(self, max_wait: float | None = None) -> bool:
        """One turn: sleep until something stirs (at most ``max_wait`` seconds, None: until the
        driver's wake-up time), read, run the timers, take the mailbox, flush; False once the
        driver's ``on_inbox`` says the loop ends (then nothing is flushed)."""
        mailbox, driver = self.mailbox, self.driver
        fd = mailbox.fd
        timeout: int | None = 0
        if mailbox.prepare_sleep():
            wait = driver.wake_at() - time.monotonic()
            if max_wait is not None:
                wait = min(wait, max_wait)
            timeout = None if wait == math.inf else math.ceil(max(0.0, wait) * 1000)
        ready: dict[Any, int] = {}
        self.interruptible = True
        try:
            ready = dict(self.poller.poll(timeout))
        finally:
            self.interruptible = False
            mailbox.woken(fd in ready)
        if self._extra:
            for extra, handler in list(self._extra.items()):
                if extra in ready:
                    handler()
        drained = True
        for socket, on_frames in list(self._sockets.items()):
            if socket in ready and not drain(socket, on_frames):
                drained = False
        driver.on_wake(time.monotonic(), drained)
        if not driver.on_inbox():
            return False
        driver.flush()
        return True
