"""Fixtures for the command-line tests: per-test processes and endpoints, a shared worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cli.support import Process, Processes, free_port


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Console-script processes for one test, ended at its end."""
    started = Processes()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def endpoint() -> str:
    """A fresh loopback endpoint for one test."""
    return f"tcp://127.0.0.1:{free_port()}"


_shared_workers: dict[str, Process] = {}


@pytest.fixture(scope="module")
def demo_endpoint() -> Iterator[str]:
    """The endpoint of a DemoProcedures worker shared by a module's tests (they never stop it)."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    started = Processes()
    try:
        _shared_workers[endpoint] = started.worker(endpoint)
        yield endpoint
    finally:
        started.close()
        del _shared_workers[endpoint]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that used the shared worker shows that worker's log too."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    endpoint = getattr(item, "funcargs", {}).get("demo_endpoint")
    if report.failed and endpoint in _shared_workers:
        worker = _shared_workers[endpoint]
        report.sections.append((f"shared worker on {endpoint}", worker.describe()[-20000:]))
