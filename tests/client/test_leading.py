"""Leader/follower: a caller of ``call()`` drives the client's loop itself while it waits, and
every promise of the client holds whoever leads: other threads' calls, closing, interrupts."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

import pytest

from pirate_actors import Client, PirateError
from pirate_actors import _client

pytestmark = pytest.mark.timeout(30)


def client_thread(client: Client) -> threading.Thread:
    assert client._thread is not None
    return client._thread


def wake_ups(thread: threading.Thread) -> int:
    """How often ``thread`` has blocked and been woken (Linux: its voluntary context switches)."""
    with open(f"/proc/self/task/{thread.native_id}/status") as status:
        for line in status:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise AssertionError("no voluntary_ctxt_switches")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_calls_made_one_at_a_time_are_driven_by_the_caller_not_the_client_thread(
    client: Client, start_worker: Any,
) -> None:
    start_worker()
    client.wait_for_worker()
    client.call("ping")  # may still go through the client thread; it then stands by
    thread = client_thread(client)
    before = wake_ups(thread)
    calls = 1000
    for i in range(calls):
        assert client.call("echo", i) == ((i,), {})
    # Handed to the client thread, each call would wake it at least twice; standing by, it
    # wakes once per lease (5 ms) at most: fewer than half a wake-up per call unless the
    # calls took ten times longer than they do.
    assert wake_ups(thread) - before < calls / 2


def test_other_threads_calls_complete_while_a_caller_leads_and_after_it_stops(
    client: Client, start_worker: Any,
) -> None:
    start_worker(pool_size=2)
    client.wait_for_worker()
    stop = threading.Event()
    led = []

    def caller() -> None:
        while not stop.is_set():
            led.append(client.call("ping"))

    thread = threading.Thread(target=caller)
    thread.start()
    try:
        futures = [client.submit("echo", i) for i in range(200)]
        assert [f.result(10) for f in futures] == [((i,), {}) for i in range(200)]
    finally:
        stop.set()
        thread.join(10)
    assert led and set(led) == {"pong"}
    # Nobody calls any more: the client thread leads again, and a future completes.
    assert client.submit("ping").result(10) == "pong"


def test_a_caller_waiting_for_a_long_call_serves_every_other_thread_meanwhile(
    client: Client, start_worker: Any, gate: Any,
) -> None:
    start_worker(pool_size=2)
    client.wait_for_worker()
    name, g = gate()
    result: list[Any] = []
    holder = threading.Thread(target=lambda: result.append(client.call("hold", name, "held")))
    holder.start()
    g.wait_entered()
    answers = []
    others = [threading.Thread(target=lambda: answers.append(client.call("ping"))) for _ in range(3)]
    for other in others:
        other.start()
    for other in others:
        other.join(10)
    assert answers == ["pong"] * 3 and not result  # served while the long call still runs
    g.opened.set()
    holder.join(10)
    assert result == ["held"]


def test_closing_the_client_ends_a_led_call_at_once(client: Client, start_worker: Any, gate: Any) -> None:
    start_worker()
    client.wait_for_worker()
    client.call("ping")
    name, g = gate()
    outcome: list[BaseException] = []

    def caller() -> None:
        try:
            client.call("hold", name, timeout=20)
        except BaseException as exc:  # noqa: BLE001
            outcome.append(exc)

    thread = threading.Thread(target=caller)
    thread.start()
    g.wait_entered()
    started = time.monotonic()
    client.close()
    thread.join(10)
    assert len(outcome) == 1 and type(outcome[0]) is PirateError
    assert time.monotonic() - started < 5.0  # not the call's 20 s timeout
    with pytest.raises(PirateError):
        client.call("ping")


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="signals")
def test_ctrl_c_in_a_led_call_raises_there_cancels_the_call_and_the_client_serves_on(
    client: Client, start_worker: Any, gate: Any,
) -> None:
    start_worker()
    client.wait_for_worker()
    client.call("ping")
    name, g = gate()

    def interrupt() -> None:
        g.wait_entered()
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        client.call("until_cancelled", name, timeout=20)
    assert g.opened.wait(10), "the worker never heard of the cancel"
    assert client.call("ping") == "pong"
    assert client.stats()["calls_cancelled"] == 1


def test_a_signal_that_comes_mid_turn_is_held_until_the_turn_is_over() -> None:
    """A handler that raises must not run half-way through the engine's bookkeeping: while a
    leading loop is not in its poll, the wrapper only notes the signal; the caller runs the
    handler between two turns."""
    ran: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        ran.append(signum)
        raise KeyboardInterrupt

    wrapper = _client._Interrupts(signal.SIGINT, handler)
    installed = _client._Interrupts._installed.get(signal.SIGINT)
    _client._Interrupts._installed[signal.SIGINT] = wrapper

    class Loop:
        interruptible = False

    loop: Any = Loop()
    _client._Interrupts._leading.append(loop)
    try:
        wrapper(signal.SIGINT, None)  # mid-turn: held
        assert ran == [] and _client._Interrupts._pending
        loop.interruptible = True
        with pytest.raises(KeyboardInterrupt):
            wrapper(signal.SIGINT, None)  # in the poll: at once
        assert ran == [signal.SIGINT]
        loop.interruptible = False
        with pytest.raises(KeyboardInterrupt):
            _client._Interrupts.release(loop)  # the held one, at the clean point
        assert ran == [signal.SIGINT, signal.SIGINT] and not _client._Interrupts._pending
    finally:
        _client._Interrupts._leading.clear()
        _client._Interrupts._pending.clear()
        if installed is not None:
            _client._Interrupts._installed[signal.SIGINT] = installed
    with pytest.raises(KeyboardInterrupt):
        wrapper(signal.SIGINT, None)  # nobody leads: the handler runs at once, as without it
    assert len(ran) == 3


def test_close_from_a_callback_the_leading_caller_runs_returns_at_once(
    client: Client, start_worker: Any,
) -> None:
    """The caller that leads runs other threads' done-callbacks; one that closes the client
    must not wait for the client thread, which cannot end while the caller leads."""
    start_worker()
    client.wait_for_worker()
    client.call("ping")
    took: list[float] = []

    def close_now(_future: Any) -> None:
        started = time.monotonic()
        client.close()
        took.append(time.monotonic() - started)

    future = client.submit("sleep", 0.2)
    future.add_done_callback(close_now)
    with pytest.raises(PirateError):
        client.call("sleep", 2.0, timeout=20)  # leads while the callback runs in it
    assert took and took[0] < 1.0


def test_call_from_a_callback_of_the_same_client_raises_instead_of_waiting_for_itself(
    client: Client, start_worker: Any,
) -> None:
    start_worker()
    client.wait_for_worker()
    errors: list[BaseException] = []
    done = threading.Event()

    def nested(_future: Any) -> None:
        try:
            client.call("ping", timeout=2)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        done.set()

    client.submit("ping").add_done_callback(nested)
    assert done.wait(10)
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert client.call("ping") == "pong"


def test_a_caller_that_stops_leading_with_calls_in_flight_hands_them_on_at_once(
    client: Client, start_worker: Any, gate: Any,
) -> None:
    """Another thread's call still in flight when the leading caller's own call ends is still
    answered: whoever leads next reads its reply."""
    start_worker(pool_size=2)
    client.wait_for_worker()
    client.call("ping")
    name, g = gate()
    other = client.submit("hold", name, "other")
    g.wait_entered()
    assert client.call("ping") == "pong"  # leads, and stops leading with `other` in flight
    g.opened.set()
    assert other.result(10) == "other"
