"""SPEC §2 Supervision: the pool always returns to pool_size live actors."""

from __future__ import annotations

import pytest

import time

from pirate_actors import Client, ProcedureActor, RemoteError
from tests.conftest import wait_started, wait_until

pytestmark = pytest.mark.timeout(30)


def test_a_procedure_that_raises_gets_an_error_reply_and_its_actor_lives_on(client: Client, start_worker) -> None:
    worker = start_worker(pool_size=1)
    client.wait_for_worker()
    before = client.call("whoami")
    with pytest.raises(ValueError):
        client.call("fail", "x")
    assert client.call("whoami") == before
    assert worker.stats()["replacements"] == 0


@pytest.mark.parametrize("procedure", ["exit", "stop_myself"])
def test_a_procedure_that_raises_base_exception_or_stops_its_actor_is_answered_and_replaced(
    client: Client, start_worker, procedure: str
) -> None:
    worker = start_worker(pool_size=3)
    client.wait_for_worker()
    if procedure == "exit":
        with pytest.raises(RemoteError, match="SystemExit"):
            client.call("exit")
    else:
        assert client.call("stop_myself") == "stopping"
    wait_until(lambda: worker.stats()["replacements"] == 1)
    assert worker.stats()["live_actors"] == 3
    # the other actors and the worker live on: many calls still succeed
    assert [f.result(10) for f in [client.submit("ping") for _ in range(30)]] == ["pong"] * 30


def test_base_exceptions_never_stop_other_actors_or_the_worker(client: Client, start_worker, gate) -> None:
    worker = start_worker(pool_size=2)
    client.wait_for_worker()
    name, g = gate()
    held = client.submit("hold", name, "survived")
    g.wait_entered()
    for _ in range(5):
        with pytest.raises(RemoteError, match="SystemExit"):
            client.call("exit")
    g.opened.set()
    assert held.result(timeout=10) == "survived"
    wait_until(lambda: worker.stats()["live_actors"] == 2)
    assert client.call("ping") == "pong"


def test_a_call_cancelled_while_running_does_not_cost_capacity(client: Client, start_worker, gate) -> None:
    worker = start_worker(pool_size=1, prefetch=0)
    client.wait_for_worker()
    name, g = gate()
    stuck = client.submit("hold", name)
    g.wait_entered()
    assert stuck.cancel()
    # the only actor is still inside `hold`, yet a fresh one serves the next call at once
    assert client.call("ping", timeout=5) == "pong"
    assert worker.stats()["live_actors"] == 1
    g.opened.set()
    assert stuck.cancelled()
    assert client.call("ping", timeout=5) == "pong"


def test_the_late_reply_of_a_cancelled_call_is_dropped(client: Client, start_worker, gate) -> None:
    start_worker(pool_size=1)
    client.wait_for_worker()
    name, g = gate()
    stuck = client.submit("hold", name, "late")
    wait_started(stuck)
    stuck.cancel()
    g.opened.set()
    assert client.call("ping") == "pong"
    assert stuck.cancelled() and stuck.partials == ["started"]


class FailsToStart(ProcedureActor):
    def on_start(self) -> None:
        raise RuntimeError("no database")

    def ping(self) -> str:
        return "pong"


def test_actors_that_die_before_serving_are_replaced_with_backoff_not_in_a_busy_loop(
    client: Client, start_worker
) -> None:
    worker = start_worker(FailsToStart, pool_size=2)
    client.wait_for_worker()
    started = time.monotonic()
    wait_until(lambda: worker.stats()["replacements"] >= 6)
    # doubling delays from 0.1 s: six replacements of two actors take well over 0.2 s
    assert time.monotonic() - started > 0.2
    assert worker.stats()["replacements"] < 40


def test_a_procedure_can_see_that_its_call_was_cancelled_and_return_early(client: Client, start_worker, gate) -> None:
    worker = start_worker(pool_size=1)
    client.wait_for_worker()
    name, g = gate()
    future = client.submit("until_cancelled", name)
    wait_started(future)
    assert not g.opened.is_set()
    future.cancel()
    assert g.opened.wait(10), "the procedure never saw its cancellation"
    wait_until(lambda: worker.stats()["live_actors"] == 1)
    assert client.call("ping") == "pong"
