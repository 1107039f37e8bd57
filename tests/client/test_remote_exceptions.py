"""Remote exceptions (issue 16): a class whose ``__init__`` takes other arguments than it keeps
in ``args`` is rebuilt when it can be imported here; anything that cannot be rebuilt arrives as
RemoteError, and every one carries the remote traceback as ``__cause__``."""

from __future__ import annotations

import threading
import traceback
from typing import Callable

import pytest

from pirate_actors import Client, ProcedureActor, RemoteError, RemoteTraceback, UnknownProcedure, Worker

pytestmark = pytest.mark.timeout(30)


class QuotaExceeded(Exception):
    def __init__(self, user: str, limit: int) -> None:
        super().__init__(f"{user} is over the limit of {limit}")
        self.user = user
        self.limit = limit


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


class Raiser(ProcedureActor):
    def quota(self, user: str) -> None:
        raise QuotaExceeded(user, 10)

    def locked(self) -> None:
        raise Unpicklable()

    def ping(self) -> str:
        return "pong"


@pytest.fixture
def raiser(client: Client, start_worker: Callable[..., Worker]) -> Client:
    start_worker(Raiser)
    client.wait_for_worker(timeout=10)
    return client


def test_an_exception_whose_init_takes_other_arguments_comes_back_as_itself(raiser: Client) -> None:
    with pytest.raises(QuotaExceeded) as caught:
        raiser.call("quota", "ada", timeout=10)
    error = caught.value
    assert (error.user, error.limit, str(error)) == ("ada", 10, "ada is over the limit of 10")
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "in quota" in str(error.__cause__)  # the remote frames, shown by any traceback print
    assert "in quota" in "".join(traceback.format_exception(error))


def test_an_exception_that_cannot_be_rebuilt_is_a_remote_error_with_the_remote_traceback(raiser: Client) -> None:
    with pytest.raises(RemoteError) as caught:
        raiser.call("locked", timeout=10)
    error = caught.value
    assert error.type_name.endswith("Unpicklable") and error.message == "holds a lock"
    assert isinstance(error.__cause__, RemoteTraceback) and "in locked" in str(error.__cause__)


def test_an_unknown_procedure_says_which_procedures_the_worker_serves(raiser: Client) -> None:
    with pytest.raises(UnknownProcedure) as caught:
        raiser.call("qouta", timeout=10)
    text = str(caught.value)
    assert not text.startswith("UnknownProcedure")
    assert "no procedure 'qouta'" in text and "it serves: locked, ping, quota" in text
