"""SPEC §14: ``async def`` procedures. Each procedure actor runs an asyncio loop of its own and
up to ``max_concurrency`` calls at once; capacity is ``pool_size × max_concurrency + prefetch``;
``report()`` and ``emit()`` work inside coroutines; cancelling a running async call cancels its
task at once and frees its slot. Real sockets, a worker in this process."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from pirate_actors import Client, ProcedureActor, RemoteError, Worker

from ..conftest import wait_until

pytestmark = pytest.mark.timeout(60)

SEEN: dict[str, threading.Event] = {}
"""Events coroutines set for the test (the worker runs in this process)."""


class Fetcher(ProcedureActor):
    max_concurrency = 50

    async def nap(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    async def chatty(self, count: int) -> int:
        for i in range(count):
            self.report(i)
            await asyncio.sleep(0)
        self.emit("chatty", count)
        return count

    async def wait_for_cancel(self, name: str) -> str:
        SEEN[name + " entered"].set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            SEEN[name + " cancelled"].set()
            raise
        return "never"

    async def crash(self) -> None:
        await asyncio.sleep(0)
        raise SystemExit(3)

    async def fail(self, message: str) -> None:
        raise ValueError(message)

    def blocking(self) -> str:  # a plain procedure on an async actor runs in its thread
        return threading.current_thread().name


class OneAtATime(ProcedureActor):
    """Async, with the default max_concurrency of 1."""

    async def wait_for_cancel(self, name: str) -> str:
        return await Fetcher.wait_for_cancel(self, name)  # type: ignore[arg-type]

    def whoami(self) -> str:
        return self.actor_urn


@pytest.fixture
def fetcher(client: Client, start_worker: Callable[..., Worker]) -> Iterator[Worker]:
    worker = start_worker(Fetcher, pool_size=1)
    client.wait_for_worker(timeout=10)
    yield worker


def _events(name: str) -> None:
    SEEN[name + " entered"] = threading.Event()
    SEEN[name + " cancelled"] = threading.Event()


def test_capacity_is_pool_size_times_max_concurrency_plus_prefetch() -> None:
    assert Worker(Fetcher, "tcp://127.0.0.1:1", pool_size=2).capacity == 2 * 50 * 2
    assert Worker(Fetcher, "tcp://127.0.0.1:1", pool_size=2, prefetch=10).capacity == 110
    assert Worker(ProcedureActor, "tcp://127.0.0.1:1", pool_size=2).capacity == 4  # no async: 1 each

    class Wrong(ProcedureActor):
        max_concurrency = 0

        async def f(self) -> None: ...

    with pytest.raises(ValueError, match="max_concurrency"):
        Worker(Wrong, "tcp://127.0.0.1:1")


def test_two_hundred_sleeps_of_a_fifth_of_a_second_share_one_actor(client: Client, fetcher: Worker) -> None:
    started = time.monotonic()
    results = list(client.map("nap", [0.2] * 200, timeout=30))
    elapsed = time.monotonic() - started
    assert results == [0.2] * 200
    assert elapsed < 200 * 0.2 / 5, f"{elapsed:.1f} s: the calls did not overlap"  # ideal: 0.8 s
    assert fetcher.stats()["live_actors"] == 1


def test_report_and_emit_work_inside_a_coroutine(client: Client, fetcher: Worker) -> None:
    with client.events("chatty") as events:
        future = client.submit("chatty", 5)
        assert future.result(timeout=10) == 5
        assert future.partials == ["started", 0, 1, 2, 3, 4]
        event = events.get(timeout=10)
    assert (event.topic, event.data) == ("chatty", 5)


def test_cancelling_a_running_async_call_cancels_its_task_and_frees_its_slot(
    client: Client, fetcher: Worker,
) -> None:
    _events("one")
    future = client.submit("wait_for_cancel", "one")
    assert SEEN["one entered"].wait(10)
    assert future.cancel()
    assert SEEN["one cancelled"].wait(10), "the coroutine never saw CancelledError"
    wait_until(lambda: fetcher.stats()["in_flight"] == 0, 10)
    stats = fetcher.stats()
    assert (stats["live_actors"], stats["replacements"]) == (1, 0), "no actor was replaced"
    # The slot serves again: all 50 run at once (with one slot lost, one would never enter).
    names = [f"again {n}" for n in range(50)]
    for name in names:
        _events(name)
    futures = [client.submit("wait_for_cancel", name) for name in names]
    for name in names:
        assert SEEN[name + " entered"].wait(10), f"{name} never ran: a slot was not freed"
    for future in futures:
        future.cancel()
    for name in names:
        assert SEEN[name + " cancelled"].wait(10)
    wait_until(lambda: fetcher.stats()["in_flight"] == 0, 10)


def test_a_timed_out_async_call_is_cancelled_in_the_coroutine(client: Client, fetcher: Worker) -> None:
    _events("late")
    with pytest.raises(Exception, match="no reply"):
        client.call("wait_for_cancel", "late", timeout=0.5)
    assert SEEN["late cancelled"].wait(10)
    wait_until(lambda: fetcher.stats()["in_flight"] == 0, 10)


def test_exceptions_travel_and_a_base_exception_replaces_the_actor(client: Client, fetcher: Worker) -> None:
    with pytest.raises(ValueError, match="nope"):
        client.call("fail", "nope", timeout=10)
    with pytest.raises(RemoteError, match="SystemExit"):
        client.call("crash", timeout=10)
    wait_until(lambda: fetcher.stats()["replacements"] == 1, 10)
    assert client.call("nap", 0.01, timeout=10) == 0.01


def test_plain_procedures_of_an_async_actor_run_in_its_thread(client: Client, fetcher: Worker) -> None:
    name = client.call("blocking", timeout=10)
    assert "asyncio" not in name


def test_async_calls_from_asyncio_on_the_client_too(client: Client, fetcher: Worker) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*(client.acall("nap", 0.1) for _ in range(40)))

    started = time.monotonic()
    assert asyncio.run(main()) == [0.1] * 40
    assert time.monotonic() - started < 40 * 0.1 / 4


def test_with_max_concurrency_1_a_cancelled_async_call_still_frees_its_slot_without_a_new_actor(
    client: Client, start_worker: Callable[..., Worker],
) -> None:
    worker = start_worker(OneAtATime, pool_size=1)
    client.wait_for_worker(timeout=10)
    before = client.call("whoami", timeout=10)
    _events("solo")
    future = client.submit("wait_for_cancel", "solo")
    assert SEEN["solo entered"].wait(10)
    future.cancel()
    assert SEEN["solo cancelled"].wait(10)
    wait_until(lambda: worker.stats()["in_flight"] == 0, 10)
    assert client.call("whoami", timeout=10) == before, "the actor was replaced"
    assert worker.stats()["replacements"] == 0


def test_when_an_async_actor_dies_its_other_running_calls_fail_as_its_death_not_as_cancelled(
    client: Client, fetcher: Worker,
) -> None:
    _events("bystander")
    bystander = client.submit("wait_for_cancel", "bystander")
    assert SEEN["bystander entered"].wait(10)
    with pytest.raises(RemoteError, match="SystemExit"):
        client.call("crash", timeout=10)
    with pytest.raises(RemoteError) as caught:
        bystander.result(timeout=10)
    assert caught.value.type_name == "ActorDeadError"
