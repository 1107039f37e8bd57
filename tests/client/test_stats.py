"""``client.stats()`` counts what happened to calls, equal to what the test itself counts
(issue 16, item 1; docs/operations.md lists every field)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from pirate_actors import CallTimeout, Client, NoWorkerError, Worker

from ..conftest import wait_until

pytestmark = pytest.mark.timeout(30)


def test_every_call_is_counted_once_by_how_it_ended(
    client: Client, start_worker: Callable[..., Worker], gate: Callable[..., Any],
) -> None:
    worker = start_worker()
    client.wait_for_worker(timeout=10)
    for _ in range(7):
        assert client.call("ping", timeout=10) == "pong"
    for _ in range(3):
        with pytest.raises(ValueError):
            client.call("fail", "no", timeout=10)
    name, held = gate()
    running = client.submit("until_cancelled", name)
    held.wait_entered(1)
    assert running.cancel()
    with pytest.raises(CallTimeout):
        client.options(timeout=0.3).call("sleep", 5)
    stats = client.stats()
    assert stats["submitted"] == 12
    assert (stats["calls_succeeded"], stats["calls_raised"], stats["calls_cancelled"],
            stats["calls_timed_out"]) == (7, 3, 1, 1)
    assert stats["calls_no_worker"] == stats["calls_lost"] == stats["calls_closed"] == 0
    wait_until(lambda: client.stats()["in_flight"] == 0, 10)
    assert client.stats()["queued"] == 0 and client.stats()["workers"] == 1
    assert min(v for v in client.stats().values()) >= 0
    # The worker saw the same: 12 requests, 2 cancels (one by the caller, one at the deadline),
    # 7 replies and 3 errors; the cancelled calls got no answer.
    wait_until(lambda: worker.stats()["cancels"] == 2, 10)
    counts = worker.stats()
    assert (counts["requests"], counts["replies"], counts["errors"]) == (12, 7, 3)


def test_calls_without_any_worker_count_as_no_worker() -> None:
    with Client("tcp://127.0.0.1:*", timeout=0.3) as lonely:
        with pytest.raises(NoWorkerError):
            lonely.call("ping")
        stats = lonely.stats()
        assert (stats["submitted"], stats["calls_no_worker"], stats["workers"]) == (1, 1, 0)
