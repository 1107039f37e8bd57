"""Operating the tools (SPEC §15, issue 16): `pirate-call --workers`, the messages a newcomer
meets first, what the worker logs for each call, and how pirate-worker stops (--stop-timeout, a
second signal). Real processes over real sockets; every wait is on a line, a result or a state."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from pirate_actors import Client, WorkerLost
from tests.cli.support import (
    Processes,
    console_script,
    described,
    run_call,
    run_tool,
    script_env,
)
from tests.helpers.sync import started_event, wait_until

pytestmark = pytest.mark.timeout(60)

ANYWHERE_CLASS = "pirate_actors:FunctionActor"  # importable from any folder once installed


# ------------------------------------------------------------------------- pirate-call --workers


def test_workers_lists_every_registered_worker_as_a_table_and_as_json(
    processes: Processes, endpoint: str, tmp_path: Path
) -> None:
    # Started outside the repository, as pirate-worker --help's first example says it can be.
    processes.worker(endpoint, target=ANYWHERE_CLASS, cwd=tmp_path)
    processes.worker(
        endpoint, "--pool-size", "2", "--prefetch", "0", "--name", "second",
        target=ANYWHERE_CLASS, cwd=tmp_path,
    )
    table = run_tool("pirate-call", endpoint, "--workers", "--wait", "20", cwd=tmp_path)
    assert table.returncode == 0, described(table)
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "CAPACITY", "IN", "FLIGHT", "PROCEDURES"], described(
        table
    )
    assert len(rows) == 2, described(table)
    cells = {row.split()[1]: row.split() for row in rows}
    assert cells["second"][2:] == ["2", "0", "run"], described(table)  # 2 actors, no prefetch
    (other,) = [name for name in cells if name != "second"]
    assert cells[other][2:] == ["8", "0", "run"], described(table)  # 4 actors + prefetch 4

    listed = run_tool("pirate-call", endpoint, "--workers", "--json", "--wait", "20")
    assert listed.returncode == 0, described(listed)
    workers = json.loads(listed.stdout)
    assert sorted((w["name"], w["capacity"], w["in_flight"], w["procedures"]) for w in workers) == [
        ("second", 2, 0, ["run"]),
        (other, 8, 0, ["run"]),
    ], described(listed)
    assert {w["id"] for w in workers} == {cells["second"][0], cells[other][0]}, described(listed)


def test_workers_exits_3_when_no_worker_came_within_wait(endpoint: str) -> None:
    result = run_tool("pirate-call", endpoint, "--workers", "--wait", "0.2")
    assert result.returncode == 3, described(result)
    assert result.stdout == "" and "NoWorkerError: no worker registered" in result.stderr, (
        described(result)
    )


def test_workers_takes_no_procedure_and_a_call_needs_one(endpoint: str) -> None:
    both = run_tool("pirate-call", endpoint, "ping", "--workers")
    assert both.returncode == 2 and "--workers calls nothing" in both.stderr, described(both)
    neither = run_tool("pirate-call", endpoint)
    assert neither.returncode == 2 and "PROCEDURE (or --workers)" in neither.stderr, described(
        neither
    )


def test_the_help_examples_say_which_run_outside_the_repository() -> None:
    worker_help = run_tool("pirate-worker", "--help").stdout
    assert f"pirate-worker {ANYWHERE_CLASS}" in worker_help, worker_help
    for line in worker_help.splitlines():
        if "demos.procedures:DemoProcedures" in line.split("#")[0]:
            assert "repository" in line, line  # the demo's class needs the repository's root
    call_help = run_tool("pirate-call", "--help").stdout
    assert "pirate-call tcp://127.0.0.1:5550 --workers" in call_help, call_help
    assert "started in the repository" in call_help, call_help


# ------------------------------------------------------------------------------------ messages


def test_an_endpoint_in_use_gives_its_reason_once(endpoint: str) -> None:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        result = run_call(endpoint, "ping", "--wait", "0")
    assert result.returncode == 2, described(result)
    line = result.stderr.strip()
    assert line == f"pirate-call: error: cannot bind {endpoint}: Address already in use", (
        described(result)
    )


@pytest.mark.parametrize(
    "source, line, error",
    [
        pytest.param("import os\n\nvalue = undefined_name\n", 3, "NameError", id="NameError"),
        pytest.param("import os\nx = (\n", 2, "SyntaxError", id="SyntaxError"),
        pytest.param("\nimport no_such_module_for_pirate_tests\n", 2, "ModuleNotFoundError",
                     id="an import of its own"),
    ],
)
def test_an_error_importing_the_users_module_names_its_file_and_line(
    tmp_path: Path, source: str, line: int, error: str
) -> None:
    module = tmp_path / "broken_procedures.py"
    module.write_text(source)
    result = run_tool("pirate-worker", "broken_procedures:Procedures", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, described(result)
    assert len(result.stderr.splitlines()) == 1, described(result)
    assert f"({module}, line {line}): {error}: " in result.stderr, described(result)


def test_a_short_key_in_the_environment_names_the_variable(endpoint: str) -> None:
    for argv in (
        [console_script("pirate-call"), endpoint, "ping", "--wait", "0"],
        [console_script("pirate-worker"), ANYWHERE_CLASS, "--connect", endpoint],
    ):
        result = subprocess.run(
            argv, env={**script_env(), "PIRATE_ACTORS_KEY": "abc"}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 2, described(result)
        assert "PIRATE_ACTORS_KEY" in result.stderr and "at least 16 bytes" in result.stderr, (
            described(result)
        )


def test_interrupting_the_wait_for_a_worker_says_no_worker_registered(
    processes: Processes, endpoint: str
) -> None:
    call = processes.call(endpoint, "ping", "--wait", "30", "-v")
    call.wait_for_line(r"waiting up to 30 s for a worker")  # logged once the handlers are set
    call.signal(signal.SIGINT)
    assert call.finish() == 130, call.describe()
    last = call.stderr.splitlines()[-1]
    assert "interrupted by SIGINT before any worker registered" in last, call.describe()
    assert "cancelled" not in call.stderr, call.describe()


def test_one_shot_calls_leave_one_info_registration_in_the_workers_log(
    processes: Processes, endpoint: str
) -> None:
    worker = processes.worker(endpoint)
    for _ in range(3):  # each one-shot call registers the worker, then says goodbye
        result = run_call(endpoint, "ping", "--wait", "20")
        assert result.returncode == 0, described(result)
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0, worker.describe()
    info = [line for line in worker.stderr.splitlines() if " INFO " in line]
    assert len([line for line in info if "registered with" in line]) == 1, worker.describe()
    assert not [line for line in info if "lost its client" in line], worker.describe()


# ------------------------------------------------------------------------------------ stopping


def test_calls_still_running_at_the_stop_timeout_are_abandoned_and_counted_in_the_log(
    processes: Processes, endpoint: str
) -> None:
    worker = processes.worker(endpoint, "--stop-timeout", "0.5")
    call = processes.call(endpoint, "slow_succeed", "--args", "30", "--timeout", "60")
    call.wait_for_line(r"^partial: sleeping 30 s")
    worker.signal(signal.SIGTERM)
    assert call.finish() == 5, call.describe()  # WorkerLost, well before the 30 s sleep ends
    assert "WorkerLost" in call.stderr, call.describe()
    assert worker.finish() == 0, worker.describe()
    assert re.search(
        r"WARNING pirate-worker: abandoned 1 call\(s\) still running after the 0.5 s stop timeout",
        worker.stderr,
    ), worker.describe()


def test_the_help_says_what_the_stop_timeout_does_to_running_calls() -> None:
    text = " ".join(run_tool("pirate-worker", "--help").stdout.split())
    assert "--stop-timeout S" in text, text
    assert "abandoned" in text and "WorkerLost" in text, text


def test_a_second_signal_still_says_goodbye_so_the_client_notices_at_once(
    processes: Processes, endpoint: str
) -> None:
    # The client would take heartbeat x liveness = 10 s to find a silent worker dead.
    with Client(endpoint) as client:
        worker = processes.worker(
            endpoint, "--heartbeat", "1", "--liveness", "10", "--stop-timeout", "60")
        client.wait_for_worker(timeout=20)
        future = client.options(timeout=60).submit("slow_succeed", 30)
        assert started_event(future).wait(20), "the call never started"
        worker.signal(signal.SIGINT)
        worker.wait_for_line(r"stopping: 1 running call")  # the graceful stop is under way
        wait_until(lambda: not client.workers(), 10, "the client saw the worker leave")
        worker.signal(signal.SIGINT)
        forced = time.monotonic()
        error = future.exception(timeout=20)
        noticed = time.monotonic() - forced
        assert isinstance(error, WorkerLost), repr(error)
        assert noticed < 4.0, f"the client noticed after {noticed:.1f} s:\n{worker.describe()}"
        assert worker.finish() == 1, worker.describe()
        assert "second signal: leaving at once; 1 running call(s) abandoned" in worker.stderr, (
            worker.describe()
        )
