"""Helpers for the command-line tests: the installed console scripts, run as real processes.

Every test talks to real processes over real sockets on 127.0.0.1 and synchronises on what they
print (a log line, a partial message, a result), never on a fixed sleep.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DEMO_CLASS = "demos.procedures:DemoProcedures"
WORKER_STARTED = re.compile(r"pirate-worker: started ")
LINE_TIMEOUT = 20.0  # generous: the machine may be busy; a healthy run sees lines in well under 1 s


def console_script(name: str) -> str:
    """The installed console script ``name``: beside this interpreter, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `pip install -e .` in the repository first")
    return found


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel picks for outgoing connections (Linux), else the IANA range."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 49152, 65535


_used_ports: set[int] = set()


def free_port() -> int:
    """A TCP port free on 127.0.0.1, outside the ephemeral range and never handed out twice.

    Outside the ephemeral range because a worker keeps reconnecting to a port nobody listens on, and
    a connect to an ephemeral port can pick that very port as its source and connect to itself.
    """
    low, high = _ephemeral_range()
    if low > 21000:
        candidates = range(20000, low)
    elif high < 64000:
        candidates = range(high + 1, 65536)
    else:  # everything is ephemeral here: let the kernel choose
        candidates = range(0, 1)
    for _ in range(200):
        port = random.choice(candidates)
        if port in _used_ports:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(probe.getsockname()[1])
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port found")


def script_env() -> dict[str, str]:
    """The scripts' environment: no key from the caller's, the scripts' folder first on PATH."""
    env = dict(os.environ)
    env.pop("PIRATE_ACTORS_KEY", None)
    env["PATH"] = f"{Path(console_script('pirate-call')).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


class Process:
    """A running console script whose stdout and stderr lines are collected by reader threads."""

    def __init__(self, argv: list[str], cwd: Path = REPO) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            cwd=cwd,
            env=script_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._closed: set[str] = set()
        self._changed = threading.Condition()
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=("stdout", self.popen.stdout), daemon=True),
            threading.Thread(target=self._read, args=("stderr", self.popen.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines[name].append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._closed.add(name)
            self._changed.notify_all()

    @property
    def stdout(self) -> str:
        with self._changed:
            return "\n".join(self.lines["stdout"])

    @property
    def stderr(self) -> str:
        with self._changed:
            return "\n".join(self.lines["stderr"])

    def wait_for_line(
        self, pattern: str | re.Pattern[str], stream: str = "stderr", timeout: float = LINE_TIMEOUT
    ) -> str:
        """The first line of ``stream`` matching ``pattern``; fails showing output if none comes."""
        regex = re.compile(pattern)
        with self._changed:
            ended = self._changed.wait_for(
                lambda: (
                    any(regex.search(line) for line in self.lines[stream]) or stream in self._closed
                ),
                timeout,
            )
            matches = [line for line in self.lines[stream] if regex.search(line)]
        if not matches:
            state = "closed its " + stream if ended else "timed out"
            pytest.fail(
                f"{self.argv[0]} {state} before a line matching {regex.pattern!r} on {stream}:\n"
                + self.describe()
            )
        return matches[0]

    def finish(self, timeout: float = LINE_TIMEOUT) -> int:
        """Wait for the process to end and its output to be read; its exit code."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.argv[0]} did not exit within {timeout} s:\n{self.describe()}")
        for reader in self._readers:
            reader.join(timeout)
        return code

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        """End the process if it still runs (teardown)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def describe(self) -> str:
        return f"argv: {self.argv}\n--- stdout:\n{self.stdout}\n--- stderr:\n{self.stderr}"


class Processes:
    """Starts console scripts for one test and ends whatever is still running afterwards."""

    def __init__(self) -> None:
        self.started: list[Process] = []

    def worker(
        self,
        endpoint: str,
        *options: str,
        target: str = DEMO_CLASS,
        cwd: Path = REPO,
        wait: bool = True,
    ) -> Process:
        """Start ``pirate-worker target --connect endpoint``; by default wait until it started."""
        process = self.start(
            [console_script("pirate-worker"), target, "--connect", endpoint, *options], cwd=cwd
        )
        if wait:
            process.wait_for_line(WORKER_STARTED)
        return process

    def call(self, endpoint: str, procedure: str, *options: str) -> Process:
        """Start ``pirate-call endpoint procedure options...`` without waiting for it."""
        return self.start([console_script("pirate-call"), endpoint, procedure, *options])

    def start(self, argv: list[str], cwd: Path = REPO) -> Process:
        process = Process(argv, cwd=cwd)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in self.started:
            if process.popen.poll() is None:
                process.signal(signal.SIGTERM)
        for process in self.started:
            try:
                process.popen.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def run_tool(
    tool: str, *argv: str, cwd: Path = REPO, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run the console script ``tool`` with ``argv`` to its end and return what it did."""
    return subprocess.run(
        [console_script(tool), *argv],
        cwd=cwd,
        env=script_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_call(
    endpoint: str, procedure: str, *options: str, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run ``pirate-call endpoint procedure options...`` to its end and return what it did."""
    return run_tool("pirate-call", endpoint, procedure, *options, timeout=timeout)


SUMMARY = re.compile(r"^(\d+) calls, (\d+) errors, (\d+(?:\.\d+)?) calls/s$", re.MULTILINE)


def described(result: subprocess.CompletedProcess[str]) -> str:
    """A finished process's exit code and output, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
