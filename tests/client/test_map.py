"""``client.map`` (SPEC §14, and §10's ``options().map``): Executor.map's semantics over workers."""

from __future__ import annotations

import concurrent.futures
import time

import pytest

from pirate_actors import Client, Worker
from tests.helpers.procedures import FaultProcedures
from tests.helpers.sync import wait_until

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def client() -> Client:
    with Client("tcp://127.0.0.1:*", heartbeat=0.2) as client:
        worker = Worker(FaultProcedures, client.endpoint, pool_size=4, heartbeat=0.2).start()
        try:
            client.wait_for_worker(timeout=10)
            yield client
        finally:
            worker.stop(timeout=1)


def test_map_returns_results_in_order_with_the_calls_made_at_once(client: Client) -> None:
    started = time.monotonic()
    assert list(client.map("sleep", [0.3] * 4)) == [True] * 4
    assert time.monotonic() - started < 4 * 0.3  # they ran side by side
    assert list(client.map("echo", range(10))) == list(range(10))


def test_map_zips_several_iterables_and_stops_at_the_shortest(client: Client) -> None:
    assert list(client.map("logged_sleep", ["/dev/null"] * 5, [0.0, 0.0])) == [0, 0]
    assert list(client.options(retries=1).map("echo", [1, 2])) == [1, 2]


def test_map_raises_a_calls_exception_when_its_result_is_reached(client: Client) -> None:
    results = client.map("echo", [1, 2])
    assert next(results) == 1
    bad = client.map("no_such_procedure", [1])
    from pirate_actors import UnknownProcedure

    with pytest.raises(UnknownProcedure):
        next(bad)


def test_map_timeout_bounds_the_whole_iteration_and_cancels_the_rest(client: Client) -> None:
    results = client.map("sleep", [0.05, 5.0, 5.0], timeout=0.5)
    assert next(results) is True
    with pytest.raises(concurrent.futures.TimeoutError):
        next(results)
    # the calls left behind were cancelled: the worker holds none of them any more
    wait_until(lambda: client.workers()[0].in_flight == 0, 10, "the cancels reached the worker")
