"""The physical limit: raw pyzmq between two processes, in the same topology as pirate_actors.

The client process owns a ROUTER that binds (like ``pirate_actors.Client``); the server process owns a
DEALER that connects (like ``pirate_actors.Worker``). Every message is one small frame on the DEALER
side (the ROUTER adds the peer's identity frame). Nothing is pickled.

- echo: the client sends ``E`` + 7 bytes, the server sends the same frame back;
- stream: the client sends ``S<n>``, the server sends ``n`` frames of 8 bytes and then ``Z``;
- 1 MiB: the client sends ``bench.workload.PAYLOAD`` as one frame, the server echoes it.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from bench.workload import PAYLOAD, one_at_a_time

_ECHO = b"E1234567"
_PART = b"P1234567"
_END = b"Z"


class RawServer:
    """DEALER side: connects, says hello, echoes frames and serves stream requests (in :meth:`serve`)."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.sock.send(b"hello")

    def serve(self) -> None:
        """Serve forever (the driver kills the process at the end)."""
        sock = self.sock
        recv, send = sock.recv, sock.send
        while True:
            frame = recv()
            if frame[:1] == b"S":
                for _ in range(int(frame[1:])):
                    send(_PART)
                send(_END)
            else:
                send(frame)


class RawClient:
    """ROUTER side: binds and drives the windows."""

    def __init__(self, endpoint: str) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.bind(endpoint)
        if not self.sock.poll(30_000):
            raise RuntimeError("raw server never said hello")
        self.peer = self.sock.recv_multipart()[0]

    def sync(self, seconds: float) -> dict[str, Any]:
        """One call in flight for ``seconds``; returns calls completed and the time they took."""
        send, recv = self.sock.send_multipart, self.sock.recv_multipart
        msg = [self.peer, _ECHO]

        def call() -> None:
            send(msg)
            recv()

        return one_at_a_time(call, seconds)

    def inflight(self, seconds: float, depth: int) -> dict[str, Any]:
        """Keep ``depth`` calls in flight; count the replies that arrive within ``seconds``."""
        send, recv = self.sock.send_multipart, self.sock.recv_multipart
        msg = [self.peer, _ECHO]
        clock = time.perf_counter
        t0 = clock()
        deadline = t0 + seconds
        for _ in range(depth):
            send(msg)
        n = 0
        while True:
            recv()
            if clock() >= deadline:
                break
            n += 1
            send(msg)
        for _ in range(depth - 1):  # drain, uncounted
            recv()
        return {"count": n, "total": n + depth, "elapsed": seconds}

    def big(self, seconds: float) -> dict[str, Any]:
        """1 MiB there and back, one at a time, for ``seconds``."""
        send, recv = self.sock.send_multipart, self.sock.recv_multipart
        msg = [self.peer, PAYLOAD]
        clock = time.perf_counter
        n = 0
        t0 = clock()
        deadline = t0 + seconds
        now = t0
        while now < deadline:
            send(msg)
            if len(recv()[1]) != len(PAYLOAD):
                raise RuntimeError("raw echo lost bytes")
            n += 1
            now = clock()
        return {"count": n, "elapsed": now - t0}

    def stream(self, n: int) -> dict[str, Any]:
        """Ask for ``n`` one-way messages; time from the request to the end marker."""
        recv = self.sock.recv_multipart
        t0 = time.perf_counter()
        self.sock.send_multipart([self.peer, b"S%d" % n])
        got = 0
        while recv()[1] != _END:
            got += 1
        elapsed = time.perf_counter() - t0
        if got != n:
            raise RuntimeError(f"raw stream: {got} of {n} messages arrived")
        return {"count": got, "elapsed": elapsed}

    def close(self) -> None:
        """Close the socket."""
        self.sock.close(0)
        self.ctx.term()
