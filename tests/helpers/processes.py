"""Child processes for fault tests: started from the repository root with this interpreter,
read line by line on stdout, logged to a file, and always reaped (SIGCONT, SIGKILL) at the end."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ROOT", "ChildProcess"]


class ChildProcess:
    """``python -m MODULE ARGS...`` with stdin and stdout as pipes and stderr in ``log_path``."""

    def __init__(self, module: str, *args: str, log_path: Path) -> None:
        env = dict(os.environ)
        env.pop("PIRATE_ACTORS_KEY", None)
        env["PYTHONUNBUFFERED"] = "1"
        self.module = module
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed by close()
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            text=True,
        )
        self.pid = self.popen.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name=f"stdout of {module}", daemon=True).start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        try:
            for line in self.popen.stdout:
                self._lines.put(line.rstrip("\n"))
        except (OSError, ValueError):
            pass  # closed by close()
        finally:
            self._lines.put(None)

    def expect(self, prefix: str, timeout: float = 20.0) -> str:
        """The next stdout line that starts with ``prefix``; fails on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(
                    f"{self}: no line starting with {prefix!r} within {timeout:g} s\n{self.log()}"
                ) from None
            if line is None:
                self._lines.put(None)
                code = self.popen.wait(5)
                raise AssertionError(
                    f"{self}: exited ({code}) before printing {prefix!r}\n{self.log()}"
                )
            if line.startswith(prefix):
                return line

    def tell(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def send_signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap (so its sockets are closed when this returns)."""
        self.popen.kill()
        self.popen.wait(10)

    def log(self) -> str:
        self._log.flush()
        try:
            return f"--- stderr of {self.module} ---\n" + self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGCONT)
                self.popen.kill()
            except ProcessLookupError:
                pass
            self.popen.wait(10)
        for pipe in (self.popen.stdin, self.popen.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        self._log.close()

    def __repr__(self) -> str:
        return f"<{self.module} pid {self.pid}>"
