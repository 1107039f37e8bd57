"""The dispatcher's index of free capacity agrees with a scan of every worker, however the
workers' calls, capacities and states change (and however often the index compacts)."""

from __future__ import annotations

import random

import pytest

from pirate_actors._client_engine import Vacancies
from pirate_actors.protocol import Peer, Ready, WorkerPeer, WorkerState

pytestmark = pytest.mark.timeout(60)

GROUPS = (("a",), ("a", "b"), ("c",))


def _scan(workers: dict[bytes, WorkerPeer], procedure: str) -> int:
    """The free capacity the best choice must have: that of the freest registered worker that
    serves ``procedure``, else of the freest of all; 0 if none is free."""
    registered = [w for w in workers.values() if w.state is WorkerState.REGISTERED]
    serving = [w for w in registered if procedure in w.procedures] or registered
    return max((w.free for w in serving), default=0)


def _worker(n: int, procedures: tuple[str, ...], capacity: int) -> WorkerPeer:
    return WorkerPeer(Ready(f"w{n}", capacity, 1.0, 3, procedures, id=f"w{n}"), Peer(0.0, 1.0, 3))


@pytest.mark.parametrize("seed", range(5))
def test_best_is_as_free_as_the_freest_worker_after_random_changes(seed: int) -> None:
    rng = random.Random(seed)
    workers: dict[bytes, WorkerPeer] = {}
    index = Vacancies(workers)
    next_id = 0
    for step in range(5_000):
        action = rng.random()
        if action < 0.01 or len(workers) < 2:
            next_id += 1
            peer = b"%d" % next_id
            workers[peer] = _worker(next_id, rng.choice(GROUPS), rng.randint(1, 8))
            index.changed(peer, workers[peer])
        elif action < 0.015:
            del workers[rng.choice(list(workers))]  # gone: nobody tells the index
        elif action < 0.02:
            rng.choice(list(workers.values())).state = WorkerState.LEAVING
        elif action < 0.15:
            peer = rng.choice(list(workers))
            workers[peer].capacity = rng.randint(0, 8)
            index.changed(peer, workers[peer])
        elif action < 0.55:
            peer = rng.choice(list(workers))
            worker = workers[peer]
            if worker.calls:
                worker.calls.discard(rng.choice(sorted(worker.calls)))
                index.changed(peer, worker)
        else:
            procedure = rng.choice("abcd")
            expected = _scan(workers, procedure)
            peer = index.best(procedure)
            if expected <= 0:
                assert peer is None, f"step {step}: a full or empty cluster gives no worker"
                continue
            assert peer is not None, f"step {step}: a worker with {expected} free was missed"
            worker = workers[peer]
            assert worker.free == expected, f"step {step}: chose {worker.free} free, best has {expected}"
            serving = [w for w in workers.values()
                       if w.state is WorkerState.REGISTERED and procedure in w.procedures]
            assert not serving or procedure in worker.procedures
            worker.calls.add(step)
            index.changed(peer, worker)


def test_equal_workers_take_calls_in_turn() -> None:
    workers = {b"%d" % n: _worker(n, ("a",), 2) for n in range(3)}
    index = Vacancies(workers)
    for peer, worker in workers.items():
        index.changed(peer, worker)
    chosen = []
    for step in range(6):
        peer = index.best("a")
        assert peer is not None
        chosen.append(peer)
        workers[peer].calls.add(step)
        index.changed(peer, workers[peer])
    assert sorted(chosen) == sorted(list(workers) * 2)
    assert len(set(chosen[:3])) == 3, "each worker gets one before any gets two"
    assert index.best("a") is None
