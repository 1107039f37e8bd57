"""Hosts made of network namespaces: one for the client, one per host, a veth pair between the
client's namespace and each host's, and worker processes started inside the hosts.

Every name the lab creates starts with ``PREFIX`` followed by the driver's pid (``palab1234-c``,
``palab1234-h0``), so two labs can run side by side, and a namespace whose driver is gone is a
leftover of a crashed run: :func:`remove_leftovers` kills what still runs in it and deletes it.
Addresses exist only inside the lab's namespaces (``10.77.N.0/24`` for host N-1: ``.1`` on the
client's side, ``.2`` on the host's), so the machine's own network is never touched. The veths
are created directly inside the namespaces; deleting a host's namespace deletes its veth pair.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

PREFIX = "palab"
"""Every namespace of the lab is called ``PREFIX<driver pid>-...``."""

SUBNET = "10.77"
"""Host N (0-based) is ``10.77.(N+1).2``; the client reaches it from ``10.77.(N+1).1``."""

_CLONE_NEWNET = 0x40000000
_NETNS_DIR = Path("/var/run/netns")


class LabUnavailable(Exception):
    """Namespaces cannot be made here (not root, no ``ip``, no permission): the lab skips."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None if it can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"{PREFIX}{os.getpid()}-probe"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"network namespaces are not allowed here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _namespaces() -> list[str]:
    listed = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def _driver_alive(pid: int) -> bool:
    """Whether ``pid`` is a running lab driver (not merely a process that reused the pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"bench.lab" in cmdline or b"bench/lab" in cmdline


def _kill_inside(namespace: str) -> None:
    """SIGKILL every process still in ``namespace`` and wait (up to 5 s) until they are gone."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        pids = [int(p) for p in _ip("netns", "pids", namespace, check=False).stdout.split()]
        pids = [p for p in pids if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


def _delete(namespace: str) -> None:
    _kill_inside(namespace)
    _ip("netns", "del", namespace, check=False)


def remove_leftovers() -> list[str]:
    """Delete the namespaces (and kill the processes in them) of lab runs whose driver is gone."""
    removed = []
    for namespace in _namespaces():
        match = re.fullmatch(rf"{PREFIX}(\d+)-\w+", namespace)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and _driver_alive(pid):
            continue  # another lab is running
        _delete(namespace)
        removed.append(namespace)
    return removed


def enter_namespace(namespace: str) -> None:
    """Move the calling thread (call it from the main thread before any other starts, so every
    later thread and child process inherits it) into ``namespace``."""
    fd = os.open(_NETNS_DIR / namespace, os.O_RDONLY)
    try:
        setns = getattr(os, "setns", None)
        if setns is not None:  # Python 3.12+
            setns(fd, _CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {namespace}: {os.strerror(errno)}")
    finally:
        os.close(fd)


class Network:
    """The client's namespace and ``hosts`` host namespaces, each linked to the client's by a
    veth pair. ``close()`` kills every process started in them and deletes them all."""

    def __init__(self, hosts: int, logs: Path) -> None:
        self.tag = f"{PREFIX}{os.getpid()}"
        self.client_ns = f"{self.tag}-c"
        self.host_ns = [f"{self.tag}-h{i}" for i in range(hosts)]
        self.logs = logs
        self.processes: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[bytes]] = []
        self._made: list[str] = []

    @staticmethod
    def client_address(host: int) -> str:
        """The client's address as host ``host`` reaches it."""
        return f"{SUBNET}.{host + 1}.1"

    @staticmethod
    def host_address(host: int) -> str:
        return f"{SUBNET}.{host + 1}.2"

    @staticmethod
    def link(host: int) -> str:
        """The client-side end of host ``host``'s veth pair (in the client's namespace)."""
        return f"h{host}"

    def open(self) -> Network:
        for namespace in (self.client_ns, *self.host_ns):
            _ip("netns", "add", namespace)
            self._made.append(namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
        for host, namespace in enumerate(self.host_ns):
            link = self.link(host)
            _ip("-n", self.client_ns, "link", "add", link, "type", "veth",
                "peer", "name", "eth0", "netns", namespace)
            _ip("-n", self.client_ns, "addr", "add", f"{self.client_address(host)}/24", "dev", link)
            _ip("-n", namespace, "addr", "add", f"{self.host_address(host)}/24", "dev", "eth0")
            _ip("-n", self.client_ns, "link", "set", link, "up")
            _ip("-n", namespace, "link", "set", "eth0", "up")
        return self

    def cut(self, host: int) -> None:
        """Cut host ``host`` off: its link goes down on the client's side, so the host's packets
        vanish (its end has no carrier) and the client has no route to it."""
        _ip("-n", self.client_ns, "link", "set", self.link(host), "down")

    def heal(self, host: int) -> None:
        _ip("-n", self.client_ns, "link", "set", self.link(host), "up")

    def start(self, host: int, argv: Sequence[str], log_name: str, cwd: Path) -> subprocess.Popen[bytes]:
        """``argv`` run inside host ``host`` (``ip netns exec`` execs it: the Popen's pid is the
        program's), in a session of its own so that a Ctrl-C reaches only the driver."""
        log = open(self.logs / f"{log_name}.log", "wb")  # noqa: SIM115 - closed by close()
        self._files.append(log)
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.host_ns[host], *argv],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        """Kill every process started here, then delete every namespace; safe to call twice."""
        for process in self.processes:
            if process.poll() is None:
                try:
                    process.kill()
                except ProcessLookupError:
                    pass
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.processes.clear()
        for namespace in reversed(self._made):
            # The driver itself may be in the client's: it then lives on until the driver exits.
            _delete(namespace)
        self._made.clear()
        for file in self._files:
            file.close()
        self._files.clear()
