"""The peer RPyC: a ``ThreadedServer`` serving a ``Service``, and ``rpyc.connect`` on the client.

Written the way RPyC's documentation shows it: the service's ``exposed_`` methods are called as
``conn.root.<name>(...)``, with every setting at its default (RPyC's defaults do not set
TCP_NODELAY). The threaded server gives each connection a thread of its own. For 100 calls in
flight the client wraps the method with ``rpyc.async_`` and keeps 100 ``AsyncResult`` outstanding
on its one connection, from one thread: waiting for the oldest serves the connection, which takes
in every reply that has arrived.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from bench.workload import ARGS, PAYLOAD, compare, echo, host_port, one_at_a_time


def _service() -> type:
    import rpyc

    class BenchService(rpyc.Service):
        """What the RPyC server exposes."""

        def exposed_compare(self, str1: str, str2: str) -> tuple[bool, int]:
            return compare(str1, str2)

        def exposed_echo(self, data: bytes) -> bytes:
            return echo(data)

    return BenchService


class RpycServer:
    """A ``ThreadedServer`` on the endpoint's port; serves forever in :meth:`serve`."""

    def __init__(self, endpoint: str) -> None:
        from rpyc.utils.server import ThreadedServer

        host, port = host_port(endpoint)
        self.server = ThreadedServer(_service(), hostname=host, port=port)

    def serve(self) -> None:
        """Accept and serve forever (the driver kills the process at the end)."""
        self.server.start()


class RpycClient:
    """One connection: plain calls one at a time, ``rpyc.async_`` calls in flight."""

    def __init__(self, endpoint: str, wait: float = 30.0) -> None:
        import rpyc

        host, port = host_port(endpoint)
        deadline = time.monotonic() + wait
        while True:
            try:
                self.conn = rpyc.connect(host, port)
                break
            except OSError:                       # the server is not listening yet
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        root = self.conn.root
        self.compare = root.compare               # looking a name up is a round trip: once
        self.echo = root.echo
        self.acompare = rpyc.async_(root.compare)
        if tuple(self.compare(*ARGS)) != compare(*ARGS):
            raise RuntimeError("RPyC compare gave the wrong answer")

    def sync(self, seconds: float) -> dict[str, Any]:
        """One call in flight for ``seconds``."""
        call = self.compare
        a, b = ARGS
        return one_at_a_time(lambda: call(a, b), seconds)

    def inflight(self, seconds: float, depth: int) -> dict[str, Any]:
        """``depth`` async requests outstanding; each answer sends the next; count within ``seconds``."""
        acall = self.acompare
        a, b = ARGS
        clock = time.perf_counter
        t0 = clock()
        deadline = t0 + seconds
        pending = collections.deque(acall(a, b) for _ in range(depth))
        n = 0
        while True:
            pending.popleft().value               # waits (serving the connection); raises a remote error
            if clock() >= deadline:
                break
            n += 1
            pending.append(acall(a, b))
        for res in pending:                       # drain, uncounted
            res.value
        return {"count": n, "total": n + depth, "elapsed": seconds}

    def big(self, seconds: float) -> dict[str, Any]:
        """``echo`` of 1 MiB, one at a time, for ``seconds``."""
        call = self.echo
        payload = PAYLOAD
        clock = time.perf_counter
        n = 0
        t0 = clock()
        deadline = t0 + seconds
        now = t0
        while now < deadline:
            if len(call(payload)) != len(payload):
                raise RuntimeError("RPyC echo lost bytes")
            n += 1
            now = clock()
        return {"count": n, "elapsed": now - t0}

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()
