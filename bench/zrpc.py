"""The peer: zerorpc (gevent + msgpack over pyzmq), server and client each in their own process.

Named ``zrpc`` so that it never shadows the ``zerorpc`` package. For 100 calls in flight the client
runs 100 greenlets over one ``zerorpc.Client``, each calling in a loop. The call is
``compare("uno", "dos")`` (``bench.workload``), as for every RPC contender.
"""

from __future__ import annotations

import time
from typing import Any

from bench.workload import ARGS, compare, one_at_a_time


class ZerorpcProcedures:
    """What the zerorpc server exposes."""

    def compare(self, str1: str, str2: str) -> tuple[bool, int]:
        """The benchmark's call."""
        return compare(str1, str2)


class ZerorpcServer:
    """Binds and serves forever in :meth:`serve`."""

    def __init__(self, endpoint: str) -> None:
        import zerorpc

        self.server = zerorpc.Server(ZerorpcProcedures())
        self.server.bind(endpoint)

    def serve(self) -> None:
        """Run the gevent loop forever (the driver kills the process at the end)."""
        self.server.run()


class ZerorpcClient:
    """Connects and drives the windows."""

    def __init__(self, endpoint: str) -> None:
        import zerorpc

        self.client = zerorpc.Client(timeout=30)
        self.client.connect(endpoint)
        if tuple(self.client.compare(*ARGS)) != compare(*ARGS):
            raise RuntimeError("zerorpc compare gave the wrong answer")

    def sync(self, seconds: float) -> dict[str, Any]:
        """One call in flight for ``seconds``."""
        call = self.client.compare
        a, b = ARGS
        return one_at_a_time(lambda: call(a, b), seconds)

    def inflight(self, seconds: float, depth: int) -> dict[str, Any]:
        """``depth`` greenlets each calling in a loop; count replies within ``seconds``."""
        import gevent

        call = self.client.compare
        a, b = ARGS
        clock = time.perf_counter
        count = [0]
        t0 = clock()
        deadline = t0 + seconds

        def loop() -> None:
            while True:
                call(a, b)
                if clock() >= deadline:
                    return
                count[0] += 1

        gevent.joinall([gevent.spawn(loop) for _ in range(depth)], raise_error=True)
        return {"count": count[0], "total": count[0] + depth, "elapsed": seconds}

    def close(self) -> None:
        """Close the client."""
        self.client.close()
