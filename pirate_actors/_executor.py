"""Remote functions: :class:`FunctionActor` runs functions sent by value, and
:class:`RemoteExecutor` is a ``concurrent.futures.Executor`` over the workers that serve it,
so code written for ``ProcessPoolExecutor`` runs across machines unchanged.

A client that may send pickles can already run code on its workers (that is what a key
authorizes); this only makes it explicit. Functions travel with cloudpickle: those defined in
``__main__`` or a notebook go by value; those of an importable module by reference, so the
worker needs that module too (or call ``cloudpickle.register_pickle_by_value(module)``).
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any, Callable

from ._client import Client
from ._future import CallFuture
from ._procedures import ProcedureActor

__all__ = ["FunctionActor", "RemoteExecutor"]

RUN = "run"
"""The procedure :class:`FunctionActor` serves and :class:`RemoteExecutor` calls."""


class FunctionActor(ProcedureActor):
    """A ready procedure actor with one procedure, ``run(fn, /, *args, **kwargs)``: it calls
    ``fn`` with the arguments and returns what it returns (``pirate-worker
    pirate_actors:FunctionActor``)."""

    def run(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(*args, **kwargs)`` here, on the worker."""
        return fn(*args, **kwargs)


class RemoteExecutor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` whose calls run on workers serving
    :class:`FunctionActor`: ``submit(fn, *args, **kwargs)`` returns a :class:`CallFuture`,
    ``map`` and the ``with`` block work as for any executor.

    ``client`` is a :class:`Client` (left open by ``shutdown``) or an endpoint to bind, in
    which case the executor makes its own client with ``client_options``, waits up to
    ``wait`` seconds for a first worker, and closes it on ``shutdown``."""

    def __init__(self, client: Client | str, *, wait: float = 10.0, **client_options: Any) -> None:
        if isinstance(client, str):
            self.client = Client(client, **client_options).start()
            self._owns_client = True
            try:
                self.client.wait_for_worker(timeout=wait)
            except BaseException:
                self.client.close()
                raise
        else:
            if client_options:
                raise TypeError("client options are for an endpoint, not an existing Client")
            self.client = client
            self._owns_client = False
        self._lock = threading.Lock()
        self._pending: set[CallFuture] = set()
        self._shutdown = False

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> CallFuture:
        """Run ``fn(*args, **kwargs)`` on a worker; the future ends with its result."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = self.client.submit(RUN, fn, *args, **kwargs)
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Any) -> None:
        with self._lock:
            self._pending.discard(future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``Executor.shutdown``: no new calls; with ``cancel_futures`` the calls that have not
        started are cancelled (running ones finish); with ``wait`` return when all are done. A
        client the executor made is closed once they are (at once with ``wait``, else from a
        thread of its own); a client it was given stays open."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                if not future.partials:  # no "started" yet: it waits, at the client or a worker
                    future.cancel()
        if wait:
            concurrent.futures.wait(pending)
        if not self._owns_client:
            return
        if wait or all(future.done() for future in pending):
            self.client.close()
        else:
            threading.Thread(target=self._close_when_done, args=(pending,),
                             name="pirate-executor-shutdown", daemon=True).start()

    def _close_when_done(self, pending: list[CallFuture]) -> None:
        concurrent.futures.wait(pending)
        self.client.close()

    def __repr__(self) -> str:
        state = "shut down" if self._shutdown else f"{len(self._pending)} pending"
        return f"<RemoteExecutor {self.client.endpoint} {state}>"

