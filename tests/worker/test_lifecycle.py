"""SPEC §2: start, stop, join, context manager; nothing left behind."""

from __future__ import annotations

import threading

import pytest
import zmq

from pirate_actors import Client, Worker
from tests.conftest import Testing, wait_until

pytestmark = pytest.mark.timeout(30)


def test_start_returns_at_once_even_without_a_client() -> None:
    worker = Worker(Testing, "tcp://127.0.0.1:1")  # nothing listens there
    worker.start()
    assert worker.running
    worker.stop(timeout=0.5)
    assert not worker.running


def test_a_stopped_worker_leaves_no_thread_behind(client: Client) -> None:
    before = set(threading.enumerate())
    with Worker(Testing, client.endpoint, pool_size=4, heartbeat=0.2):
        client.wait_for_worker()
        assert client.call("ping") == "pong"
        assert len(set(threading.enumerate()) - before) >= 5  # socket actor + pool
    wait_until(lambda: not [t for t in set(threading.enumerate()) - before if t.is_alive()])


def test_stop_returns_even_when_zeromq_cannot_end_its_context(client: Client) -> None:
    # libzmq resolves the client's host name in its I/O thread; when that name stops resolving
    # (a client container gone), a lookup can hang and term() with it. Stand-in here: a socket
    # left open on the worker's context, which term() waits for forever.
    worker = Worker(Testing, client.endpoint, heartbeat=0.2).start()
    straggler = worker._context.socket(zmq.PAIR)
    try:
        stopper = threading.Thread(target=worker.stop, daemon=True)
        stopper.start()
        stopper.join(10)
        assert not stopper.is_alive(), "stop() waited for the ZeroMQ context"
        assert not worker.running
    finally:
        straggler.close(0)  # lets the left-behind term() finish


def test_join_blocks_until_the_worker_has_stopped(client: Client) -> None:
    worker = Worker(Testing, client.endpoint, heartbeat=0.2).start()
    assert not worker.join(timeout=0.05)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    assert worker.join(timeout=10)
    stopper.join(10)


def test_leaving_the_with_block_tells_the_client_so_no_new_calls_come(client: Client) -> None:
    with Worker(Testing, client.endpoint, heartbeat=0.2):
        client.wait_for_worker()
    wait_until(lambda: client.workers() == [])
    future = client.submit("ping")
    assert future.worker is None and not future.done()
    future.cancel()


def test_stop_lets_running_calls_finish(client: Client, gate) -> None:
    worker = Worker(Testing, client.endpoint, pool_size=2, heartbeat=0.2).start()
    client.wait_for_worker()
    name, g = gate()
    running = [client.submit("hold", name, i) for i in range(2)]
    g.wait_entered(2)
    stopper = threading.Thread(target=worker.stop, kwargs={"timeout": 10})
    stopper.start()
    g.opened.set()
    assert [f.result(10) for f in running] == [0, 1]
    stopper.join(10)
    assert not worker.running


def test_calls_still_running_when_stop_times_out_fail_with_worker_lost(client: Client, gate) -> None:
    from pirate_actors import WorkerLost

    worker = Worker(Testing, client.endpoint, pool_size=1, heartbeat=0.2).start()
    client.wait_for_worker()
    name, g = gate()
    stuck = client.submit("hold", name)
    g.wait_entered()
    worker.stop(timeout=0.2)
    with pytest.raises(WorkerLost):
        stuck.result(timeout=5)


def test_prefetched_calls_are_handed_back_not_run_and_run_on_another_worker(client: Client, gate) -> None:
    leaving = Worker(Testing, client.endpoint, pool_size=1, prefetch=3, heartbeat=0.2, name="leaving").start()
    client.wait_for_worker()
    name, g = gate()
    running = client.submit("hold", name, "ran")
    prefetched = [client.submit("echo", i) for i in range(3)]
    g.wait_entered()
    wait_until(lambda: {f.worker for f in prefetched} == {leaving.id})  # all prefetched there
    stopper = threading.Thread(target=leaving.stop, kwargs={"timeout": 10})
    stopper.start()
    wait_until(lambda: all(f.worker is None for f in prefetched))  # re-queued in the client
    other = Worker(Testing, client.endpoint, heartbeat=0.2, name="other").start()
    try:
        assert [f.result(10) for f in prefetched] == [((i,), {}) for i in range(3)]
        assert {f.worker for f in prefetched} == {other.id}
        g.opened.set()
        assert running.result(10) == "ran"
        stopper.join(10)
    finally:
        other.stop(timeout=1)
