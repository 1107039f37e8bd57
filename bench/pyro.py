"""The peer Pyro5: its thread server, the ``marshal`` serializer and TCP_NODELAY.

Written the way Pyro5's documentation shows it: a class marked ``@expose`` registered with a
``Daemon`` whose ``requestLoop()`` serves it, and a ``Proxy`` per caller. Pyro5's default
serializer is serpent; the benchmark sets ``config.SERIALIZER = "marshal"`` (the fastest of the
ones it ships) and ``config.SOCK_NODELAY = True`` in both processes.

Pyro5 has no asynchronous proxies (Pyro4's were removed) and a proxy belongs to the thread that
uses it. Its documentation's way to have many calls in flight is many threads, each with a proxy
of its own, so for 100 in flight the client runs 100 threads with one proxy (one connection)
each, each calling in a loop. The thread server gives every connection a thread of its pool,
whose size (``THREADPOOL_SIZE``, 80 by default) caps the connections it serves at once; the
server sets it to 128 so that 100 proxies plus the one-at-a-time proxy are all served.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from bench.workload import ARGS, PAYLOAD, compare, echo, host_port, one_at_a_time

OBJECT_ID = "bench"
THREADPOOL_SIZE = 128


def configure() -> None:
    """The settings both processes use."""
    import Pyro5.api

    Pyro5.api.config.SERIALIZER = "marshal"
    Pyro5.api.config.SOCK_NODELAY = True
    Pyro5.api.config.SERVERTYPE = "thread"          # the default, said out loud
    Pyro5.api.config.THREADPOOL_SIZE = THREADPOOL_SIZE


def _procedures() -> type:
    import Pyro5.api

    @Pyro5.api.expose
    class PyroProcedures:
        """What the Pyro5 daemon serves."""

        def compare(self, str1: str, str2: str) -> tuple[bool, int]:
            return compare(str1, str2)

        def echo(self, data: bytes) -> bytes:
            return echo(data)

    return PyroProcedures


class PyroServer:
    """A ``Daemon`` listening on the endpoint's port; serves forever in :meth:`serve`."""

    def __init__(self, endpoint: str) -> None:
        import Pyro5.api

        configure()
        host, port = host_port(endpoint)
        self.daemon = Pyro5.api.Daemon(host=host, port=port)
        self.daemon.register(_procedures()(), OBJECT_ID)

    def serve(self) -> None:
        """Run the request loop forever (the driver kills the process at the end)."""
        self.daemon.requestLoop()


def _connect(uri: str, wait: float = 30.0) -> Any:
    """A bound ``Proxy``, retried while the daemon is not listening yet."""
    import Pyro5.api
    import Pyro5.errors

    deadline = time.monotonic() + wait
    while True:
        proxy = Pyro5.api.Proxy(uri)
        try:
            proxy._pyroBind()
            return proxy
        except Pyro5.errors.CommunicationError:
            proxy._pyroRelease()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class CallerThreads:
    """``n`` threads, each with a connection of its own made in it, calling in a loop per window.

    A thread counts the calls that returned before the window's deadline; the one that returns
    after it ends the thread's window (uncounted), like the other contenders' in-flight windows.
    """

    def __init__(self, n: int, connect: Callable[[], Callable[[], Any]]) -> None:
        self._start = threading.Barrier(n + 1)
        self._end = threading.Barrier(n + 1)
        self._deadline = 0.0
        self._stop = False
        self.counts = [0] * n
        self.errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._run, args=(i, connect), daemon=True,
                                          name=f"caller-{i}") for i in range(n)]
        for t in self._threads:
            t.start()
        try:
            self._start.wait(timeout=60)          # every thread has connected
        except threading.BrokenBarrierError:
            pass
        if self.errors or self._start.broken:
            raise RuntimeError(f"a caller thread failed to connect: {self.errors[:1]!r}")

    def _run(self, i: int, connect: Callable[[], Callable[[], Any]]) -> None:
        try:
            call = connect()
        except BaseException as exc:
            self.errors.append(exc)
            self._start.abort()
            return
        clock = time.perf_counter
        try:
            self._start.wait()
        except threading.BrokenBarrierError:
            return                                # another thread could not connect
        while True:
            self._start.wait()
            if self._stop:
                return
            deadline = self._deadline
            n = 0
            try:
                while True:
                    call()
                    if clock() >= deadline:
                        break
                    n += 1
            except BaseException as exc:
                self.errors.append(exc)
            self.counts[i] = n
            self._end.wait()

    def window(self, seconds: float) -> int:
        """Let every thread call for ``seconds``; the calls answered in time."""
        self._deadline = time.perf_counter() + seconds
        self._start.wait(timeout=60)
        self._end.wait(timeout=seconds + 60)
        if self.errors:
            raise RuntimeError(f"{len(self.errors)} caller threads failed: {self.errors[0]!r}")
        return sum(self.counts)

    def close(self) -> None:
        """End the threads."""
        self._stop = True
        try:
            self._start.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass


class PyroClient:
    """A ``Proxy`` for one call at a time, and :class:`CallerThreads` for calls in flight."""

    def __init__(self, endpoint: str) -> None:
        configure()
        host, port = host_port(endpoint)
        self.uri = f"PYRO:{OBJECT_ID}@{host}:{port}"
        self.proxy = _connect(self.uri)
        if tuple(self.proxy.compare(*ARGS)) != compare(*ARGS):
            raise RuntimeError("Pyro5 compare gave the wrong answer")
        self.callers: CallerThreads | None = None

    def sync(self, seconds: float) -> dict[str, Any]:
        """One call in flight for ``seconds``."""
        call = self.proxy.compare
        a, b = ARGS
        return one_at_a_time(lambda: call(a, b), seconds)

    def inflight(self, seconds: float, depth: int) -> dict[str, Any]:
        """``depth`` threads, one proxy each, each calling in a loop; count replies within ``seconds``."""
        if self.callers is None or len(self.callers.counts) != depth:
            if self.callers is not None:
                self.callers.close()
            uri = self.uri

            def connect() -> Callable[[], Any]:
                proxy = _connect(uri)
                call = proxy.compare
                a, b = ARGS
                return lambda: call(a, b)

            self.callers = CallerThreads(depth, connect)   # connected outside the window
        n = self.callers.window(seconds)
        return {"count": n, "total": n + depth, "elapsed": seconds}

    def big(self, seconds: float) -> dict[str, Any]:
        """``echo`` of 1 MiB, one at a time, for ``seconds``."""
        call = self.proxy.echo
        payload = PAYLOAD
        clock = time.perf_counter
        n = 0
        t0 = clock()
        deadline = t0 + seconds
        now = t0
        while now < deadline:
            if len(call(payload)) != len(payload):
                raise RuntimeError("Pyro5 echo lost bytes")
            n += 1
            now = clock()
        return {"count": n, "elapsed": now - t0}

    def close(self) -> None:
        """Release the proxies."""
        if self.callers is not None:
            self.callers.close()
        self.proxy._pyroRelease()
