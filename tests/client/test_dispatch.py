"""SPEC §2–§3: capacity, many workers, the most free capacity first, submission order."""

from __future__ import annotations

import pytest

from pirate_actors import Client, ProcedureActor, WorkerInfo
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(30)


def test_workers_lists_each_registered_worker_as_worker_info(client: Client, start_worker) -> None:
    one = start_worker(pool_size=2, prefetch=1, name="one")
    two = start_worker(pool_size=3, prefetch=0, name="two")
    wait_until(lambda: len(client.workers()) == 2)
    infos = sorted(client.workers(), key=lambda w: w.name)
    assert all(isinstance(w, WorkerInfo) for w in infos)
    assert [(w.id, w.name, w.capacity, w.in_flight) for w in infos] == [
        (one.id, "one", 3, 0), (two.id, "two", 3, 0)
    ]
    assert "ping" in infos[0].procedures


def test_a_worker_announces_pool_size_plus_prefetch_as_its_capacity(client: Client, start_worker) -> None:
    start_worker(pool_size=3)
    client.wait_for_worker()
    assert client.workers()[0].capacity == 6


def test_a_worker_never_gets_more_calls_than_its_capacity_the_rest_wait_in_order(
    client: Client, start_worker, gate
) -> None:
    start_worker(pool_size=2, prefetch=1)
    client.wait_for_worker()
    name, g = gate()
    futures = [client.submit("hold", name, i) for i in range(6)]
    g.wait_entered(2)
    wait_until(lambda: client.workers()[0].in_flight == 3)
    assert [f.worker is not None for f in futures] == [True, True, True, False, False, False]
    g.opened.set()
    assert [f.result(10) for f in futures] == list(range(6))


def test_prefetch_zero_means_no_call_ever_waits_inside_a_worker(client: Client, start_worker, gate) -> None:
    start_worker(pool_size=1, prefetch=0)
    client.wait_for_worker()
    name, g = gate()
    first = client.submit("hold", name, 1)
    second = client.submit("hold", name, 2)
    g.wait_entered()
    assert client.workers()[0].in_flight == 1 and second.worker is None
    g.opened.set()
    assert (first.result(10), second.result(10)) == (1, 2)


def test_calls_go_to_the_worker_with_the_most_free_capacity(client: Client, start_worker, gate) -> None:
    small = start_worker(pool_size=2, prefetch=0, name="small")
    big = start_worker(pool_size=6, prefetch=0, name="big")
    wait_until(lambda: len(client.workers()) == 2)
    name, g = gate()
    futures = [client.submit("hold", name, i) for i in range(4)]
    g.wait_entered(4)
    # big (6 free) takes calls until its free capacity drops to small's (2)
    assert [f.worker for f in futures] == [big.id] * 4
    more = [client.submit("hold", name, i) for i in range(4)]
    g.wait_entered(4)
    load = {w.name: w.in_flight for w in client.workers()}
    assert load == {"small": 2, "big": 6}
    assert {f.worker for f in more} == {small.id, big.id}
    g.opened.set()
    assert [f.result(10) for f in futures + more] == [0, 1, 2, 3, 0, 1, 2, 3]


class OnlyHere(ProcedureActor):
    def special(self) -> str:
        return "special"


def test_calls_go_only_to_workers_that_serve_the_procedure(client: Client, start_worker) -> None:
    start_worker(pool_size=8, name="general")
    special = start_worker(OnlyHere, pool_size=1, name="special")
    wait_until(lambda: len(client.workers()) == 2)
    futures = [client.submit("special") for _ in range(10)]
    assert [f.result(10) for f in futures] == ["special"] * 10
    assert {f.worker for f in futures} == {special.id}


def test_a_procedure_no_worker_serves_is_answered_unknown_procedure(client: Client, start_worker) -> None:
    from pirate_actors import UnknownProcedure

    start_worker(OnlyHere)
    client.wait_for_worker()
    with pytest.raises(UnknownProcedure, match="nowhere"):
        client.call("nowhere")
