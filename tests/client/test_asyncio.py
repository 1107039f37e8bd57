"""SPEC §14 from asyncio, on real sockets: ``await`` any CallFuture, ``acall``, partials as an
async iterator, and cancelling an awaiting task cancels the call at the worker."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

from pirate_actors import CallTimeout, Client, NoWorkerError, RemoteError, Worker

from ..conftest import wait_until

pytestmark = pytest.mark.timeout(30)


def test_a_call_future_is_awaitable_and_acall_does_not_block_the_loop(
    client: Client, start_worker: Callable[..., Worker],
) -> None:
    start_worker()
    client.wait_for_worker(timeout=10)

    async def main() -> tuple[Any, ...]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        awaited = await client.submit("ping")
        slept = await client.acall("sleep", 0.3, timeout=10)
        together = await asyncio.gather(*(client.acall("echo", n) for n in range(20)))
        ticking.cancel()
        return awaited, slept, together, ticks

    awaited, slept, together, ticks = asyncio.run(main())
    assert (awaited, slept) == ("pong", 0.3)
    assert together == [((n,), {}) for n in range(20)]
    assert ticks >= 10, "the loop kept running while the calls were out"


def test_a_remote_exception_is_raised_by_await(client: Client, start_worker: Callable[..., Worker]) -> None:
    start_worker()
    client.wait_for_worker(timeout=10)

    async def main() -> None:
        with pytest.raises(ValueError, match="no good"):
            await client.acall("fail", "no good")
        with pytest.raises(RemoteError):
            await client.submit("no_such_procedure")

    asyncio.run(main())


@pytest.mark.parametrize("how", ["acall", "await submit"])
def test_cancelling_the_awaiting_task_cancels_the_running_call_at_the_worker(
    client: Client, start_worker: Callable[..., Worker], gate: Callable[..., Any], how: str,
) -> None:
    worker = start_worker()
    client.wait_for_worker(timeout=10)
    name, held = gate()

    async def awaiting() -> Any:
        if how == "acall":
            return await client.acall("until_cancelled", name)
        return await client.submit("until_cancelled", name)

    async def main() -> None:
        task = asyncio.ensure_future(awaiting())
        await asyncio.get_running_loop().run_in_executor(None, held.wait_entered, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert held.opened.wait(10), "the running procedure never saw the cancel"
    wait_until(lambda: worker.stats()["in_flight"] == 0, 10)


def test_acall_times_out_with_call_timeout_and_cancels_the_call(
    client: Client, start_worker: Callable[..., Worker], gate: Callable[..., Any],
) -> None:
    worker = start_worker()
    client.wait_for_worker(timeout=10)
    name, held = gate()

    async def main() -> None:
        with pytest.raises(CallTimeout):
            await client.acall("until_cancelled", name, timeout=0.5)

    asyncio.run(main())
    assert held.opened.wait(10), "the timed-out call was not cancelled at the worker"
    wait_until(lambda: worker.stats()["in_flight"] == 0, 10)


def test_acall_without_any_worker_raises_no_worker_error() -> None:
    with Client("tcp://127.0.0.1:*") as lonely:
        async def main() -> None:
            with pytest.raises(NoWorkerError):
                await lonely.acall("ping", timeout=0.3)
        asyncio.run(main())


def test_options_acall_uses_the_options_timeout(
    client: Client, start_worker: Callable[..., Worker], gate: Callable[..., Any],
) -> None:
    start_worker()
    client.wait_for_worker(timeout=10)
    name, held = gate()

    async def main() -> None:
        assert await client.options(timeout=5).acall("ping") == "pong"
        with pytest.raises(CallTimeout):
            await client.options(timeout=0.3).acall("until_cancelled", name)

    asyncio.run(main())
    assert held.opened.wait(10)


def test_partials_arrive_as_an_async_iterator_then_the_result(
    client: Client, start_worker: Callable[..., Worker],
) -> None:
    start_worker()
    client.wait_for_worker(timeout=10)

    async def main() -> tuple[list[Any], Any]:
        future = client.submit("progress", 50)
        seen = [message async for message in future.apartials()]
        return seen, await future

    seen, result = asyncio.run(main())
    assert seen == ["started", *range(50)] and result == 50
