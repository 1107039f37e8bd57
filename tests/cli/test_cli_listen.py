"""pirate-listen (SPEC §11): binds an endpoint and prints the events of the workers there, one
line each, until interrupted (exit 0) or --count events."""

from __future__ import annotations

import json
import signal

import pytest

from pirate_actors import Worker
from tests.cli.support import Processes, console_script
from tests.helpers.procedures import FaultProcedures
from tests.helpers.sync import wait_until

pytestmark = pytest.mark.timeout(60)


def _worker_emitting(endpoint: str, listener) -> Worker:
    worker = Worker(FaultProcedures, endpoint, pool_size=1, heartbeat=0.2).start()
    wait_until(lambda: worker.stats()["registered"], 20, "the worker registered with pirate-listen")
    return worker


def test_pirate_listen_prints_each_event_of_its_topic_and_stops_after_count(processes: Processes, endpoint: str) -> None:
    listener = processes.start(
        [console_script("pirate-listen"), endpoint, "--topic", "tick", "--count", "3"])
    listener.wait_for_line(r"listening on ")
    worker = _worker_emitting(endpoint, listener)
    try:
        for n in range(3):
            worker.emit("tock", "not this one")
            worker.emit("tick", n)
        assert listener.finish() == 0, listener.describe()
    finally:
        worker.stop(timeout=1)
    assert listener.stdout.splitlines() == ["tick 0", "tick 1", "tick 2"]


def test_pirate_listen_json_prints_one_object_per_event_and_a_signal_ends_it_with_0(processes: Processes, endpoint: str) -> None:
    listener = processes.start([console_script("pirate-listen"), endpoint, "--json"])
    listener.wait_for_line(r"listening on ")
    worker = _worker_emitting(endpoint, listener)
    try:
        worker.emit("news", {"n": 1})
        worker.emit("news", {1, 2})  # no JSON for a set: its repr
        listener.wait_for_line(r"data_repr", stream="stdout")
        listener.signal(signal.SIGTERM)
        assert listener.finish() == 0, listener.describe()
    finally:
        worker.stop(timeout=1)
    first, second = (json.loads(line) for line in listener.stdout.splitlines())
    assert first["topic"] == "news" and first["data"] == {"n": 1} and first["worker"] == worker.id
    assert second["data_repr"] == "{1, 2}"


def test_pirate_listen_refuses_a_bad_count_with_exit_2(processes: Processes, endpoint: str) -> None:
    listener = processes.start([console_script("pirate-listen"), endpoint, "--count", "0"])
    assert listener.finish() == 2
    assert "--count" in listener.stderr


def test_pirate_listen_wait_exits_3_when_no_worker_comes(processes: Processes, endpoint: str) -> None:
    listener = processes.start([console_script("pirate-listen"), endpoint, "--wait", "0.3"])
    assert listener.finish() == 3, listener.describe()
    assert "NoWorkerError" in listener.stderr
