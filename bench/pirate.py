"""pirate_actors contenders and probes. ``pirate_actors`` is imported only inside child processes.

The worker always runs in its own process; so does the client, so that its CPU time and RSS can be
read on their own and so that the driver's bookkeeping never competes with it for the GIL.
The throughput windows call ``compare("uno", "dos")`` and ``echo(1 MiB)`` (``bench.workload``), as
every RPC contender does; the probes call ``ping()``.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
import threading
import time
from typing import Any

from bench.workload import ARGS, PAYLOAD, one_at_a_time


def availability() -> str | None:
    """Return None when ``from pirate_actors import Client, Worker, ProcedureActor`` works, else why not."""
    try:
        mod = importlib.import_module("pirate_actors")
        for name in ("Client", "Worker", "ProcedureActor"):
            getattr(mod, name)
    except Exception as exc:  # ImportError, AttributeError, or anything the half-built library raises
        return f"{type(exc).__name__}: {exc}"
    return None


def default_liveness() -> tuple[float, int]:
    """The heartbeat interval and liveness that ``Worker`` and ``Client`` use by default."""
    from pirate_actors import Client

    params = inspect.signature(Client).parameters
    hb = params["heartbeat"].default if "heartbeat" in params else 1.0
    lv = params["liveness"].default if "liveness" in params else 3
    return float(hb), int(lv)


BENCH_KEY = b"bench-key-not-a-secret-0123456789"


def security_options(security: dict[str, Any] | None, side: str) -> dict[str, Any]:
    """The keywords that make a Client (``side="client"``) or Worker sign (``{"key": ...}``) or
    use CURVE (``{"curve": folder}``, made by :func:`make_certificates`); {} for neither."""
    if not security:
        return {}
    if "key" in security:
        return {"key": security["key"]}
    folder = security["curve"]
    if side == "client":
        return {"curve_secret": f"{folder}/client.key_secret", "curve_authorized": f"{folder}/authorized"}
    return {"curve_secret": f"{folder}/worker.key_secret", "curve_server": f"{folder}/client.key"}


def make_certificates(folder: str) -> None:
    """CURVE certificates for one client and one worker, as ``pirate-keygen`` writes them."""
    import os
    import shutil

    import zmq.auth

    zmq.auth.create_certificates(folder, "client")
    public, _ = zmq.auth.create_certificates(folder, "worker")
    os.makedirs(f"{folder}/authorized")
    shutil.copy(public, f"{folder}/authorized")


class PirateWorker:
    """A ``Worker`` serving :class:`bench.pirate_procs.BenchProcedures` until closed (or killed)."""

    def __init__(self, endpoint: str, pool_size: int = 4, security: dict[str, Any] | None = None) -> None:
        from pirate_actors import Worker

        from bench.pirate_procs import BenchProcedures

        self.worker = Worker(BenchProcedures, endpoint, pool_size=pool_size,
                             **security_options(security, "worker"))
        self.worker.start()

    def close(self) -> None:
        """Stop the worker."""
        self.worker.stop(timeout=2.0)


class PirateClient:
    """A ``Client`` that binds, waits for a worker and drives the windows."""

    def __init__(self, endpoint: str, wait: float = 30.0, security: dict[str, Any] | None = None) -> None:
        from pirate_actors import Client

        self.client = Client(endpoint, **security_options(security, "client"))
        self.client.start()
        self.client.wait_for_worker(timeout=wait)
        if self.client.call("ping", timeout=10.0) != "pong":
            raise RuntimeError("pirate ping gave the wrong answer")

    def sync(self, seconds: float) -> dict[str, Any]:
        """``client.call("compare", "uno", "dos")`` one at a time for ``seconds``."""
        call = self.client.call
        a, b = ARGS
        return one_at_a_time(lambda: call("compare", a, b), seconds)

    def _pump(self, depth: int, until: float | None, total: int | None,
              procedure: str = "ping", args: tuple[Any, ...] = ()) -> tuple[int, int, int]:
        """Keep ``depth`` futures in flight with ``submit()`` until a deadline or a total count.

        The submitting thread waits on a semaphore that each future's done-callback releases — what a
        user keeping N calls in flight would write. Returns (calls completed in time, errors, calls made).
        """
        submit = self.client.submit
        clock = time.perf_counter
        slots = threading.Semaphore(depth)
        in_time = itertools.count()
        errors = itertools.count()
        deadline = until if until is not None else float("inf")

        def done(fut: Any) -> None:
            if fut.cancelled() or fut.exception() is not None:
                next(errors)
            elif clock() < deadline:
                next(in_time)
            slots.release()

        sent = 0
        while (clock() < deadline) if total is None else (sent < total):
            slots.acquire()
            submit(procedure, *args).add_done_callback(done)
            sent += 1
        for _ in range(depth):  # drain
            if not slots.acquire(timeout=60):
                raise RuntimeError("pirate: calls still in flight after 60 s")
        return next(in_time), next(errors), sent

    def inflight(self, seconds: float, depth: int) -> dict[str, Any]:
        """``submit("compare", ...)`` with ``depth`` calls in flight; count replies within ``seconds``."""
        t0 = time.perf_counter()
        n, errors, sent = self._pump(depth, t0 + seconds, None, "compare", ARGS)
        if errors:
            raise RuntimeError(f"pirate in flight: {errors} calls failed")
        return {"count": n, "total": sent, "elapsed": seconds}

    def run_calls(self, n: int, depth: int) -> dict[str, Any]:
        """Make ``n`` calls of ``ping`` with ``depth`` in flight (for the RSS probe)."""
        t0 = time.perf_counter()
        done, errors, _ = self._pump(depth, None, n)
        return {"count": done, "errors": errors, "elapsed": time.perf_counter() - t0}

    def big(self, seconds: float) -> dict[str, Any]:
        """``client.call("echo", 1 MiB)`` one at a time for ``seconds``."""
        call = self.client.call
        payload = PAYLOAD
        clock = time.perf_counter
        n = 0
        t0 = clock()
        deadline = t0 + seconds
        now = t0
        while now < deadline:
            if len(call("echo", payload)) != len(payload):
                raise RuntimeError("pirate echo lost bytes")
            n += 1
            now = clock()
        return {"count": n, "elapsed": now - t0}

    def stream(self, n: int) -> dict[str, Any]:
        """One call whose procedure reports ``n`` partials; time from submit to the final reply."""
        t0 = time.perf_counter()
        fut = self.client.submit("stream", n)
        result = fut.result(timeout=600)
        elapsed = time.perf_counter() - t0
        got = len(fut.partials) - (1 if fut.partials[:1] == ["started"] else 0)
        if result != n or got != n:
            raise RuntimeError(f"pirate stream: result {result!r}, {got} of {n} partials")
        return {"count": n, "elapsed": elapsed}

    def close(self) -> None:
        """Close the client."""
        self.client.close()


class BindProbe:
    """A client process that, when told, binds and times its first answered call."""

    def __init__(self) -> None:
        from pirate_actors import Client

        self._client_class = Client
        self.client: Any = None

    def first_call(self, endpoint: str) -> dict[str, Any]:
        """Time from ``Client(endpoint).start()`` to the answer of the first ``call``."""
        t0 = time.perf_counter()
        self.client = self._client_class(endpoint)
        self.client.start()
        t_bound = time.perf_counter()
        result = self.client.call("ping", timeout=10.0)
        t1 = time.perf_counter()
        return {"seconds": t1 - t0, "bind_seconds": t_bound - t0, "result": result}

    def close(self) -> None:
        """Close the client, if any."""
        if self.client is not None:
            self.client.close()


class DeathProbe:
    """A client process holding one long call on a worker the driver will SIGKILL."""

    def __init__(self, endpoint: str) -> None:
        from pirate_actors import Client

        self.client = Client(endpoint)
        self.client.start()
        self.future: Any = None
        self.t_done: float | None = None
        self.done = threading.Event()

    def start_long_call(self, wait: float = 30.0) -> dict[str, Any]:
        """Wait for a worker, submit a 60 s call and return once it has started on the worker."""
        self.client.wait_for_worker(timeout=wait)
        self.t_done = None
        self.done.clear()
        fut = self.client.submit("sleep", 60.0)
        deadline = time.monotonic() + 10.0
        while not fut.partials and time.monotonic() < deadline:
            time.sleep(0.002)
        if not fut.partials:
            raise RuntimeError("the long call never started")

        def on_done(f: Any) -> None:
            self.t_done = time.monotonic()
            self.done.set()

        fut.add_done_callback(on_done)
        self.future = fut
        return {"worker": fut.worker}

    def wait_lost(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the call to end; return when (``time.monotonic``, system-wide) and how."""
        if not self.done.wait(timeout):
            return {"t_done": None, "outcome": "still running"}
        exc = self.future.exception()
        return {"t_done": self.t_done, "outcome": type(exc).__name__ if exc else "result"}

    def close(self) -> None:
        """Close the client."""
        self.client.close()
