"""Usage and set-up errors: exit 2, one line on stderr, no traceback; nothing evaluated or sent."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.cli.support import Processes, run_call, run_tool


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2 and a single stderr line containing every fragment, nothing on stdout."""
    described = (
        f"exit {result.returncode}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
    )
    assert result.returncode == 2, described
    assert "Traceback" not in result.stderr, described
    lines = result.stderr.splitlines()
    assert len(lines) == 1, described
    for fragment in fragments:
        assert fragment in lines[0], described
    assert result.stdout == "", described


CODE = "__import__('os').system('touch {marker}')"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "option, template",
    [
        ("--args", CODE),
        ("--args", "[" + CODE + "]"),
        ("--args", '"a", ' + CODE),
        ("--kwargs", '"str1": ' + CODE),
        ("--kwargs", "{'str1': " + CODE + "}"),
        ("--args", "exec(\"open('{marker}', 'w')\")"),
    ],
)
def test_python_code_as_an_argument_is_refused_with_exit_2_and_never_runs(
    endpoint: str, tmp_path: Path, option: str, template: str
) -> None:
    marker = tmp_path / "pwned"
    # --wait 0: had the argument been accepted, the call would end with exit 3 (no worker), not 2.
    result = run_call(
        endpoint, "compare", option, template.replace("{marker}", str(marker)), "--wait", "0"
    )
    assert_usage_error(result, option)
    assert not marker.exists()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "option, text",
    [
        ("--args", '"apple", orange'),
        ("--args", "[1,"),
        ("--args", "apple"),
        ("--kwargs", '"str1" "apple"'),
        ("--kwargs", "[1, 2]"),
        ("--kwargs", "str1=apple"),
    ],
)
def test_arguments_that_are_not_json_are_a_usage_error(
    endpoint: str, option: str, text: str
) -> None:
    assert_usage_error(run_call(endpoint, "compare", option, text, "--wait", "0"), option)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--count", "0"], "--count"),
        (["--count", "-2"], "--count"),
        (["--count", "many"], "--count"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "nan"], "--timeout"),
        (["--wait", "-1"], "--wait"),
        (["-v", "-q"], "not allowed with"),
        (["--no-such-option"], "--no-such-option"),
    ],
)
def test_bad_pirate_call_options_are_one_line_usage_errors(
    endpoint: str, options: list[str], fragment: str
) -> None:
    assert_usage_error(run_call(endpoint, "ping", "--wait", "0", *options), fragment)


@pytest.mark.timeout(60)
def test_pirate_call_without_a_procedure_is_a_usage_error(endpoint: str) -> None:
    assert_usage_error(run_tool("pirate-call", endpoint), "PROCEDURE")


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "target, fragment",
    [
        (
            "no_such_module_for_pirate_tests:Thing",
            "cannot import module 'no_such_module_for_pirate_tests'",
        ),
        ("demos.procedures:NoSuchClass", "has no attribute 'NoSuchClass'"),
        ("demos.procedures:time", "not a subclass of pirate_actors.ProcedureActor"),
        ("json:JSONDecoder", "not a subclass of pirate_actors.ProcedureActor"),
        ("demos.procedures:DemoProcedures.ping", "not a subclass of pirate_actors.ProcedureActor"),
        ("demos.procedures", "MODULE:CLASS"),
        (":DemoProcedures", "MODULE:CLASS"),
    ],
)
def test_a_bad_module_class_makes_pirate_worker_exit_2_with_one_line(
    target: str, fragment: str
) -> None:
    assert_usage_error(
        run_tool("pirate-worker", target, "--connect", "tcp://127.0.0.1:9"), fragment
    )


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "options, fragment",
    [
        (["--pool-size", "0"], "--pool-size"),
        (["--prefetch", "-1"], "--prefetch"),
        (["--heartbeat", "0"], "--heartbeat"),
        (["--liveness", "0"], "--liveness"),
        (["--liveness", "1"], "--liveness"),
        (["--result-ttl", "-1"], "--result-ttl"),
        (["--result-cache-size", "-1"], "--result-cache-size"),
        (["--event-buffer", "-1"], "--event-buffer"),
        (["--connect", "not-an-endpoint"], "not-an-endpoint"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_pirate_worker_options_are_one_line_usage_errors(
    options: list[str], fragment: str
) -> None:
    assert_usage_error(
        run_tool("pirate-worker", "demos.procedures:DemoProcedures", *options), fragment
    )


@pytest.mark.timeout(60)
def test_an_unreadable_key_file_is_a_usage_error_for_both_tools(
    endpoint: str, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-key")
    assert_usage_error(run_call(endpoint, "ping", "--key-file", missing, "--wait", "0"), missing)
    assert_usage_error(
        run_tool(
            "pirate-worker",
            "demos.procedures:DemoProcedures",
            "--connect",
            endpoint,
            "--key-file",
            missing,
        ),
        missing,
    )


@pytest.mark.timeout(60)
def test_a_key_shorter_than_16_bytes_is_a_usage_error_for_both_tools(
    endpoint: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "short.key"
    key_file.write_bytes(b"fifteen-bytes!!\n")  # 15 bytes once the newline is stripped
    assert_usage_error(run_call(endpoint, "ping", "--key-file", str(key_file), "--wait", "0"), "16")
    assert_usage_error(
        run_tool(
            "pirate-worker",
            "demos.procedures:DemoProcedures",
            "--connect",
            endpoint,
            "--key-file",
            str(key_file),
        ),
        "16",
    )


@pytest.mark.timeout(60)
def test_a_non_loopback_endpoint_without_a_key_is_refused_by_both_tools() -> None:
    # Refused before binding: the endpoint is never opened, so this test exposes nothing.
    assert_usage_error(run_call("tcp://0.0.0.0:5550", "ping", "--wait", "0"), "--insecure")
    assert_usage_error(
        run_tool(
            "pirate-worker", "demos.procedures:DemoProcedures", "--connect", "tcp://192.0.2.1:5550"
        ),
        "--insecure",
    )


@pytest.mark.timeout(60)
def test_insecure_lets_a_worker_connect_to_a_non_loopback_endpoint_without_a_key(
    processes: Processes,
) -> None:
    # 192.0.2.1 is a documentation address: the worker only tries to connect out; nobody listens.
    worker = processes.worker("tcp://192.0.2.1:5550", "--insecure")
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0, worker.describe()


@pytest.mark.timeout(60)
def test_an_endpoint_already_in_use_is_a_usage_error(endpoint: str) -> None:
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind((host, int(port)))
        squatter.listen()
        assert_usage_error(run_call(endpoint, "ping", "--wait", "0"), "cannot bind", endpoint)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("tool", ["pirate-call", "pirate-worker"])
def test_help_lists_the_options_and_exits_0(tool: str) -> None:
    result = run_tool(tool, "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--key-file", "--insecure", "-v", "-q"):
        assert option in result.stdout
    specific = (
        ["--args", "--kwargs", "--count", "--timeout", "--wait", "--json"]
        if tool == "pirate-call"
        else ["--connect", "--pool-size", "--name", "--heartbeat", "--liveness"]
    )
    for option in specific:
        assert option in result.stdout
