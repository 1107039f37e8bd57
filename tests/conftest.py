"""Shared fixtures: a client on a free loopback port and workers that connect to it."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterator

import pytest

from pirate_actors import Client, ProcedureActor, Worker

HEARTBEAT = 0.2


class Gate:
    """Lets a test hold procedures inside a call until it opens the gate."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = threading.Semaphore(0)

    def wait_entered(self, count: int = 1, timeout: float = 10.0) -> None:
        for _ in range(count):
            assert self.entered.acquire(timeout=timeout), "procedure never started"


GATES: dict[str, Gate] = {}


class Testing(ProcedureActor):
    __test__ = False

    """Procedures for tests (the worker runs in the test process, so gates are shared)."""

    def ping(self) -> str:
        return "pong"

    def echo(self, *args: Any, **kwargs: Any) -> Any:
        return args, kwargs

    def whoami(self) -> str:
        return self.actor_urn

    def hold(self, gate: str, result: Any = None) -> Any:
        GATES[gate].entered.release()
        if not GATES[gate].opened.wait(30):
            raise RuntimeError("gate never opened")
        return result

    def until_cancelled(self, gate: str) -> str:
        GATES[gate].entered.release()
        while not self.cancelled:
            time.sleep(0.005)
        GATES[gate].opened.set()  # tells the test the procedure saw it
        return "gave up"

    def progress(self, count: int) -> int:
        for i in range(count):
            self.report(i)
        return count

    def blobs(self, count: int, size: int) -> int:
        for _ in range(count):
            self.report(b"b" * size)
        return count

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def exit(self) -> None:
        raise SystemExit(7)

    def stop_myself(self) -> str:
        self.stop()
        return "stopping"

    def sleep(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def big(self, size: int) -> bytes:
        return b"x" * size

    def big_report(self, size: int) -> str:
        self.report(b"x" * size)
        return "reported"

    def big_error(self, size: int) -> None:
        raise ValueError("y" * size)


@pytest.fixture
def gate() -> Iterator[Callable[[], tuple[str, Gate]]]:
    """Make named gates; every gate is opened at teardown so no procedure stays stuck."""
    made: list[str] = []

    def make() -> tuple[str, Gate]:
        name = f"gate-{len(GATES)}-{time.monotonic_ns()}"
        GATES[name] = Gate()
        made.append(name)
        return name, GATES[name]

    yield make
    for name in made:
        GATES.pop(name).opened.set()


@pytest.fixture
def client() -> Iterator[Client]:
    with Client("tcp://127.0.0.1:*", heartbeat=HEARTBEAT, timeout=3.0) as c:
        yield c


@pytest.fixture
def start_worker(client: Client) -> Iterator[Callable[..., Worker]]:
    """Start workers connected to ``client``; all are stopped at teardown."""
    workers: list[Worker] = []

    def start(actor_class: type[ProcedureActor] = Testing, **kwargs: Any) -> Worker:
        kwargs.setdefault("heartbeat", HEARTBEAT)
        worker = Worker(actor_class, client.endpoint, **kwargs).start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop(timeout=1.0)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition that has no event of its own (e.g. another process's view)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def wait_started(future: Any, timeout: float = 10.0) -> None:
    """Block until the call's "started" partial has reached the client."""
    started = threading.Event()
    future.add_partial_callback(lambda fut, msg: started.set() if msg == "started" else None)
    assert started.wait(timeout), "no 'started' partial"
