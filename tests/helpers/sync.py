"""Waiting on events rather than sleeping: partial messages, completions, conditions."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

__all__ = ["completion_times", "started_event", "wait_until"]

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str = "condition") -> T:
    """Poll ``predicate`` (every 10 ms) until it is truthy; for state that has no event of its own,
    such as another thread's or process's view. Returns the truthy value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g} s")
        time.sleep(0.01)


def started_event(future: Any) -> threading.Event:
    """An event set when the call's ``"started"`` partial reaches the client."""
    event = threading.Event()
    future.add_partial_callback(lambda fut, message: event.set() if message == "started" else None)
    return event


def completion_times(futures: Iterable[concurrent.futures.Future[Any]]) -> dict[int, float]:
    """``id(future) -> time.monotonic()`` of its completion, filled in as each one completes."""
    times: dict[int, float] = {}

    def record(future: concurrent.futures.Future[Any]) -> None:
        times.setdefault(id(future), time.monotonic())

    for future in futures:
        future.add_done_callback(record)
    return times
