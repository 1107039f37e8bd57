"""A thread-safe queue whose reader can sleep in a zmq poll on the queue and sockets at once.

Writers append and, only when the reader is asleep, write to an eventfd (a pipe where there is
none) that the reader's ``zmq.Poller`` watches. So a ``tell`` from any thread wakes the socket
thread at once, with no timer and no polling interval on the path.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any, Callable, Generic, Sequence, TypeVar

import zmq

from .protocol._wire import VIEW_SIZE

__all__ = ["Mailbox", "drain", "send_frames"]

MAX_BATCH = 256  # socket messages read per wake-up
MAX_READ_SECONDS = 0.02  # per wake-up, so a flood of messages cannot delay heartbeats
MAX_FRAMES = 3  # frames of one message kept: enough to tell a too-long message (malformed)
# Frames of VIEW_SIZE or more are handed over as a view of libzmq's buffer, not copied to bytes.

# pyzmq's constants are enums, and every operation on one builds a new enum member (~1 µs);
# the hot path uses their plain values.
_NOBLOCK = int(zmq.NOBLOCK)
_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)

T = TypeVar("T")


class Mailbox(Generic[T]):
    """A deque plus a wake-up file descriptor."""

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._asleep = False
        if hasattr(os, "eventfd"):
            self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._write_fd = self.fd
        else:  # pragma: no cover - non-Linux
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._write_fd, False)

    def put(self, item: T) -> None:
        """Append ``item``; wake the reader if it sleeps."""
        self._items.append(item)
        if self._asleep:
            self._asleep = False
            try:
                os.write(self._write_fd, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            except (BlockingIOError, OSError):
                pass  # already signalled, or closed at shutdown

    def signal(self) -> None:
        """Wake the reader, whatever it waits for."""
        try:
            os.write(self._write_fd, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except (BlockingIOError, OSError):
            pass  # already signalled, or closed at shutdown

    def put_quietly(self, item: T) -> None:
        """Append ``item`` without waking the reader: it is seen at the reader's next turn."""
        self._items.append(item)

    def get_nowait(self) -> T:
        """The oldest item; raises IndexError when empty."""
        return self._items.popleft()

    def peek(self) -> T:
        """The oldest item, left in place; raises IndexError when empty."""
        return self._items[0]

    def empty(self) -> bool:
        return not self._items

    def prepare_sleep(self) -> bool:
        """Mark the reader asleep; False (and not asleep) if items arrived meanwhile."""
        self._asleep = True
        if self._items:
            self._asleep = False
            return False
        return True

    def woken(self, signalled: bool) -> None:
        """After the poll: clear the sleep mark and, if the poll saw it, the wake-up signal."""
        self._asleep = False
        if signalled:
            try:
                os.read(self.fd, 8 if self.fd == self._write_fd else 4096)
            except (BlockingIOError, OSError):
                pass

    def close(self) -> None:
        for fd in {self.fd, self._write_fd}:
            try:
                os.close(fd)
            except OSError:
                pass


def drain(socket: zmq.Socket[Any], handle: Callable[[list[Any], zmq.Frame], object]) -> bool:
    """Read and ``handle`` the socket's waiting messages, at most a batch or 20 ms worth, so
    timers still get their turn; True once the socket is drained. ``handle`` gets each
    message's frames and its last ``zmq.Frame`` (whose properties name the peer's address)."""
    until = time.monotonic() + MAX_READ_SECONDS
    events, recv = socket.getsockopt, socket.recv
    for index in range(MAX_BATCH):
        if index:
            if not events(_EVENTS) & _POLLIN:  # type: ignore[operator]
                return True  # cheaper than a recv that raises zmq.Again
            if time.monotonic() > until:
                return False
        # recv_multipart, but each frame's "more" flag read from the frame itself rather than
        # by a getsockopt(RCVMORE) per frame (~40 % cheaper). A message is one
        # frame (two at a ROUTER): frames past MAX_FRAMES are read and dropped, not kept, so a
        # peer cannot make the loop hold many frames of up to max_message_size each.
        # The first message is read without asking: the loop drains a socket its poll found
        # readable, so the recv almost never raises.
        try:
            frame = recv(_NOBLOCK, copy=False)
        except zmq.Again:
            return True
        frames = [frame.bytes if len(frame) < VIEW_SIZE else frame.buffer]
        while frame.more:
            frame = recv(_NOBLOCK, copy=False)
            if len(frames) < MAX_FRAMES:
                frames.append(frame.bytes if len(frame) < VIEW_SIZE else frame.buffer)
        handle(frames, frame)
    return False


def send_frames(socket: zmq.Socket[Any], frames: Sequence[bytes]) -> None:
    """``send_multipart(frames, NOBLOCK)`` without its per-frame enum arithmetic."""
    send = socket.send
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        send(frame, _MORE if index < last else _NOBLOCK, copy=False)
