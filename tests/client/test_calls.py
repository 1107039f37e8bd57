"""SPEC §3: submit, call, futures, cancel, close."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from typing import Any

import pytest

from pirate_actors import CallFuture, CallTimeout, Client, NoWorkerError, PirateError, Worker
from tests.conftest import Testing, wait_started

pytestmark = pytest.mark.timeout(30)


def test_a_call_future_is_a_concurrent_futures_future(client: Client, start_worker) -> None:
    start_worker()
    client.wait_for_worker()
    futures = [client.submit("echo", i) for i in range(20)]
    assert all(isinstance(f, concurrent.futures.Future) and isinstance(f, CallFuture) for f in futures)
    done = sorted(f.result()[0] for f in concurrent.futures.as_completed(futures, timeout=10))
    assert done == [(i,) for i in range(20)]

    async def wrapped() -> object:
        return await asyncio.wrap_future(client.submit("ping"))

    assert asyncio.run(wrapped()) == "pong"


def test_many_calls_are_in_flight_at_once(client: Client, start_worker, gate) -> None:
    start_worker(pool_size=4, prefetch=0)
    client.wait_for_worker()
    name, g = gate()
    held = [client.submit("hold", name, i) for i in range(4)]
    g.wait_entered(4)  # all four run concurrently
    g.opened.set()
    assert [f.result(10) for f in held] == [0, 1, 2, 3]


def test_future_worker_names_the_worker_serving_the_call(client: Client, start_worker) -> None:
    worker = start_worker()
    client.wait_for_worker()
    future = client.submit("ping")
    future.result(10)
    assert future.worker == worker.id == client.workers()[0].id


def test_add_partial_callback_replays_earlier_partials(client: Client, start_worker) -> None:
    start_worker()
    client.wait_for_worker()
    future = client.submit("progress", 3)
    future.result(10)
    seen: list[object] = []
    future.add_partial_callback(lambda fut, msg: seen.append((fut is future, msg)))
    assert seen == [(True, "started"), (True, 0), (True, 1), (True, 2)]


def test_call_timeout_raises_call_timeout_and_cancels_the_call_on_the_worker(
    client: Client, start_worker, gate
) -> None:
    start_worker(pool_size=1, prefetch=0)
    client.wait_for_worker()
    name, g = gate()
    with pytest.raises(CallTimeout) as info:
        client.call("hold", name, timeout=0.3)
    assert isinstance(info.value, TimeoutError)
    # cancelled on the worker: its single slot is free again although `hold` still blocks
    assert client.call("ping", timeout=5) == "pong"
    assert client.workers()[0].in_flight == 0


def test_call_raises_no_worker_error_when_no_worker_registered_during_the_wait() -> None:
    with Client("tcp://127.0.0.1:*") as client:
        started = time.monotonic()
        with pytest.raises(NoWorkerError):
            client.call("ping", timeout=0.3)
        assert time.monotonic() - started < 2


def test_wait_for_worker_raises_no_worker_error_after_its_timeout() -> None:
    with Client("tcp://127.0.0.1:*") as client:
        with pytest.raises(NoWorkerError):
            client.wait_for_worker(timeout=0.2)


def test_a_queued_call_fails_with_no_worker_error_after_the_clients_timeout() -> None:
    with Client("tcp://127.0.0.1:*", timeout=0.3) as client:
        future = client.submit("ping")
        with pytest.raises(NoWorkerError):
            future.result(timeout=5)


def test_a_queued_call_waits_for_a_worker_that_comes_within_the_timeout(client: Client, start_worker) -> None:
    future = client.submit("ping")
    start_worker()
    assert future.result(timeout=10) == "pong"


def test_cancel_succeeds_for_a_queued_call(client: Client, start_worker, gate) -> None:
    start_worker(pool_size=1, prefetch=0)
    client.wait_for_worker()
    name, g = gate()
    running = client.submit("hold", name, "first")
    queued = client.submit("hold", name, "second")
    g.wait_entered()
    assert queued.worker is None
    assert queued.cancel() and queued.cancelled()
    g.opened.set()
    assert running.result(10) == "first"
    assert client.call("ping") == "pong"


def test_cancel_succeeds_for_a_running_call_and_fails_for_a_finished_one(
    client: Client, start_worker, gate
) -> None:
    start_worker()
    client.wait_for_worker()
    name, g = gate()
    running = client.submit("hold", name)
    wait_started(running)
    assert running.cancel()
    with pytest.raises(concurrent.futures.CancelledError):
        running.result(timeout=1)
    finished = client.submit("ping")
    finished.result(10)
    assert not finished.cancel()


def test_close_fails_every_unfinished_future_with_pirate_error_and_returns_promptly(gate) -> None:
    client = Client("tcp://127.0.0.1:*").start()
    worker = Worker(Testing, client.endpoint, pool_size=1, prefetch=0, heartbeat=0.2).start()
    try:
        client.wait_for_worker()
        name, g = gate()
        running = client.submit("hold", name)
        queued = client.submit("ping")
        g.wait_entered()
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 2
        for future in (running, queued):
            with pytest.raises(PirateError, match="closed"):
                future.result(timeout=1)
        with pytest.raises(PirateError):
            client.submit("ping")
    finally:
        worker.stop(timeout=0.5)


def test_calls_from_many_threads_all_complete(client: Client, start_worker) -> None:
    start_worker(pool_size=4)
    client.wait_for_worker()
    results: list[object] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        for i in range(50):
            value = client.call("echo", n, i)
            with lock:
                results.append(value)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == sorted(((n, i), {}) for n in range(8) for i in range(50))


def test_submit_racing_close_either_raises_or_gives_a_future_that_ends() -> None:
    for _ in range(20):
        client = Client("tcp://127.0.0.1:*").start()
        futures: list[concurrent.futures.Future[object]] = []
        refused = threading.Event()

        def submitter() -> None:
            while True:
                try:
                    futures.append(client.submit("ping"))
                except PirateError:
                    refused.set()
                    return

        thread = threading.Thread(target=submitter)
        thread.start()
        client.close()
        thread.join(10)
        assert refused.is_set()
        done, pending = concurrent.futures.wait(futures, timeout=10)
        assert not pending


def test_a_done_callback_raising_system_exit_leaves_no_future_pending(
    client: Client, start_worker
) -> None:
    # Futures are settled in a batch at the end of a loop turn; a callback that kills the
    # client thread must not strand the futures after it in that batch. The calls wait for a
    # worker, so the callback is in place before any answer can come, and they all go out
    # (and mostly come back) in one message.
    futures = [client.submit("ping") for _ in range(20)]

    raised = threading.Event()

    def die(future: Any) -> None:  # on whichever future completes first
        if not raised.is_set():
            raised.set()
            raise SystemExit("a callback asked to exit")

    for future in futures:
        future.add_done_callback(die)
    start_worker()
    for future in futures:
        concurrent.futures.wait([future], timeout=10)
        assert future.done(), "a future was left pending"
    assert raised.is_set()
