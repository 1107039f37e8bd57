"""Keys and who may connect (SPEC §7): without a key, only loopback and local transports."""

from __future__ import annotations

import ipaddress
import os
import re

__all__ = ["KEY_ENV", "MIN_KEY_LENGTH", "resolve_key", "check_endpoint", "is_local_endpoint"]

KEY_ENV = "PIRATE_ACTORS_KEY"
MIN_KEY_LENGTH = 16

_TCP = re.compile(r"^tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+))(?::(?P<port>[^/]*))?$")


def resolve_key(key: bytes | str | None) -> bytes | None:
    """The key from the argument, else from ``$PIRATE_ACTORS_KEY``; checked for length."""
    if key is None:
        env = os.environ.get(KEY_ENV)
        if not env:
            return None
        key = env
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, bytes):
        raise TypeError(f"key must be bytes, not {type(key).__name__}")
    if len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"key must be at least {MIN_KEY_LENGTH} bytes, got {len(key)}")
    return key


def is_local_endpoint(endpoint: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on loopback (127.0.0.0/8, ::1, localhost)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if endpoint.startswith("tcp://") and ";" in endpoint:
        # tcp://SOURCE;DESTINATION: only the destination says where the traffic goes.
        endpoint = "tcp://" + endpoint.rsplit(";", 1)[1]
    match = _TCP.match(endpoint)
    if not match:
        return False
    host = match.group("v6") or match.group("host") or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(endpoint: str, key: bytes | None, insecure: bool) -> None:
    """Refuse a non-local endpoint without a key: pickle from the network runs anyone's code."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ValueError(f"not a ZeroMQ endpoint: {endpoint!r} (expected e.g. tcp://127.0.0.1:5550)")
    if key is None and not insecure and not is_local_endpoint(endpoint):
        raise ValueError(
            f"refusing {endpoint} without a key: unsigned pickles from the network would run "
            f"anyone's code. Pass key=... (or set {KEY_ENV}, or --key-file), use a loopback, "
            "ipc:// or inproc:// endpoint, or pass insecure=True (--insecure) if the network is trusted."
        )
