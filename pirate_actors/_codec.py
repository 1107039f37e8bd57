"""Payloads: cloudpickle of calls, results and exceptions, and rebuilding remote errors here.

Only ever called on bodies whose message already passed the signature check.
"""

from __future__ import annotations

import importlib
import pickle
import traceback
from typing import Any

import cloudpickle  # type: ignore[import-untyped]

from ._errors import ProtocolError, RemoteError, RemoteTraceback, UnknownProcedure, WorkerLost

__all__ = ["ErrorKind", "dumps", "dumps_call", "loads", "dump_error", "load_error", "dump_exception"]

PROTOCOL = pickle.HIGHEST_PROTOCOL


class ErrorKind:
    """What an ERROR entry means; the first element of its body."""

    RAISED = "raised"  # the procedure raised; maybe rebuildable
    UNKNOWN = "unknown"  # no such procedure
    NOT_RUN = "not_run"  # the worker never started it; the client may re-queue it
    PROTOCOL = "protocol"  # the call or its result broke the wire rules
    ABANDONED = "abandoned"  # the worker stopped while it ran: lost, like a dead worker's calls


_PLAIN = frozenset({str, bytes, int, float, bool, type(None)})


def _plain(obj: Any) -> bool:
    kind = type(obj)
    if kind in _PLAIN:
        return True
    if kind is tuple or kind is list:
        return all(type(item) in _PLAIN for item in obj)
    if kind is dict:
        return all(type(k) is str and type(v) in _PLAIN for k, v in obj.items())
    return False


def dumps(obj: Any) -> bytes:
    """Serialise with cloudpickle (lambdas and local classes travel too); builtin scalars
    and flat containers of them take the C pickler, which is several times faster."""
    if _plain(obj):
        return pickle.dumps(obj, protocol=PROTOCOL)
    data: bytes = cloudpickle.dumps(obj, protocol=PROTOCOL)
    return data


def dumps_call(procedure: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A REQUEST body: ``(procedure, args, kwargs)``."""
    if _plain(args) and _plain(kwargs):
        return pickle.dumps((procedure, args, kwargs), protocol=PROTOCOL)
    data: bytes = cloudpickle.dumps((procedure, args, kwargs), protocol=PROTOCOL)
    return data


def loads(data: bytes | memoryview) -> Any:
    """Deserialise a payload that passed the signature check."""
    return pickle.loads(data)


def dump_error(
    kind: str, type_name: str, message: str, tb: str = "", exc: bytes | None = None,
    state: bytes | None = None,
) -> bytes:
    """An ERROR entry body. ``exc`` is the pickled exception, kept apart so a reply whose
    exception will not unpickle still arrives; ``state`` is its ``args`` and ``__dict__``,
    for rebuilding a class whose ``__init__`` takes other arguments than its ``args``."""
    return pickle.dumps((kind, type_name, message, tb, exc, state), protocol=PROTOCOL)


def dump_exception(exc: BaseException, max_size: int = 2**62) -> bytes:
    """The ERROR body for an exception a procedure raised, with its formatted traceback.

    Never larger than ``max_size``: a huge exception loses its pickle (it arrives as
    RemoteError), then its message and traceback are cut."""
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    pickled: bytes | None = None
    state: bytes | None = None
    if isinstance(exc, Exception):
        try:
            pickled = dumps(exc)
        except Exception:  # noqa: BLE001 - anything unpicklable arrives as RemoteError
            pickled = None
        try:
            state = dumps((exc.args, dict(getattr(exc, "__dict__", {}))))
        except Exception:  # noqa: BLE001
            state = None
    name = _qualname(type(exc))
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = f"<unprintable {name}>"
    body = dump_error(ErrorKind.RAISED, name, message, tb, pickled, state)
    if len(body) > max_size:
        keep = max(0, max_size // 4 - 256)
        body = dump_error(ErrorKind.RAISED, name, message[:keep], tb[-keep:] if keep else "", None)
    return body


def _qualname(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def load_error(data: bytes | memoryview) -> tuple[str, BaseException]:
    """The kind of an ERROR body and the exception to raise for it on the client."""
    try:
        fields = pickle.loads(data)
        if not isinstance(fields, tuple) or len(fields) not in (5, 6):
            raise ValueError(f"not a tuple of 5 or 6 fields: {type(fields).__name__}")
        kind, type_name, message, tb, pickled = fields[:5]
    except Exception as exc:  # noqa: BLE001
        return ErrorKind.PROTOCOL, ProtocolError(f"undecodable ERROR body: {exc!r}")
    state = fields[5] if len(fields) == 6 else None
    if kind == ErrorKind.UNKNOWN:
        return kind, UnknownProcedure(type_name, message, tb)
    if kind == ErrorKind.PROTOCOL:
        return kind, ProtocolError(message)
    if kind == ErrorKind.ABANDONED:
        return kind, WorkerLost(message)
    if pickled is not None:
        try:
            rebuilt = pickle.loads(pickled)
        except Exception:  # noqa: BLE001 - will not rebuild here: fall back to RemoteError
            rebuilt = None
        if rebuilt is None and state is not None:
            rebuilt = _rebuild(type_name, state)
        if isinstance(rebuilt, Exception):
            rebuilt.__cause__ = RemoteTraceback(tb)
            return kind, rebuilt
    error = RemoteError(type_name, message, tb)
    if tb:
        error.__cause__ = RemoteTraceback(tb)
    return kind, error


def _rebuild(type_name: str, state: bytes) -> Exception | None:
    """The remote exception, made without its ``__init__`` (which may want other arguments
    than the ``args`` it kept) when its class can be imported here; None otherwise."""
    module_name, _, qualname = type_name.rpartition(".")
    try:
        args, attributes = pickle.loads(state)
        found: Any = importlib.import_module(module_name or "builtins")
        for part in qualname.split("."):
            found = getattr(found, part)
        if not (isinstance(found, type) and issubclass(found, Exception)):
            return None
        rebuilt: Exception = BaseException.__new__(found)
        rebuilt.args = tuple(args)
        rebuilt.__dict__.update(attributes)
    except Exception:  # noqa: BLE001 - not importable or not rebuildable here: RemoteError
        return None
    return rebuilt
