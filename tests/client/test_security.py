"""SPEC §6–§7: keys, signed messages, loopback-only without a key, bind errors."""

from __future__ import annotations

import pytest

from pirate_actors import Client, NoWorkerError, Worker
from tests.conftest import Testing, wait_until

pytestmark = pytest.mark.timeout(30)

KEY = b"0123456789abcdef-test-key"


def test_a_client_and_worker_sharing_a_key_serve_signed_calls() -> None:
    with Client("tcp://127.0.0.1:*", key=KEY) as client:
        with Worker(Testing, client.endpoint, key=KEY, heartbeat=0.2):
            client.wait_for_worker()
            assert client.call("echo", "signed") == (("signed",), {})


def test_a_worker_with_the_wrong_key_is_never_registered_and_is_counted(start_worker) -> None:
    with Client("tcp://127.0.0.1:*", key=KEY, heartbeat=0.2) as client:
        with Worker(Testing, client.endpoint, key=b"another-key-of-16-bytes", heartbeat=0.1):
            wait_until(lambda: client.stats()["unauthenticated"] >= 2)
            with pytest.raises(NoWorkerError):
                client.wait_for_worker(timeout=0.3)


def test_an_unsigned_worker_is_refused_by_a_keyed_client() -> None:
    with Client("tcp://127.0.0.1:*", key=KEY) as client:
        with Worker(Testing, client.endpoint, heartbeat=0.1):
            wait_until(lambda: client.stats()["unauthenticated"] >= 2)
            assert client.workers() == []


def test_the_key_comes_from_the_environment_when_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIRATE_ACTORS_KEY", KEY.decode())
    with Client("tcp://127.0.0.1:*") as client:
        with Worker(Testing, client.endpoint, heartbeat=0.2):
            client.wait_for_worker()
            assert client.call("ping") == "pong"
    monkeypatch.delenv("PIRATE_ACTORS_KEY")
    with Client("tcp://127.0.0.1:*", key=KEY) as client:  # keyed client, unkeyed worker
        with Worker(Testing, client.endpoint, heartbeat=0.1):
            wait_until(lambda: client.stats()["unauthenticated"] >= 1)


def test_a_key_shorter_than_16_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="16"):
        Client("tcp://127.0.0.1:5550", key=b"short")
    with pytest.raises(ValueError, match="16"):
        Worker(Testing, "tcp://127.0.0.1:5550", key=b"short")


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5550", "tcp://*:5550", "tcp://10.1.2.3:5550",
                                      "tcp://example.org:5550", "tcp://[2001:db8::1]:5550"])
def test_a_non_loopback_endpoint_without_a_key_raises_value_error_naming_the_fix(endpoint: str) -> None:
    with pytest.raises(ValueError, match="key") as info:
        Client(endpoint)
    assert "insecure" in str(info.value)
    with pytest.raises(ValueError, match="key"):
        Worker(Testing, endpoint)


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5550", "tcp://127.8.9.10:5550", "tcp://[::1]:5550",
                                      "tcp://localhost:5550", "ipc:///tmp/pirate-test", "inproc://pirate"])
def test_loopback_ipc_and_inproc_endpoints_need_no_key(endpoint: str) -> None:
    Client(endpoint)
    Worker(Testing, endpoint)


def test_insecure_allows_any_endpoint_without_a_key() -> None:
    with Client("tcp://0.0.0.0:*", insecure=True) as client:
        assert client.endpoint.startswith("tcp://0.0.0.0:")


def test_binding_an_address_in_use_raises_os_error(client: Client) -> None:
    with pytest.raises(OSError, match="in use"):
        Client(client.endpoint).start()


@pytest.mark.parametrize("heartbeat, liveness", [(0.0, 3), (0.0001, 3), (7200.0, 3), (1.0, 1), (1.0, 0), (1.0, 5000)])
def test_heartbeat_settings_a_peer_would_refuse_or_that_cannot_work_raise_value_error(
    heartbeat: float, liveness: int
) -> None:
    with pytest.raises(ValueError, match="liveness|heartbeat"):
        Client("tcp://127.0.0.1:5550", heartbeat=heartbeat, liveness=liveness)
    with pytest.raises(ValueError, match="liveness|heartbeat"):
        Worker(Testing, "tcp://127.0.0.1:5550", heartbeat=heartbeat, liveness=liveness)
