"""Keys and who may connect (SPEC §7): ``resolve_key`` and ``check_endpoint``."""

from __future__ import annotations

import pytest

from pirate_actors._security import (
    KEY_ENV,
    MIN_KEY_LENGTH,
    check_endpoint,
    is_local_endpoint,
    resolve_key,
)

pytestmark = pytest.mark.timeout(10)

KEY = b"sixteen-bytes-ok"


@pytest.fixture(autouse=True)
def no_key_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


# ----------------------------------------------------------------------------- resolve_key


def test_the_key_variable_is_named_pirate_actors_key_and_keys_are_at_least_16_bytes() -> None:
    assert KEY_ENV == "PIRATE_ACTORS_KEY"
    assert MIN_KEY_LENGTH == 16


def test_without_a_key_argument_or_environment_variable_there_is_no_key() -> None:
    assert resolve_key(None) is None


def test_a_key_argument_is_used_as_given() -> None:
    assert resolve_key(KEY) == (KEY,)


def test_a_key_given_as_text_is_used_as_its_utf8_bytes() -> None:
    assert resolve_key("schlüssel-0123456") == ("schlüssel-0123456".encode(),)


def test_without_a_key_argument_the_environment_variable_gives_the_key_as_utf8(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "clé-from-the-environment")
    assert resolve_key(None) == ("clé-from-the-environment".encode(),)


def test_a_key_argument_wins_over_the_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "environment-key-0123")
    assert resolve_key(KEY) == (KEY,)


def test_an_empty_environment_variable_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "")
    assert resolve_key(None) is None


@pytest.mark.parametrize("key", [b"", b"x", b"fifteen-bytes!!", "fifteen-chars!!"])
def test_a_key_shorter_than_16_bytes_is_refused_with_value_error(key: bytes | str) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        resolve_key(key)


def test_a_key_of_exactly_16_bytes_is_accepted() -> None:
    assert resolve_key(b"x" * 16) == (b"x" * 16,)


def test_a_short_key_in_the_environment_is_refused_with_value_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        resolve_key(None)


def test_a_text_key_is_measured_in_bytes_not_characters() -> None:
    eight_letters = "éééééééé"  # 16 bytes in UTF-8
    assert resolve_key(eight_letters) == (eight_letters.encode(),)


@pytest.mark.parametrize("key", [12345678901234567890, bytearray(b"x" * 16), [b"x" * 16, 7]])
def test_a_key_of_another_type_is_refused_with_type_error(key: object) -> None:
    with pytest.raises(TypeError, match="bytes"):
        resolve_key(key)  # type: ignore[arg-type]


def test_several_keys_are_kept_in_order_the_first_signs() -> None:
    assert resolve_key([b"new-key-0123456789", "old-key-0123456789"]) == (
        b"new-key-0123456789", b"old-key-0123456789")


def test_the_environment_variable_may_hold_several_keys_separated_by_commas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(KEY_ENV, "new-key-0123456789,old-key-0123456789")
    assert resolve_key(None) == (b"new-key-0123456789", b"old-key-0123456789")


def test_every_one_of_several_keys_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        resolve_key([b"a-long-enough-key-1", b"short"])


def test_an_empty_list_of_keys_means_no_key() -> None:
    assert resolve_key([]) is None


# ----------------------------------------------------------------------------- check_endpoint

LOCAL = [
    "tcp://127.0.0.1:5550",
    "tcp://127.0.0.1:*",
    "tcp://127.0.0.1",
    "tcp://127.1.2.3:5550",
    "tcp://127.255.255.254:1",
    "tcp://[::1]:5550",
    "tcp://localhost:5550",
    "ipc:///tmp/pirate.sock",
    "ipc://@abstract-name",
    "inproc://workers",
]

REMOTE = [
    "tcp://0.0.0.0:5550",
    "tcp://*:5550",
    "tcp://[::]:5550",
    "tcp://10.0.0.1:5550",
    "tcp://192.168.1.20:5550",
    "tcp://128.0.0.1:5550",
    "tcp://example.com:5550",
    "tcp://localhost.example.com:5550",
    "tcp://127.0.0.1.nip.io:5550",
    "tcp://eth0:5550",
    "tcp://[::ffff:10.0.0.1]:5550",
    "tcp://[2001:db8::1]:5550",
    "pgm://eth0;239.192.1.1:5555",
    "epgm://eth0;239.192.1.1:5555",
    "udp://127.0.0.1:5555",
    "ws://127.0.0.1:5555",
]


@pytest.mark.parametrize("endpoint", LOCAL)
def test_loopback_ipc_and_inproc_endpoints_are_allowed_without_a_key(endpoint: str) -> None:
    assert is_local_endpoint(endpoint)
    check_endpoint(endpoint, None, False)


@pytest.mark.parametrize("endpoint", REMOTE)
def test_any_other_endpoint_without_a_key_is_refused_with_value_error_naming_the_fix(endpoint: str) -> None:
    assert not is_local_endpoint(endpoint)
    with pytest.raises(ValueError) as caught:
        check_endpoint(endpoint, None, False)
    message = str(caught.value)
    assert endpoint in message
    for fix in ("key=", "PIRATE_ACTORS_KEY", "--key-file", "loopback", "insecure=True", "--insecure"):
        assert fix in message


@pytest.mark.parametrize("endpoint", REMOTE)
def test_any_endpoint_is_allowed_with_a_key(endpoint: str) -> None:
    check_endpoint(endpoint, KEY, False)


@pytest.mark.parametrize("endpoint", REMOTE)
def test_any_endpoint_is_allowed_without_a_key_when_insecure(endpoint: str) -> None:
    check_endpoint(endpoint, None, True)


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5550", "", "localhost", None, b"tcp://127.0.0.1:1"])
def test_something_that_is_not_an_endpoint_is_refused_with_value_error(endpoint: object) -> None:
    for key, insecure in ((None, False), (KEY, False), (None, True)):
        with pytest.raises(ValueError, match="not a ZeroMQ endpoint"):
            check_endpoint(endpoint, key, insecure)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "endpoint", ["tcp://127.0.0.1:0;10.0.0.5:5550", "tcp://localhost:0;example.com:5550"]
)
def test_a_loopback_source_address_does_not_make_a_remote_destination_local(endpoint: str) -> None:
    with pytest.raises(ValueError):
        check_endpoint(endpoint, None, False)
