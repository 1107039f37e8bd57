"""SPEC §5: a worker whose client died keeps trying forever, and when a client (re)appears at its
endpoint the worker is registered within 1.5 s of the bind (default settings), however long it
waited and whether or not it had noticed the previous client's death.

Clients that die run in their own process (``tests.helpers.client_process``) and are SIGKILLed
or SIGSTOPped; the worker mostly runs in this process (default heartbeat and liveness) so that
the test can see whether it noticed. Also: a worker drops the calls of a dead client so a new
one gets its full capacity, and hears a client that closes (its DISCONNECT) at once.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from pirate_actors import PirateError
from tests.helpers.procedures import open_gate
from tests.helpers.sync import started_event, wait_until

REGISTRATION_BOUND = 1.5


def _serve_then_kill_client(spawn, make_worker, client_args):
    old = spawn("tests.helpers.client_process", "tcp://127.0.0.1:*", *client_args, name="old-client")
    endpoint = old.expect("BOUND ").split()[1]
    worker = make_worker(endpoint)  # default heartbeat (1 s) and liveness (3)
    old.expect("PONG")
    assert worker.stats()["registered"]
    old.kill()  # SIGKILL, and reaped: its sockets are closed
    return endpoint, worker


def _assert_registers_quickly(make_client, endpoint):
    began = time.monotonic()
    client = make_client(endpoint)  # binds the dead client's endpoint, default settings
    client.wait_for_worker(timeout=10)
    elapsed = time.monotonic() - began
    assert elapsed <= REGISTRATION_BOUND, f"registered {elapsed:.2f} s after the new bind"
    assert client.call("ping", timeout=10) == "pong"


@pytest.mark.timeout(40)
def test_a_worker_that_noticed_its_client_died_registers_with_a_new_client_at_the_endpoint_within_1_5_s_of_its_bind(
    spawn, make_worker, make_client
):
    # The dead client announced heartbeat 0.2 s x 3, so the worker notices within 0.6 s.
    endpoint, worker = _serve_then_kill_client(spawn, make_worker, ["--heartbeat", "0.2"])
    wait_until(lambda: not worker.stats()["registered"], 20, "the worker noticed its client died")
    # Let it keep waiting for over 2 s before a client appears: the length of the wait is what
    # is under test (nothing is sent meanwhile: no connection is up, and only sends count).
    sent = worker.stats()["sent"]
    threading.Event().wait(2.2)
    assert worker.stats()["sent"] == sent
    _assert_registers_quickly(make_client, endpoint)


@pytest.mark.timeout(40)
def test_a_worker_registers_with_a_client_that_rebinds_the_endpoint_right_after_the_old_one_was_killed(
    spawn, make_worker, make_client
):
    # The dead client announced heartbeat 1 s x 3, so silence alone would take 3 s; the worker
    # sees the connection drop (or, where it cannot, the new connection) and re-registers at once.
    # A worker that never saw the drop at all is covered in memory by
    # tests/protocol (WorkerProtocol.connected() while registered).
    endpoint, _worker = _serve_then_kill_client(spawn, make_worker, [])
    _assert_registers_quickly(make_client, endpoint)


@pytest.mark.timeout(40)
def test_a_worker_in_its_own_process_registers_with_a_restarted_client_within_1_5_s_of_its_bind(
    spawn, spawn_worker, make_client
):
    old = spawn("tests.helpers.client_process", "tcp://127.0.0.1:*", name="old-client")
    endpoint = old.expect("BOUND ").split()[1]
    spawn_worker(endpoint, "faithful", heartbeat=1.0, liveness=3)
    old.expect("PONG")
    old.kill()
    _assert_registers_quickly(make_client, endpoint)


@pytest.mark.timeout(40)
def test_a_worker_started_before_any_client_registers_within_1_5_s_of_the_clients_bind(
    make_worker, make_client
):
    with socket.socket() as probe:  # a free port, released again: nobody listens there yet
        probe.bind(("127.0.0.1", 0))
        endpoint = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    worker = make_worker(endpoint)
    # Three heartbeats pass with nobody there: no connection comes up, so nothing is sent.
    threading.Event().wait(3.2)
    assert worker.stats()["sent"] == 0
    _assert_registers_quickly(make_client, endpoint)


@pytest.mark.timeout(40)
def test_a_worker_whose_client_died_serves_a_new_client_at_full_capacity_while_the_dead_clients_calls_still_run(
    spawn, make_worker, make_client
):
    old = spawn("tests.helpers.client_process", "tcp://127.0.0.1:*", "--busy", "2", name="old-client")
    endpoint = old.expect("BOUND ").split()[1]
    worker = make_worker(endpoint, pool_size=2, prefetch=0)
    old.expect("BUSY")  # both procedure actors are inside a 60 s sleep for the old client
    assert worker.stats()["held"] == 2
    old.kill()

    client = make_client(endpoint)
    client.wait_for_worker(timeout=10)
    calls = [client.submit("hold", "gate", n) for n in range(2)]
    for call in calls:
        assert started_event(call).wait(10), "the new client's calls wait behind abandoned ones"
    stats = worker.stats()
    assert (stats["held"], stats["live_actors"]) == (2, 2)
    open_gate("gate")
    assert [call.result(timeout=10) for call in calls] == [0, 1]


@pytest.mark.timeout(40)
def test_a_worker_whose_client_froze_registers_again_within_1_5_s_after_it_thaws_and_its_call_in_flight_ends_with_worker_lost(
    spawn, make_worker
):
    frozen = spawn(
        "tests.helpers.client_process", "tcp://127.0.0.1:*", "--heartbeat", "0.2", "--busy", "1",
        name="frozen",
    )
    endpoint = frozen.expect("BOUND ").split()[1]
    worker = make_worker(endpoint, pool_size=2)
    frozen.expect("BUSY")  # a 60 s call runs on the worker
    frozen.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: not worker.stats()["registered"], 20, "the worker judged its client dead")
        # Two heartbeats pass while it is frozen: the waiting is what is under test.
        threading.Event().wait(2.2)
    finally:
        frozen.send_signal(signal.SIGCONT)
    thawed_at = time.monotonic()
    wait_until(lambda: worker.stats()["registered"], 10, "registered with the thawed client")
    elapsed = time.monotonic() - thawed_at
    assert elapsed <= REGISTRATION_BOUND, f"registered {elapsed:.2f} s after the client thawed"
    # The worker abandoned that call when it gave the client up: the call must end, not hang.
    assert frozen.expect("ENDED ") == "ENDED WorkerLost"
    frozen.tell("ping")
    assert frozen.expect("PONG") == "PONG"


@pytest.mark.timeout(40)
def test_a_worker_whose_client_closed_registers_with_the_next_client_at_the_endpoint_within_1_5_s_of_its_bind(
    make_worker, make_client
):
    first = make_client("tcp://127.0.0.1:*")
    worker = make_worker(first.endpoint)
    first.wait_for_worker(timeout=10)
    running = first.submit("hold", "gate")
    assert started_event(running).wait(10)
    first.close()
    with pytest.raises(PirateError):
        running.result(timeout=5)  # close() fails what is unfinished
    wait_until(lambda: not worker.stats()["registered"], 10, "the worker heard the client leave")
    _assert_registers_quickly(make_client, first.endpoint)


@pytest.mark.timeout(40)
def test_a_worker_hears_its_client_close_even_if_it_was_busy_at_that_moment(
    make_client, spawn_worker, tmp_path
):
    client = make_client(heartbeat=5.0)  # judged by silence, this client would be dead after 15 s
    worker = spawn_worker(client.endpoint, "busy", heartbeat=1.0, watch=True)
    worker.process.expect("REGISTERED")
    flag = tmp_path / "hogging"
    client.submit("hog_gil", 1.0, str(flag))  # the worker's Python threads stop for 1 s ...
    wait_until(flag.exists, 20, "the procedure took the GIL")
    client.close()  # ... while the DISCONNECT and the end of the connection reach it
    worker.process.expect("UNREGISTERED", timeout=1.0 + 2.0)
