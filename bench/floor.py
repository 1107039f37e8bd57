"""The floor of pirate_actors' design: raw pyzmq plus the same thread hand-offs, and nothing else.

pirate_actors moves a call through these Python threads, which is part of what the SPEC asks
for: one call at a time, the caller leads the client's loop itself (caller → socket actor →
procedure actor, and back); with calls in flight, ``submit()`` hands them to the client thread
(caller → client loop → socket actor → procedure actor, and back). This contender does the same
hand-offs with the least Python possible, so that the benchmark can tell what the hand-offs
cost (raw → floor) from what the runtime adds on top of them (floor → pirate_actors):

- client process: for calls in flight, the caller thread appends a request to a deque and
  writes an eventfd; a loop thread polls the ROUTER and the eventfd, sends, and hands each
  reply back through a ``SimpleQueue``. One call at a time, the loop thread parks for the
  window and the caller sends and polls the ROUTER itself, as a leading ``call()`` does;
- server process: a socket thread polls the DEALER and an eventfd and puts each request into a
  ``SimpleQueue`` read by ``pool_size`` procedure threads, which append the reply to a deque and
  write the eventfd.

Messages are one frame on the DEALER side, as in raw pyzmq and pirate_actors. No protocol, no
pickling, no supervision, no heartbeats.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
import time
from typing import Any

import zmq

from bench.workload import one_at_a_time

_WAKE = b"\x01\x00\x00\x00\x00\x00\x00\x00"


class FloorServer:
    """DEALER side: a socket thread and a pool of procedure threads (in :meth:`serve`)."""

    def __init__(self, endpoint: str, pool_size: int = 4) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.sock.send(b"hello")
        self.pool_size = pool_size

    def serve(self) -> None:
        """Serve forever (the driver kills the process at the end)."""
        calls: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        replies: collections.deque[bytes] = collections.deque()
        wake = os.eventfd(0, os.EFD_NONBLOCK)

        def procedure() -> None:
            while True:
                replies.append(calls.get())
                os.write(wake, _WAKE)

        for _ in range(self.pool_size):
            threading.Thread(target=procedure, daemon=True).start()
        sock = self.sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if wake in ready:
                os.read(wake, 8)
                while replies:
                    sock.send(replies.popleft(), zmq.NOBLOCK)
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[arg-type]
                calls.put(sock.recv(zmq.NOBLOCK))


class FloorClient:
    """ROUTER side: a loop thread owns the socket; the caller drives the windows."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        if not self.sock.poll(30_000):
            raise RuntimeError("floor server never said hello")
        self.peer = self.sock.recv_multipart()[0]
        self.requests: collections.deque[bytes] = collections.deque()
        self.replies: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self.wake = os.eventfd(0, os.EFD_NONBLOCK)
        self._lead_wanted = False
        self._parked = threading.Event()  # the loop thread is off the socket
        self._resume = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        sock, peer, requests, replies, wake = self.sock, self.peer, self.requests, self.replies, self.wake
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(wake, zmq.POLLIN)
        while True:
            ready = dict(poller.poll())
            if wake in ready:
                os.read(wake, 8)
                while requests:
                    sock.send_multipart([peer, requests.popleft()], zmq.NOBLOCK)
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # type: ignore[arg-type]
                replies.put(sock.recv_multipart(zmq.NOBLOCK)[1])
            if self._lead_wanted:  # a caller leads: leave it the socket until it is done
                self._parked.set()
                self._resume.wait()
                self._resume.clear()

    def _submit(self, message: bytes) -> None:
        self.requests.append(message)
        os.write(self.wake, _WAKE)

    def sync(self, seconds: float) -> dict[str, Any]:
        """One call in flight for ``seconds``, the caller driving the socket (leader/follower)."""
        try:
            self._lead_wanted = True
            os.write(self.wake, _WAKE)
            self._parked.wait()
            send, recv, msg = self.sock.send_multipart, self.sock.recv_multipart, [self.peer, b"E1234567"]
            poll = zmq.Poller()
            poll.register(self.sock, zmq.POLLIN)

            def call() -> None:
                send(msg, zmq.NOBLOCK)
                poll.poll()
                recv(zmq.NOBLOCK)

            return one_at_a_time(call, seconds)
        finally:
            self._lead_wanted = False
            self._parked.clear()
            self._resume.set()

    def inflight(self, seconds: float, depth: int) -> dict[str, Any]:
        """Keep ``depth`` calls in flight; count the replies that arrive within ``seconds``."""
        submit, get = self._submit, self.replies.get
        clock = time.perf_counter
        t0 = clock()
        deadline = t0 + seconds
        for _ in range(depth):
            submit(b"E1234567")
        n = 0
        while True:
            get()
            if clock() >= deadline:
                break
            n += 1
            submit(b"E1234567")
        for _ in range(depth - 1):  # drain, uncounted
            get()
        return {"count": n, "total": n + depth, "elapsed": seconds}

    def close(self) -> None:
        """Leave the sockets to the process's exit (the loop thread still owns one)."""
