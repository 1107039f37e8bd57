"""Fixtures for fault tests: real worker and client processes, clients and workers in this
process, all on free loopback ports, all cleaned up at teardown whatever happened."""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pirate_actors import Client, Worker
from tests.helpers import FAST
from tests.helpers.procedures import FaultProcedures, close_gates
from tests.helpers.processes import ChildProcess


def pytest_configure(config: pytest.Config) -> None:
    # Until setup.cfg registers it: "slow: takes a minute or more; deselect with -m 'not slow'".
    config.addinivalue_line("markers", "slow: takes a minute or more; deselect with -m 'not slow'")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("PIRATE_ACTORS_KEY", raising=False)
    yield
    close_gates()


@dataclass
class WorkerProcess:
    process: ChildProcess
    pid: int
    id: str


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ChildProcess]]:
    """``spawn(module, *args, name=...)``: a child process, killed and reaped at teardown."""
    children: list[ChildProcess] = []

    def start(module: str, *args: str, name: str = "child") -> ChildProcess:
        child = ChildProcess(module, *args, log_path=tmp_path / f"{name}-{len(children)}.log")
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


@pytest.fixture
def spawn_worker(spawn: Callable[..., ChildProcess]) -> Callable[..., WorkerProcess]:
    """``spawn_worker(endpoint, name, heartbeat=0.2, liveness=3, pool_size=2, ...)``: a worker
    process serving FaultProcedures, returned once it has started (not yet registered). Options
    are ``tests.helpers.worker_process``'s; ``True`` passes a flag (``watch=True``)."""

    def start(endpoint: str, name: str, **options: Any) -> WorkerProcess:
        settings = {**FAST, "pool_size": 2, **options}
        args = [endpoint, "--name", name]
        for option, value in settings.items():
            flag = f"--{option.replace('_', '-')}"
            if value is True:
                args.append(flag)
            elif value is not None and value is not False:
                args += [flag, str(value)]
        child = spawn("tests.helpers.worker_process", *args, name=name)
        _, pid, worker_id = child.expect("READY ").split()
        return WorkerProcess(child, int(pid), worker_id)

    return start


@pytest.fixture
def make_client() -> Iterator[Callable[..., Client]]:
    """``make_client(bind="tcp://127.0.0.1:*", **options)``: a started client, closed at teardown."""
    clients: list[Client] = []

    def start(bind: str = "tcp://127.0.0.1:*", **options: Any) -> Client:
        client = Client(bind, **options)
        clients.append(client)
        return client.start()

    yield start
    for client in clients:
        client.close()


@pytest.fixture
def make_worker() -> Iterator[Callable[..., Worker]]:
    """``make_worker(endpoint, **options)``: a started FaultProcedures worker in this process."""
    workers: list[Worker] = []

    def start(endpoint: str, **options: Any) -> Worker:
        worker = Worker(FaultProcedures, endpoint, **options)
        workers.append(worker)
        return worker.start()

    yield start
    close_gates()
    for worker in workers:
        worker.stop(timeout=0.5)


class _Bomb:
    """Unpickling this opens (so creates) ``path`` for writing: proof that something unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


@dataclass
class PickleBomb:
    path: Path
    """The file that appears if the payload is ever unpickled."""
    payload: bytes
    """A pickle that creates ``path`` when loaded."""
    call: bytes
    """A REQUEST body ``(procedure, args, kwargs)`` that creates ``path`` when loaded."""

    def assert_never_unpickled(self) -> None:
        assert not self.path.exists(), f"a pickle from the network was unpickled: {self.path} exists"


@pytest.fixture
def bomb(tmp_path: Path) -> PickleBomb:
    path = tmp_path / "unpickled-it"
    payload = pickle.dumps(_Bomb(path))
    call = pickle.dumps((_Bomb(path), (), {}))
    # The bomb must be real, or the tests prove nothing.
    pickle.loads(payload).close()
    assert path.exists()
    path.unlink()
    return PickleBomb(path, payload, call)
