"""Keys, certificates and who may connect (SPEC §7, §13).

Without a key or CURVE, only loopback and local transports are allowed. A key may be a list
(rotation: sign with the first, accept any). CURVE goes through ``zmq.auth``: the client runs
its ``ThreadAuthenticator`` with a credentials callback that reads the authorized folder again
whenever it changes, so certificates added later are honoured without a restart.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Sequence, Union

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

__all__ = [
    "KEY_ENV",
    "MIN_KEY_LENGTH",
    "AuthorizedFolder",
    "Curve",
    "KeyArg",
    "check_endpoint",
    "is_local_endpoint",
    "resolve_key",
]

logger = logging.getLogger("pirate_actors.auth")

KEY_ENV = "PIRATE_ACTORS_KEY"
MIN_KEY_LENGTH = 16

KeyArg = Union[bytes, str, Sequence[Union[bytes, str]], None]
"""A key, several keys (the first signs, any verifies), or None (then ``$PIRATE_ACTORS_KEY``)."""

_TCP = re.compile(r"^tcp://(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:/\[\]]+))(?::(?P<port>[^/]*))?$")


def resolve_key(key: KeyArg) -> tuple[bytes, ...] | None:
    """The keys from the argument, else from ``$PIRATE_ACTORS_KEY`` (commas separate several);
    each checked for length. None: no key."""
    source = ""
    if key is None:
        env = os.environ.get(KEY_ENV)
        if not env:
            return None
        key = [part for part in env.split(",") if part]
        source = f" (from the {KEY_ENV} environment variable)"
    if isinstance(key, (bytes, str)):
        keys: list[Any] = [key]
    elif isinstance(key, (list, tuple)):
        keys = list(key)
    else:
        raise TypeError(f"key must be bytes, str or a list of them, not {type(key).__name__}")
    if not keys:
        return None
    resolved = []
    for one in keys:
        if isinstance(one, str):
            one = one.encode("utf-8")
        if not isinstance(one, bytes):
            raise TypeError(f"a key must be bytes or str, not {type(one).__name__}")
        if len(one) < MIN_KEY_LENGTH:
            raise ValueError(
                f"a key must be at least {MIN_KEY_LENGTH} bytes, got {len(one)}{source}")
        resolved.append(one)
    return tuple(resolved)


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


def check_endpoint(
    endpoint: str, key: Sequence[bytes] | None, insecure: bool, curve: bool = False
) -> None:
    """Refuse a non-local endpoint without a key or CURVE: pickle from the network runs anyone's code."""
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise ValueError(f"not a ZeroMQ endpoint: {endpoint!r} (expected e.g. tcp://127.0.0.1:5550)")
    if not key and not curve and not insecure and not is_local_endpoint(endpoint):
        raise ValueError(
            f"refusing {endpoint} without a key: unsigned pickles from the network would run "
            f"anyone's code. Pass key=... (or set {KEY_ENV}, or --key-file), use CURVE "
            "certificates (curve_secret=...), a loopback, ipc:// or inproc:// endpoint, or pass "
            "insecure=True (--insecure) if the network is trusted."
        )


# --------------------------------------------------------------------------- CURVE


def _load(path: str | os.PathLike[str], what: str, secret: bool) -> tuple[bytes, bytes | None]:
    """A certificate's public (and secret) key, or ValueError naming the file and the problem."""
    try:
        public, secret_key = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the {what} certificate {os.fspath(path)!r}: {exc}") from None
    if secret and secret_key is None:
        raise ValueError(
            f"{os.fspath(path)!r} is a public certificate; {what} needs the secret one "
            "(NAME.key_secret, as written by pirate-keygen)")
    return public, secret_key


def _pair(secret: Any, other: Any, other_name: str) -> bool:
    """True when both CURVE settings are given, False when neither; ValueError for one alone."""
    if (secret is None) != (other is None):
        raise ValueError(f"CURVE needs both curve_secret (this side's secret certificate) and {other_name}")
    return secret is not None


class Curve:
    """One side's CURVE settings, checked when the Client or Worker is made."""

    def __init__(self, public: bytes, secret: bytes, server: bytes | None = None,
                 authorized: Path | None = None) -> None:
        self.public = public
        self.secret = secret
        self.server = server
        """The client's public key (workers only)."""
        self.authorized = authorized
        """The folder of workers' public certificates (the client only)."""

    @classmethod
    def for_client(cls, secret: Any, authorized: Any) -> Curve | None:
        """The client's settings: its secret certificate and the folder of authorized workers."""
        if not _pair(secret, authorized, "curve_authorized (the folder of workers' public certificates)"):
            return None
        folder = Path(authorized)
        if not folder.is_dir():
            raise ValueError(f"curve_authorized {os.fspath(folder)!r} is not a folder")
        public, secret_key = _load(secret, "client's", secret=True)
        assert secret_key is not None
        return cls(public, secret_key, authorized=folder)

    @classmethod
    def for_worker(cls, secret: Any, server: Any) -> Curve | None:
        """A worker's settings: its secret certificate and the client's public one."""
        if not _pair(secret, server, "curve_server (the client's public certificate)"):
            return None
        public, secret_key = _load(secret, "worker's", secret=True)
        server_key, _ = _load(server, "client's public", secret=False)
        assert secret_key is not None
        return cls(public, secret_key, server=server_key)

    def apply(self, socket: zmq.Socket[Any]) -> None:
        """Make ``socket`` a CURVE server (the client) or client (a worker)."""
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        if self.server is None:
            socket.curve_server = True
        else:
            socket.curve_serverkey = self.server


class AuthorizedFolder:
    """``zmq.auth`` credentials callback: a worker is allowed when its public certificate is
    in the folder. The folder is read again whenever its listing changes (names, sizes, times),
    so a certificate added later counts from the next connection. Refusals are counted and
    logged (at most once a minute per key)."""

    def __init__(self, folder: Path, interval: float = 60.0) -> None:
        self.folder = folder
        self.refused = 0
        self.interval = interval
        self._lock = threading.Lock()
        self._listing: tuple[tuple[str, int, int], ...] | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._logged: dict[bytes, float] = {}
        self.address = ""
        """The address of the peer being authenticated (set by :class:`_Authenticator`)."""

    def _current(self) -> frozenset[bytes]:
        try:
            listing = tuple(sorted(
                (entry.name, stat.st_size, stat.st_mtime_ns)
                for entry in os.scandir(self.folder) if entry.name.endswith(".key")
                for stat in (entry.stat(),)
            ))
        except OSError as exc:
            logger.warning("cannot read the authorized folder %s: %s", self.folder, exc)
            return self._keys
        if listing != self._listing:
            keys = set()
            for name, _, _ in listing:
                try:
                    public, _secret = zmq.auth.load_certificate(os.path.join(self.folder, name))
                except (OSError, ValueError) as exc:
                    logger.warning("ignoring certificate %s: %s", name, exc)
                    continue
                keys.add(public)
            self._listing, self._keys = listing, frozenset(keys)
        return self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by ``zmq.auth`` for each CURVE handshake with the peer's z85 public key."""
        with self._lock:
            if key in self._current():
                return True
            self.refused += 1
            now = time.monotonic()
            if now >= self._logged.get(key, float("-inf")) + self.interval:
                if len(self._logged) > 1024:
                    self._logged.clear()
                self._logged[key] = now
                logger.warning(
                    "refused a worker%s: its CURVE certificate (public key %s) is not in %s "
                    "(%d refused so far)", f" from {self.address}" if self.address else "",
                    key.decode(errors="replace"), self.folder, self.refused)
            return False


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, telling the folder callback which address it is judging (the
    callback API passes only the key, and a refusal is more useful with the address)."""

    folder: AuthorizedFolder

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self.folder.address = msg[3].decode(errors="replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)


def start_authenticator(context: zmq.Context[Any], folder: AuthorizedFolder) -> ThreadAuthenticator:
    """Run ``zmq.auth``'s ZAP handler for ``context``, allowing the certificates in ``folder``."""
    auth = _Authenticator(context, log=logging.getLogger("pirate_actors.auth.zap"))
    auth.folder = folder
    auth.start()
    auth.configure_curve_callback("*", credentials_provider=folder)
    return auth
