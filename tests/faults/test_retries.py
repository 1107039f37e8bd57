"""SPEC §10, first part: a call to an idempotent procedure whose worker is SIGKILLed mid-call is
sent again to another worker and succeeds there; any other call fails with WorkerLost naming the
worker; ``client.options(retries=..., timeout=...)`` retries any procedure and bounds the whole
call. Workers run in their own processes so they can really be killed."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pirate_actors import CallTimeout, NoWorkerError, WorkerLost
from tests.helpers import FAST
from tests.helpers.sync import started_event, wait_until

pytestmark = pytest.mark.timeout(40)


def _one_call_running_on_a_doomed_worker(make_client, spawn_worker, tmp_path: Path, submit):
    """A client, a worker A running a call that hangs there, and a spare worker B."""
    client = make_client(**FAST)
    doomed = spawn_worker(client.endpoint, "doomed", pool_size=1, prefetch=0)
    client.wait_for_worker(timeout=20)
    marker = str(tmp_path / "ran-once")
    call = submit(client, marker)
    assert started_event(call).wait(20), "the call never started"
    assert call.attempts == (doomed.id,)
    spare = spawn_worker(client.endpoint, "spare", pool_size=1, prefetch=0)
    wait_until(lambda: len(client.workers()) == 2, 20, "the spare worker registered")
    return client, call, doomed, spare


def test_a_call_to_an_idempotent_procedure_whose_worker_is_killed_succeeds_on_another_worker(
    make_client, spawn_worker, tmp_path: Path
) -> None:
    client, call, doomed, spare = _one_call_running_on_a_doomed_worker(
        make_client, spawn_worker, tmp_path, lambda c, m: c.submit("first_run_hangs", m))
    doomed.process.send_signal(signal.SIGKILL)
    assert call.result(timeout=20) == spare.pid
    assert call.attempts == (doomed.id, spare.id)
    assert call.worker == spare.id


def test_a_call_to_a_procedure_that_is_not_idempotent_is_never_sent_twice(
    make_client, spawn_worker, tmp_path: Path
) -> None:
    client, call, doomed, _spare = _one_call_running_on_a_doomed_worker(
        make_client, spawn_worker, tmp_path, lambda c, m: c.submit("first_run_hangs_unmarked", m))
    doomed.process.send_signal(signal.SIGKILL)
    with pytest.raises(WorkerLost, match=doomed.id):
        call.result(timeout=20)
    assert call.attempts == (doomed.id,)


def test_options_retries_sends_any_procedure_again_because_the_caller_asked(
    make_client, spawn_worker, tmp_path: Path
) -> None:
    client, call, doomed, spare = _one_call_running_on_a_doomed_worker(
        make_client, spawn_worker, tmp_path,
        lambda c, m: c.options(retries=1).submit("first_run_hangs_unmarked", m))
    doomed.process.send_signal(signal.SIGKILL)
    assert call.result(timeout=20) == spare.pid
    assert call.attempts == (doomed.id, spare.id)


def test_retries_zero_turns_retrying_off_even_for_an_idempotent_procedure(
    make_client, spawn_worker, tmp_path: Path
) -> None:
    client, call, doomed, _spare = _one_call_running_on_a_doomed_worker(
        make_client, spawn_worker, tmp_path,
        lambda c, m: c.options(retries=0).submit("first_run_hangs", m))
    doomed.process.send_signal(signal.SIGKILL)
    with pytest.raises(WorkerLost):
        call.result(timeout=20)


def test_workers_announce_their_idempotent_procedures(make_client, spawn_worker) -> None:
    client = make_client(**FAST)
    spawn_worker(client.endpoint, "w", pool_size=1)
    client.wait_for_worker(timeout=20)
    (info,) = client.workers()
    assert info.idempotent == ("first_run_hangs", "logged_sleep")
    assert "first_run_hangs_unmarked" in info.procedures


def test_an_options_timeout_fails_a_running_call_with_call_timeout_and_cancels_it_on_the_worker(
    make_client, make_worker
) -> None:
    client = make_client(**FAST)
    make_worker(client.endpoint, pool_size=1, prefetch=0, **FAST)
    client.wait_for_worker(timeout=20)
    call = client.options(timeout=0.5).submit("sleep", 60)
    with pytest.raises(CallTimeout):
        call.result(timeout=20)
    wait_until(lambda: client.workers()[0].in_flight == 0, 10, "the worker's slot is free again")
    assert client.call("ping", timeout=10) == "pong"  # its actor was replaced: capacity is back


def test_an_options_timeout_with_no_worker_at_all_fails_with_no_worker_error(make_client) -> None:
    client = make_client(**FAST)
    with pytest.raises(NoWorkerError):
        client.options(timeout=0.3).call("ping")
    assert client.stats()["queued"] == 0


def test_options_refuse_nonsense() -> None:
    from pirate_actors import Client

    client = Client("tcp://127.0.0.1:*")
    with pytest.raises(ValueError):
        client.options(retries=-1)
    with pytest.raises(ValueError):
        client.options(timeout=0)
    with pytest.raises(ValueError):
        Client("tcp://127.0.0.1:*", retries=True)


def test_a_worker_frozen_longer_than_heartbeat_times_liveness_runs_an_idempotent_call_once_and_the_future_gets_its_result(
    make_client, spawn_worker, tmp_path: Path
) -> None:
    client = make_client(**FAST)
    frozen = spawn_worker(client.endpoint, "frozen", pool_size=1, prefetch=0)
    client.wait_for_worker(timeout=20)
    log = tmp_path / "runs"
    call = client.submit("logged_sleep", str(log), 1.5)
    assert started_event(call).wait(20)
    frozen.process.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: client.workers() == [], 20, "the client gave the frozen worker up")
        assert not call.done()  # lost, but idempotent: it waits to be sent again
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    assert call.result(timeout=20) == 1  # the first run's outcome ...
    assert log.read_text().splitlines() == [str(frozen.pid)]  # ... and it ran once
    assert call.attempts == (frozen.id, frozen.id)


def test_a_call_whose_deadline_passes_while_it_waits_in_the_worker_never_starts(
    make_client, make_worker, tmp_path: Path
) -> None:
    client = make_client(**FAST)
    make_worker(client.endpoint, pool_size=1, prefetch=1, **FAST)
    client.wait_for_worker(timeout=20)
    long = client.submit("sleep", 1.0)
    assert started_event(long).wait(20)
    proof = tmp_path / "ran"
    short = client.options(timeout=0.3).submit("record", str(proof))
    wait_until(lambda: short.worker is not None, 10, "the short call reached the worker")
    with pytest.raises(CallTimeout):
        short.result(timeout=20)
    assert long.result(timeout=20) is True
    assert client.call("ping", timeout=10) == "pong"  # the actor is free again ...
    assert not proof.exists()  # ... and the short call never ran
