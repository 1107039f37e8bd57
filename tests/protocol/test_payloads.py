"""Payloads (``pirate_actors._codec``): cloudpickle bodies and ERROR bodies, and how a remote
exception is rebuilt on the client (SPEC §4)."""

from __future__ import annotations

import pickle
import threading
from typing import Any

import pytest

from pirate_actors import _codec
from pirate_actors._codec import ErrorKind
from pirate_actors._errors import (
    PirateError,
    ProtocolError,
    RemoteError,
    RemoteTraceback,
    UnknownProcedure,
)

pytestmark = pytest.mark.timeout(10)


class InventoryError(Exception):
    """An application exception importable on both sides."""

    def __init__(self, item: str, count: int) -> None:
        super().__init__(item, count)
        self.item = item
        self.count = count


class WontUnpickle(Exception):
    """Pickles fine, but unpickling calls ``__init__`` with one argument instead of two."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


class WontPickle(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a real traceback, as a procedure would have raised it."""
    def procedure_that_fails() -> None:
        raise exc

    try:
        procedure_that_fails()
    except BaseException as caught:  # noqa: BLE001
        return caught
    raise AssertionError("unreachable")


def rebuild(exc: BaseException) -> tuple[str, BaseException]:
    return _codec.load_error(_codec.dump_exception(raised(exc)))


# ----------------------------------------------------------------------------- bodies


def test_a_request_body_is_cloudpickle_of_procedure_args_and_kwargs_and_lambdas_travel() -> None:
    body = _codec.dumps(("apply", (lambda x: x * 2, 21), {"twice": True}))
    procedure, args, kwargs = _codec.loads(body)
    assert (procedure, kwargs) == ("apply", {"twice": True})
    assert args[0](args[1]) == 42


def test_a_reply_body_round_trips_any_picklable_value() -> None:
    for value in (None, "pong", [True, 1], {"a": (1, 2.5, b"x")}, 10**100):
        assert _codec.loads(_codec.dumps(value)) == value


def test_an_error_body_is_a_pickled_tuple_of_kind_type_name_message_traceback_exception_and_state() -> None:
    body = _codec.dump_error(ErrorKind.NOT_RUN, "NotRun", "not run", "tb", None)
    assert pickle.loads(body) == ("not_run", "NotRun", "not run", "tb", None, None)


def test_an_error_body_of_five_fields_from_an_older_worker_still_loads() -> None:
    body = pickle.dumps(("raised", "ValueError", "bad", "tb", pickle.dumps(ValueError("bad"))))
    kind, rebuilt = _codec.load_error(body)
    assert kind == ErrorKind.RAISED and type(rebuilt) is ValueError


def test_the_error_kinds_are_raised_unknown_not_run_and_protocol() -> None:
    assert (ErrorKind.RAISED, ErrorKind.UNKNOWN, ErrorKind.NOT_RUN, ErrorKind.PROTOCOL) == (
        "raised", "unknown", "not_run", "protocol"
    )


def test_dump_exception_keeps_the_pickled_exception_apart_from_its_description() -> None:
    kind, type_name, message, tb, pickled, state = pickle.loads(_codec.dump_exception(raised(ValueError("bad"))))
    assert (kind, type_name, message) == ("raised", "ValueError", "bad")
    assert "procedure_that_fails" in tb and "ValueError: bad" in tb
    assert isinstance(pickle.loads(pickled), ValueError)
    assert pickle.loads(state) == (("bad",), {})  # args and __dict__, for rebuilding without __init__


def test_a_type_name_outside_builtins_carries_its_module() -> None:
    _, type_name, *_ = pickle.loads(_codec.dump_exception(raised(InventoryError("bolts", 3))))
    assert type_name == f"{__name__}.InventoryError"


# ----------------------------------------------------------------------------- rebuilding exceptions


@pytest.mark.parametrize(
    "exc",
    [ValueError("bad value"), KeyError("k"), ZeroDivisionError("division by zero"), TimeoutError("slow"),
     InventoryError("bolts", 3)],
    ids=lambda e: type(e).__name__,
)
def test_an_exception_that_pickles_round_trips_as_its_own_type_with_a_remote_traceback_cause(
    exc: Exception,
) -> None:
    kind, rebuilt = rebuild(exc)
    assert kind == ErrorKind.RAISED
    assert type(rebuilt) is type(exc)
    assert rebuilt.args == exc.args
    cause = rebuilt.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "procedure_that_fails" in str(cause) and f"{type(exc).__name__}" in str(cause)
    assert cause.tb == str(cause)


def test_an_application_exception_keeps_its_attributes() -> None:
    _, rebuilt = rebuild(InventoryError("bolts", 3))
    assert isinstance(rebuilt, InventoryError)
    assert (rebuilt.item, rebuilt.count) == ("bolts", 3)


def test_an_exception_class_defined_inside_a_function_travels_by_value() -> None:
    class LocalError(Exception):
        pass

    kind, rebuilt = rebuild(LocalError("local"))
    assert kind == ErrorKind.RAISED
    assert type(rebuilt).__name__ == "LocalError" and rebuilt.args == ("local",)
    assert isinstance(rebuilt.__cause__, RemoteTraceback)


def test_an_exception_whose_init_will_not_take_its_args_is_rebuilt_without_calling_init() -> None:
    kind, rebuilt = rebuild(WontUnpickle("a", "b"))
    assert kind == ErrorKind.RAISED
    assert type(rebuilt) is WontUnpickle and rebuilt.args == ("a/b",) and str(rebuilt) == "a/b"
    assert isinstance(rebuilt.__cause__, RemoteTraceback)
    assert "procedure_that_fails" in str(rebuilt.__cause__)


def test_an_exception_that_will_not_unpickle_nor_import_arrives_as_remote_error() -> None:
    [frame] = [_codec.dump_exception(raised(WontUnpickle("a", "b")))]
    fields = list(pickle.loads(frame))
    fields[1] = "nowhere_module_xyz.WontUnpickle"  # its class cannot be imported here
    kind, rebuilt = _codec.load_error(pickle.dumps(tuple(fields)))
    assert type(rebuilt) is RemoteError
    assert rebuilt.type_name == "nowhere_module_xyz.WontUnpickle" and rebuilt.message == "a/b"
    assert "procedure_that_fails" in rebuilt.remote_traceback
    assert str(rebuilt) == "nowhere_module_xyz.WontUnpickle: a/b"
    assert isinstance(rebuilt.__cause__, RemoteTraceback)


def test_an_exception_that_will_not_pickle_arrives_as_remote_error() -> None:
    kind, rebuilt = rebuild(WontPickle("holds a lock"))
    assert type(rebuilt) is RemoteError
    assert rebuilt.type_name == f"{__name__}.WontPickle" and rebuilt.message == "holds a lock"


def test_an_exception_whose_class_is_unknown_on_the_client_arrives_as_remote_error() -> None:
    pickled = pickle.dumps(InventoryError("bolts", 3)).replace(b"InventoryError", b"MissingErrorXY")
    with pytest.raises(AttributeError, match="MissingErrorXY"):
        pickle.loads(pickled)  # the class is really missing here
    body = _codec.dump_error(ErrorKind.RAISED, "remote.MissingErrorXY", "bolts", "Traceback ...", pickled)
    kind, rebuilt = _codec.load_error(body)
    assert type(rebuilt) is RemoteError and rebuilt.type_name == "remote.MissingErrorXY"


@pytest.mark.parametrize(
    "exc", [SystemExit(7), KeyboardInterrupt(), GeneratorExit()], ids=lambda e: type(e).__name__
)
def test_a_base_exception_arrives_as_remote_error(exc: BaseException) -> None:
    kind, rebuilt = rebuild(exc)
    assert kind == ErrorKind.RAISED
    assert type(rebuilt) is RemoteError
    assert rebuilt.type_name == type(exc).__name__
    assert type(exc).__name__ in rebuilt.remote_traceback


def test_a_pickled_base_exception_in_an_error_body_still_arrives_as_remote_error() -> None:
    body = _codec.dump_error(ErrorKind.RAISED, "SystemExit", "7", "tb", pickle.dumps(SystemExit(7)))
    _, rebuilt = _codec.load_error(body)
    assert type(rebuilt) is RemoteError


def test_an_unknown_procedure_arrives_as_unknown_procedure_naming_it() -> None:
    body = _codec.dump_error(ErrorKind.UNKNOWN, "UnknownProcedure", "no procedure 'invalid_request'")
    kind, rebuilt = _codec.load_error(body)
    assert kind == ErrorKind.UNKNOWN
    assert type(rebuilt) is UnknownProcedure
    assert isinstance(rebuilt, RemoteError) and isinstance(rebuilt, PirateError)
    assert "invalid_request" in str(rebuilt)


def test_a_protocol_kind_arrives_as_protocol_error_with_its_message() -> None:
    body = _codec.dump_error(ErrorKind.PROTOCOL, "ProtocolError", "result of 70 MB exceeds max_message_size")
    kind, rebuilt = _codec.load_error(body)
    assert kind == ErrorKind.PROTOCOL
    assert type(rebuilt) is ProtocolError and "max_message_size" in str(rebuilt)


def test_a_not_run_kind_is_reported_as_such_so_the_client_can_requeue_the_call() -> None:
    body = _codec.dump_error(ErrorKind.NOT_RUN, "NotRun", "the worker is leaving; not run")
    kind, rebuilt = _codec.load_error(body)
    assert kind == ErrorKind.NOT_RUN
    assert isinstance(rebuilt, RemoteError) and rebuilt.type_name == "NotRun"


@pytest.mark.parametrize(
    "body",
    [b"", b"not a pickle", pickle.dumps(("raised", "X")), pickle.dumps("a string"), pickle.dumps(None)],
    ids=["empty", "garbage", "short tuple", "a string", "None"],
)
def test_an_undecodable_error_body_becomes_a_protocol_error(body: bytes) -> None:
    kind, rebuilt = _codec.load_error(body)
    assert kind == ErrorKind.PROTOCOL
    assert type(rebuilt) is ProtocolError and "undecodable ERROR body" in str(rebuilt)


def test_remote_errors_pickle_round_trip_with_their_fields() -> None:
    for error in (RemoteError("T", "m", "tb"), UnknownProcedure("UnknownProcedure", "no 'x'", "")):
        again: Any = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error)
        assert (again.type_name, again.message, again.remote_traceback) == (
            error.type_name, error.message, error.remote_traceback
        )
