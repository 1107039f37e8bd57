"""The exceptions of pirate_actors (SPEC §4): one base, one type per way a call can end badly."""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "CallTimeout",
    "NoWorkerError",
    "PirateError",
    "ProtocolError",
    "RemoteError",
    "RemoteTraceback",
    "UnknownProcedure",
    "WorkerCrashed",
    "WorkerLost",
]


class PirateError(Exception):
    """Base of every error pirate_actors raises."""


class NoWorkerError(PirateError):
    """No worker was registered in time to take the call."""


class CallTimeout(PirateError, TimeoutError):
    """A worker took the call but its final reply did not come in time; the call was cancelled."""


class WorkerLost(PirateError):
    """The worker serving the call died or left before replying; the call may have run."""


class WorkerCrashed(PirateError):
    """Raised by ``Worker.join()``: procedure actors died more than ``max_restarts`` times within
    ``restart_window`` seconds, so the worker stopped serving instead of flapping forever."""


class ProtocolError(PirateError):
    """A message broke the wire rules: too large, malformed, or (subclass) badly signed."""


class AuthenticationError(ProtocolError):
    """A message's HMAC signature was missing or wrong; it was dropped before anything was unpickled."""


class RemoteError(PirateError):
    """A procedure raised something that cannot be rebuilt here.

    Carries the remote exception's type name, message and formatted traceback, as zerorpc does.
    """

    def __init__(self, type_name: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(type_name, message, remote_traceback)
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback

    def __str__(self) -> str:
        return f"{self.type_name}: {self.message}" if self.message else self.type_name

    def __reduce__(self) -> tuple[type[RemoteError], tuple[str, str, str]]:
        return (type(self), (self.type_name, self.message, self.remote_traceback))


class UnknownProcedure(RemoteError):
    """The worker has no procedure of that name (the message lists the ones it serves)."""

    def __str__(self) -> str:
        return self.message or self.type_name


class RemoteTraceback(Exception):
    """The ``__cause__`` of a rebuilt remote exception: its text is the remote traceback."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb
