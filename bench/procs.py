"""Child processes driven over a pipe: every contender's client and server runs in its own process.

A *handler* is a class instantiated in the child; the driver calls its methods by name with
keyword arguments and gets the return value back. Processes are started with the ``spawn`` method
so that no state (threads, sockets, imported modules) leaks from the driver into them.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import traceback
from typing import Any, Callable

_CTX = multiprocessing.get_context("spawn")


class AgentError(RuntimeError):
    """A handler raised in its child process; the message is the child's traceback."""


def free_endpoint() -> str:
    """Return a TCP endpoint on loopback with a port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def _agent_entry(conn: multiprocessing.connection.Connection, factory: Callable[..., Any],
                 args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Child side: build the handler, announce it, then serve method calls until "close"."""
    try:
        handler = factory(*args, **kwargs)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    info = handler.info() if hasattr(handler, "info") else None
    conn.send(("ok", {"pid": os.getpid(), "info": info}))
    while True:
        try:
            method, kw = conn.recv()
        except (EOFError, OSError):
            method, kw = "close", {}
        try:
            if method == "thread_names":
                result: Any = {t.native_id: t.name for t in threading.enumerate()}
            else:
                result = getattr(handler, method)(**kw) if hasattr(handler, method) else None
            reply: tuple[str, Any] = ("ok", result)
        except BaseException:
            reply = ("error", traceback.format_exc())
        if method == "close":
            try:
                conn.send(reply)
            except OSError:
                pass
            return
        conn.send(reply)


class Agent:
    """A handler object living in its own spawned process."""

    def __init__(self, name: str, factory: Callable[..., Any], *args: Any,
                 start_timeout: float = 30.0, **kwargs: Any) -> None:
        parent, child = _CTX.Pipe()
        self.name = name
        self.proc = _CTX.Process(target=_agent_entry, args=(child, factory, args, kwargs),
                                 name=name)
        # Not daemonic, so that a contender may start processes of its own (ProcessPoolExecutor);
        # a child whose driver died reads EOF on its pipe and closes (see _agent_entry).
        self.proc.start()
        child.close()
        self.conn = parent
        ready = self._recv(start_timeout)
        self.pid: int = ready["pid"]
        self.info: Any = ready["info"]

    def _recv(self, timeout: float | None) -> Any:
        if not self.conn.poll(timeout):
            self.kill()
            raise AgentError(f"{self.name}: no answer within {timeout} s")
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise AgentError(f"{self.name}: process died (exit code {self.proc.exitcode})") from None
        if status == "error":
            raise AgentError(f"{self.name} failed:\n{value}")
        return value

    def call(self, method: str, timeout: float | None = 300.0, **kwargs: Any) -> Any:
        """Run ``handler.method(**kwargs)`` in the child and return its result."""
        self.conn.send((method, kwargs))
        return self._recv(timeout)

    def thread_names(self) -> dict[int, str]:
        """Native thread id → Python thread name, for the threads of the child right now."""
        names: dict[int, str] = self.call("thread_names", timeout=30)
        return names

    def send(self, method: str, **kwargs: Any) -> None:
        """Start ``handler.method(**kwargs)`` in the child without waiting; pair with :meth:`result`."""
        self.conn.send((method, kwargs))

    def result(self, timeout: float | None = 300.0) -> Any:
        """Wait for the result of the last :meth:`send`."""
        return self._recv(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Ask the handler to close, then make sure the process is gone."""
        if self.proc.is_alive():
            try:
                self.conn.send(("close", {}))
                self.conn.poll(timeout)
            except (OSError, EOFError):
                pass
        self.proc.join(timeout)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the process if it still runs."""
        if self.proc.is_alive():
            try:
                os.kill(self.proc.pid, signal.SIGKILL)  # type: ignore[arg-type]
            except ProcessLookupError:
                pass
            self.proc.join(5)
        self.conn.close()
