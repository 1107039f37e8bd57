"""The README's commands and examples run, so they cannot rot."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.timeout(60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_readme_opens_with_the_demo_and_test_commands_and_ci_runs_the_test_one() -> None:
    commands = re.findall(r"^    (python3 -m venv .*)$", README, re.MULTILINE)
    assert len(commands) == 2 and "demos/demo.sh" in commands[0] and "pytest" in commands[1]
    assert README.index(commands[1]) < 400
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_the_library_quickstart_runs() -> None:
    code = re.search(r"```python\n(.*?)```", README, re.DOTALL)
    assert code is not None
    program = code.group(1).replace("5550", str(_free_port()))
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stderr
    assert "partial: started\npartial: halfway?" in result.stdout
    assert "WorkerInfo(" in result.stdout


def _section_code(heading: str) -> str:
    """The first ```python block after ``heading``, with its ports made free."""
    code = re.search(re.escape(heading) + r".*?```python\n(.*?)```", README, re.DOTALL)
    assert code is not None, heading
    program = code.group(1)
    for port in set(re.findall(r"127\.0\.0\.1:(\d{4})", program)):
        program = program.replace(port, str(_free_port()))
    return program


def test_the_asyncio_quickstart_runs() -> None:
    program = _section_code("## asyncio")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "True", "partial: started", "partial: halfway?", "result: True", str([True] * 8)]


def test_the_executor_quickstart_runs() -> None:
    program = _section_code("## Remote functions")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=50)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str([x * x for x in range(10)]), "1024"]
