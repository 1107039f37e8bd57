"""pirate-call against a real pirate-worker: results, the seed's argument forms, --json, --count,
--wait, keys, and the exit codes 0, 1, 3 and 4 (SPEC §8)."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from tests.cli.support import HERE, SUMMARY, Processes, described, run_call, script_env


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "procedure, options, printed",
    [
        ("ping", [], "'pong'"),
        ("return_none", [], "None"),
        # the seed's bare forms
        ("compare", ["--args", '"apple", "orange"'], "[False, 2]"),
        ("compare", ["--kwargs", '"str1":"apple", "str2":"orange"'], "[False, 2]"),
        ("compare", ["--args", "5", "--kwargs", '"str2": 5'], "[True, 1]"),
        # plain JSON
        ("compare", ["--args", '["apple", "apple"]'], "[True, 1]"),
        ("compare", ["--kwargs", '{"str1": "apple", "str2": "apple"}'], "[True, 1]"),
        ("compare", ["--args", '"apple"', "--kwargs", '{"str2": "pear"}'], "[False, 2]"),
        # one list argument, and a list that is the argument list
        ("compare", ["--args", "[[1, 2]]", "--kwargs", '"str2": [1, 2]'], "[True, 1]"),
        ("compare", ["--args", "[[1, 2], [1, 2]]"], "[True, 1]"),
    ],
)
def test_a_call_prints_the_repr_of_its_result_and_exits_0(
    demo_endpoint: str, procedure: str, options: list[str], printed: str
) -> None:
    result = run_call(demo_endpoint, procedure, *options)
    assert (result.returncode, result.stdout) == (0, printed + "\n"), described(result)
    assert "partial: started" in result.stderr.splitlines(), described(result)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "procedure, options, printed",
    [
        ("ping", [], '"pong"'),
        ("return_none", [], "null"),
        ("compare", ["--args", '"apple", "orange"'], "[false, 2]"),
        ("slow_succeed", ["--args", "0"], "true"),
    ],
)
def test_json_prints_results_as_json(
    demo_endpoint: str, procedure: str, options: list[str], printed: str
) -> None:
    result = run_call(demo_endpoint, procedure, "--json", *options)
    assert (result.returncode, result.stdout) == (0, printed + "\n"), described(result)


@pytest.mark.timeout(60)
def test_partials_go_to_stderr_in_order_before_the_result(demo_endpoint: str) -> None:
    result = run_call(demo_endpoint, "slow_succeed", "--args", "0.1")
    assert (result.returncode, result.stdout) == (0, "True\n"), described(result)
    partials = [line for line in result.stderr.splitlines() if line.startswith("partial: ")]
    assert partials == ["partial: started", "partial: sleeping 0.1 s before succeeding"], described(
        result
    )


@pytest.mark.timeout(60)
def test_quiet_hides_partials_but_not_the_result(demo_endpoint: str) -> None:
    result = run_call(demo_endpoint, "slow_succeed", "--args", "0", "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "True\n", ""), described(result)


@pytest.mark.timeout(60)
def test_a_procedure_that_raises_exits_1_with_type_message_and_remote_traceback(
    demo_endpoint: str,
) -> None:
    result = run_call(demo_endpoint, "slow_fail", "--args", "0")
    assert (result.returncode, result.stdout) == (1, ""), described(result)
    assert "Traceback (most recent call last):" in result.stderr, described(result)
    assert "in slow_fail" in result.stderr, described(
        result
    )  # the remote frame, from demos/procedures.py
    last = result.stderr.splitlines()[-1]
    assert (
        last == "pirate-call: error: RuntimeError: slow_fail failed after 0 s, as it was asked to"
    ), described(result)


@pytest.mark.timeout(60)
def test_an_unknown_procedure_exits_1_naming_it(demo_endpoint: str) -> None:
    result = run_call(demo_endpoint, "invalid_request")
    assert (result.returncode, result.stdout) == (1, ""), described(result)
    assert re.search(r"pirate-call: error: UnknownProcedure: .*invalid_request", result.stderr), (
        described(result)
    )


@pytest.mark.timeout(60)
def test_wrong_arguments_for_a_procedure_exit_1_with_the_remote_type_error(
    demo_endpoint: str,
) -> None:
    result = run_call(demo_endpoint, "compare", "--args", '"only one"')
    assert (result.returncode, result.stdout) == (1, ""), described(result)
    assert "pirate-call: error: TypeError: " in result.stderr, described(result)


@pytest.mark.timeout(60)
def test_no_worker_within_wait_exits_3(endpoint: str) -> None:
    result = run_call(endpoint, "ping", "--wait", "0.3")
    assert (result.returncode, result.stdout) == (3, ""), described(result)
    assert "NoWorkerError" in result.stderr, described(result)


@pytest.mark.timeout(60)
def test_a_call_slower_than_its_timeout_exits_4_and_the_worker_serves_on(
    demo_endpoint: str,
) -> None:
    result = run_call(demo_endpoint, "slow_succeed", "--args", "3", "--timeout", "0.5")
    assert (result.returncode, result.stdout) == (4, ""), described(result)
    assert "CallTimeout" in result.stderr, described(result)
    again = run_call(demo_endpoint, "ping")
    assert (again.returncode, again.stdout) == (0, "'pong'\n"), described(again)


@pytest.mark.timeout(60)
def test_count_makes_that_many_calls_and_ends_with_a_summary(demo_endpoint: str) -> None:
    result = run_call(demo_endpoint, "ping", "--count", "25", "-q")
    assert (result.returncode, result.stdout) == (0, "'pong'\n" * 25), described(result)
    summary = SUMMARY.search(result.stderr)
    assert summary is not None and summary.group(1, 2) == ("25", "0"), described(result)
    assert float(summary.group(3)) > 0, described(result)


@pytest.mark.timeout(60)
def test_a_single_call_prints_no_summary(demo_endpoint: str) -> None:
    result = run_call(demo_endpoint, "ping")
    assert result.returncode == 0 and SUMMARY.search(result.stderr) is None, described(result)


@pytest.mark.timeout(60)
def test_count_with_failing_calls_counts_the_errors_and_exits_1(demo_endpoint: str) -> None:
    result = run_call(demo_endpoint, "slow_fail", "--args", "0", "--count", "3", "-q")
    assert (result.returncode, result.stdout) == (1, ""), described(result)
    summary = SUMMARY.search(result.stderr)
    assert summary is not None and summary.group(1, 2) == ("3", "3"), described(result)


@pytest.mark.timeout(60)
def test_with_several_calls_the_exit_code_is_that_of_the_last_failed_one(
    processes: Processes, endpoint: str
) -> None:
    # Served from this folder as the current directory: proves MODULE is imported from there too.
    worker = processes.worker(
        endpoint, "--pool-size", "1", target="scripted_procedures:Scripted", cwd=HERE
    )
    # step 1 raises (exit 1), step 2 hangs past --timeout (exit 4), step 3 succeeds (exit 0).
    result = run_call(endpoint, "step", "--args", "3", "--count", "3", "--timeout", "1", "-q")
    worker.kill()  # its retired actor may sleep on: no need to wait for it
    assert (result.returncode, result.stdout) == (4, "'ok'\n"), described(result)
    assert "ValueError: the first step fails" in result.stderr, described(result)
    assert "CallTimeout" in result.stderr, described(result)
    summary = SUMMARY.search(result.stderr)
    assert summary is not None and summary.group(1, 2) == ("3", "2"), described(result)


@pytest.mark.timeout(60)
def test_a_result_json_cannot_express_exits_1_with_json_and_prints_its_repr_without(
    processes: Processes, endpoint: str
) -> None:
    processes.worker(endpoint, target="scripted_procedures:Scripted", cwd=HERE)
    as_json = run_call(endpoint, "a_set", "--json", "-q")
    assert (as_json.returncode, as_json.stdout) == (1, ""), described(as_json)
    assert "cannot be printed as JSON" in as_json.stderr, described(as_json)
    as_repr = run_call(endpoint, "a_set", "-q")
    assert (as_repr.returncode, as_repr.stdout) == (0, "{1, 2}\n"), described(as_repr)


@pytest.mark.timeout(60)
def test_a_reader_that_stops_reading_ends_an_endless_count_cleanly(demo_endpoint: str) -> None:
    result = subprocess.run(
        [
            "bash",
            "-c",
            'set -o pipefail; pirate-call "$0" ping --count -1 -q | head -3',
            demo_endpoint,
        ],
        env=script_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (result.returncode, result.stdout) == (0, "'pong'\n" * 3), described(result)
    assert SUMMARY.search(result.stderr) is not None, described(result)
    assert "Error" not in result.stderr, described(result)  # no BrokenPipeError, no traceback


@pytest.mark.timeout(60)
def test_wait_lets_pirate_call_bind_first_and_a_worker_come_later(
    processes: Processes, endpoint: str
) -> None:
    call = processes.call(endpoint, "ping", "--wait", "20", "-v")
    call.wait_for_line(r"waiting up to 20 s for a worker")  # bound, and no worker anywhere yet
    processes.worker(endpoint, wait=False)
    assert call.finish() == 0, call.describe()
    assert call.stdout == "'pong'", call.describe()


@pytest.mark.timeout(60)
def test_a_worker_logs_the_procedures_it_serves_and_each_registration(
    processes: Processes, endpoint: str
) -> None:
    # -v: after a client that closed normally, the next registration is a debug line
    # (test_cli_operations.py checks what is INFO)
    worker = processes.worker(endpoint, "-v")
    names = ("compare", "ping", "return_none", "slow_fail", "slow_succeed")
    worker.wait_for_line("".join(f"(?=.*\\b{name}\\b)" for name in names))  # one line, all five
    for _ in range(2):
        assert run_call(endpoint, "ping").returncode == 0
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0, worker.describe()
    assert len(re.findall(r"registered with", worker.stderr)) >= 2, worker.describe()


@pytest.mark.timeout(60)
def test_a_shared_key_file_lets_calls_through_and_trailing_newlines_do_not_count(
    processes: Processes, endpoint: str, tmp_path: Path
) -> None:
    key = b"0123456789abcdef-a-test-key"
    (tmp_path / "worker.key").write_bytes(key + b"\r\n")
    (tmp_path / "client.key").write_bytes(key)
    processes.worker(endpoint, "--key-file", str(tmp_path / "worker.key"))
    result = run_call(endpoint, "ping", "--key-file", str(tmp_path / "client.key"))
    assert (result.returncode, result.stdout) == (0, "'pong'\n"), described(result)


@pytest.mark.timeout(60)
def test_a_different_key_keeps_the_worker_out(
    processes: Processes, endpoint: str, tmp_path: Path
) -> None:
    (tmp_path / "worker.key").write_bytes(b"0123456789abcdef-the-workers-key")
    (tmp_path / "client.key").write_bytes(b"0123456789abcdef-another-key")
    processes.worker(endpoint, "--key-file", str(tmp_path / "worker.key"))
    result = run_call(endpoint, "ping", "--key-file", str(tmp_path / "client.key"), "--wait", "1.5")
    assert (result.returncode, result.stdout) == (3, ""), described(result)
