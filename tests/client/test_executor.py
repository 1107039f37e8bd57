"""SPEC §14: FunctionActor and RemoteExecutor, a real concurrent.futures.Executor, checked
against ProcessPoolExecutor running the same code; and demos/executor.sh end to end."""

from __future__ import annotations

import concurrent.futures
import subprocess
import threading
import time
from typing import Any, Callable

import pytest

from pirate_actors import Client, FunctionActor, RemoteExecutor, Worker

from ..cli.support import REPO, free_port, script_env

pytestmark = pytest.mark.timeout(60)


def square(x: int) -> int:
    return x * x


def divide(a: float, b: float) -> float:
    return a / b


def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def power(base: int, exponent: int = 2) -> int:
    return int(base ** exponent)


@pytest.fixture
def functions(client: Client, start_worker: Callable[..., Worker]) -> Client:
    start_worker(FunctionActor)
    client.wait_for_worker(timeout=10)
    return client


def run(executor: concurrent.futures.Executor) -> dict[str, Any]:
    """The same program for any executor."""
    out: dict[str, Any] = {"map": list(executor.map(square, range(20)))}
    out["submit"] = executor.submit(power, 3, exponent=4).result(timeout=30)
    out["two iterables"] = list(executor.map(power, [2, 3, 4], [3, 2, 1]))
    error = executor.submit(divide, 1, 0).exception(timeout=30)
    out["error"] = (type(error).__name__, str(error))
    results = executor.map(divide, [4, 1, 6], [2, 0, 3])
    out["map stops at the exception"] = [next(results)]
    with pytest.raises(ZeroDivisionError):
        next(results)
    return out


def test_a_remote_executor_is_an_executor_and_gives_what_a_process_pool_gives(functions: Client) -> None:
    executor = RemoteExecutor(functions)
    assert isinstance(executor, concurrent.futures.Executor)
    with executor, concurrent.futures.ProcessPoolExecutor(2) as pool:
        assert run(executor) == run(pool)


def test_map_bounds_the_whole_iteration_with_its_timeout(functions: Client) -> None:
    with RemoteExecutor(functions) as executor:
        results = executor.map(slow, [0.0, 5.0, 5.0], timeout=1.0)
        assert next(results) == 0.0
        started = time.monotonic()
        with pytest.raises(concurrent.futures.TimeoutError):
            next(results)
        assert time.monotonic() - started < 4


def test_shutdown_refuses_new_work_and_cancels_only_what_has_not_started(functions: Client) -> None:
    executor = RemoteExecutor(functions)
    running = [executor.submit(slow, 0.5) for _ in range(4)]  # the pool of 4 is busy
    for future in running:  # wait until each has started, as the standard library would see it
        started = threading.Event()
        future.add_partial_callback(lambda _f, message, e=started: e.set() if message == "started" else None)
        assert started.wait(10)
    waiting = [executor.submit(slow, 0.5) for _ in range(8)]  # queued at the client or worker
    executor.shutdown(wait=True, cancel_futures=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(square, 2)
    assert [f.result() for f in running] == [0.5] * 4, "running calls finish, as in the stdlib"
    assert all(f.done() for f in waiting) and any(f.cancelled() for f in waiting)
    assert functions.call("run", square, 3) == 9  # the client stays open


def test_with_an_endpoint_the_executor_makes_its_client_and_closes_it() -> None:
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    worker = Worker(FunctionActor, endpoint, heartbeat=0.2).start()
    try:
        with RemoteExecutor(endpoint, wait=10, heartbeat=0.2) as executor:
            assert executor.submit(square, 12).result(timeout=10) == 144
            client = executor.client
        with pytest.raises(Exception, match="closed"):
            client.submit("run", square, 1)
        # shutdown(wait=False) lets what runs finish, then closes the client it made.
        executor = RemoteExecutor(endpoint, wait=10, heartbeat=0.2)
        late = executor.submit(slow, 0.3)
        executor.shutdown(wait=False)
        assert late.result(timeout=10) == 0.3
        thread = executor.client._thread
        assert thread is not None
        thread.join(15)  # the client thread ends when the client is closed
        assert not thread.is_alive(), "the executor's own client was not closed after its last call"
    finally:
        worker.stop(timeout=1.0)


@pytest.mark.timeout(90)
def test_demos_executor_sh_runs_the_process_pool_program_on_workers_with_one_line_changed() -> None:
    local = (REPO / "demos" / "primes_local.py").read_text().splitlines()
    remote = (REPO / "demos" / "primes_remote.py").read_text().splitlines()
    changed = [(a, b) for a, b in zip(local, remote) if a != b]
    assert len(local) == len(remote) and len(changed) == 1
    assert "ProcessPoolExecutor" in changed[0][0] and "RemoteExecutor" in changed[0][1]
    result = subprocess.run(
        ["bash", str(REPO / "demos" / "executor.sh"), f"tcp://127.0.0.1:{free_port()}"],
        cwd=REPO, env=script_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=80,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the same output from ProcessPoolExecutor and from the workers" in result.stdout
    assert "1000003 is prime: True" in result.stdout
