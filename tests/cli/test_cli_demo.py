"""The seed's demo end to end (SPEC §9): demos/run_examples.sh against real workers; demo.sh."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from tests.cli.support import HERE, REPO, Processes, described, free_port, script_env

EXPECTED_COMMANDS = [
    "$ pirate-call {endpoint} ping",
    "$ pirate-call {endpoint} return_none",
    '$ pirate-call {endpoint} compare --args \'"apple", "orange"\'',
    '$ pirate-call {endpoint} compare --kwargs \'"str1":"apple", "str2":"orange"\'',
    "$ pirate-call {endpoint} slow_succeed --args 0.3 --timeout 10.3",
    "$ pirate-call {endpoint} slow_fail --args 0.3 --timeout 10.3",
    "$ pirate-call {endpoint} invalid_request",
]


def run_script(
    script: str, endpoint: str, env: dict[str, str], *more: str
) -> subprocess.CompletedProcess[str]:
    """Run one of the demo's shell scripts with short sleeps (PIRATE_DEMO_SECONDS=0.3)."""
    return subprocess.run(
        ["bash", str(REPO / "demos" / script), endpoint, *more],
        cwd=REPO,
        env={**env, "PIRATE_DEMO_SECONDS": "0.3"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=50,
    )


@pytest.mark.timeout(60)
def test_run_examples_passes_against_a_demo_worker_and_shows_every_call(demo_endpoint: str) -> None:
    result = run_script("run_examples.sh", demo_endpoint, script_env())
    assert result.returncode == 0, described(result)
    for command in EXPECTED_COMMANDS:
        assert command.format(endpoint=demo_endpoint) in result.stdout.splitlines(), described(
            result
        )
    assert "UNEXPECTED" not in result.stdout, described(result)
    assert "9 of 9 examples behaved as expected" in result.stdout, described(result)
    # the calls' own output is visible: results on stdout, partials and errors on stderr
    assert "[False, 2]" in result.stdout and "'pong'" in result.stdout, described(result)
    assert "partial: sleeping 0.3 s before succeeding" in result.stderr, described(result)
    assert "RuntimeError: slow_fail failed after 0.3 s" in result.stderr, described(result)


@pytest.mark.timeout(60)
def test_run_examples_fails_against_a_worker_that_answers_wrongly(
    processes: Processes, endpoint: str
) -> None:
    processes.worker(endpoint, target="scripted_procedures:WrongAnswers", cwd=HERE)
    result = run_script("run_examples.sh", endpoint, script_env())
    assert result.returncode == 1, described(result)
    assert "UNEXPECTED: wanted exit 0 and output ['pong'], got exit 0" in result.stdout, described(
        result
    )
    # the expected failures still count as expected: they fail with exit 1 here too
    assert "2 of 9 examples behaved as expected" in result.stdout, described(result)


@pytest.mark.timeout(60)
def test_demo_sh_starts_a_worker_runs_the_examples_and_the_events_and_stops_the_worker(endpoint: str) -> None:
    listen = f"tcp://127.0.0.1:{free_port()}"
    result = run_script("demo.sh", endpoint, script_env(), listen)
    assert result.returncode == 0, described(result)
    assert "9 of 9 examples behaved as expected" in result.stdout, described(result)
    assert f"$ pirate-call {endpoint} --workers" in result.stdout, described(result)
    assert " CAPACITY " in result.stdout, described(result)
    assert "[listener] tick 4" in result.stdout and "five ticks arrived" in result.stdout, described(result)
    assert "[worker]" in result.stderr and "pirate-worker: stopped" in result.stderr, described(
        result
    )
    assert "exited with" not in result.stderr, described(result)  # the worker exited 0 on SIGTERM


def readme_block(heading: str) -> str:
    """The first indented code block under the README heading ``heading``."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert heading in lines, f"README.md has no {heading!r} section any more: update this test"
    block: list[str] = []
    for line in lines[lines.index(heading) + 1 :]:
        if line.startswith("    "):
            block.append(line[4:])
        elif block:
            break
    assert block, f"README.md's {heading!r} section has no indented code block"
    return "\n".join(block)


def fresh_shell_env() -> dict[str, str]:
    """The environment of a new shell: no venv activated, no pirate-* command on PATH (as after
    the README's demo command, whose PATH change lasted for that command only)."""
    env = script_env()
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(
        folder for folder in env["PATH"].split(os.pathsep)
        if folder and not os.path.exists(os.path.join(folder, "pirate-worker"))
    )
    return env


@pytest.mark.timeout(60)
def test_the_readmes_command_line_quickstart_runs_as_written(endpoint: str) -> None:
    if not (REPO / ".venv" / "bin" / "pirate-worker").exists():
        pytest.skip("the README's commands assume the demo command's .venv at the repository's root")
    commands = readme_block("## Quickstart: the command line")
    assert "pirate-worker" in commands and "pirate-call" in commands, commands
    script = "set -e\n" + commands.replace("tcp://127.0.0.1:5550", endpoint) + "\nwait %1\n"
    env = fresh_shell_env()
    assert subprocess.run(
        ["bash", "-c", "command -v pirate-worker"], env=env, capture_output=True
    ).returncode != 0, "pirate-worker is still on the PATH of the 'fresh' shell"
    shell = subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: nothing it started outlives the test
    )
    try:
        stdout, stderr = shell.communicate(timeout=50)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGKILL)  # a worker left behind by a failed command
        shell.wait()
    result = subprocess.CompletedProcess(shell.args, shell.returncode, stdout, stderr)
    assert result.returncode == 0, described(result)  # `wait %1`: the worker exited 0 on SIGTERM
    assert "'pong'" in stdout.splitlines() and "[False, 2]" in stdout.splitlines(), described(
        result
    )
    # --workers: one worker of the default pool size, with the capacity the README explains
    (row,) = [line.split() for line in stdout.splitlines() if "slow_succeed" in line]
    assert row[2:4] == ["8", "0"], described(result)
