"""DropLog on a fake clock: one warning per peer address per minute, every drop still told in
the next warning and in the "no worker" explanation (SPEC §13)."""

from __future__ import annotations

import logging

import pytest

from pirate_actors._drops import DropLog

pytestmark = pytest.mark.timeout(10)

log = logging.getLogger("tests.drops")


def test_one_warning_per_address_per_minute_and_the_next_says_how_many_were_not_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tests.drops")
    drops = DropLog(log, "the client")
    for second in range(120):
        for _ in range(10):
            drops.dropped("10.0.0.5", "unauthenticated", "bad signature (HMAC)", 1000.0 + second)
        drops.dropped("10.0.0.6", "malformed", "not a PIRATE-ACTORS/4 message", 1000.0 + second)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4  # two addresses, at 0 s and at 60 s
    assert sum("from 10.0.0.5" in line for line in lines) == 2
    assert "599 more since the last warning" in lines[2]
    assert "same key" in lines[0] and "same version" in lines[1]


def test_the_explanation_names_the_count_the_address_the_reason_and_what_to_check() -> None:
    drops = DropLog(log, "the client")
    assert drops.explain() == ""
    for _ in range(12):
        drops.dropped("192.0.2.7", "unauthenticated", "bad signature (HMAC): the peer signs with another key", 5.0)
    drops.dropped("192.0.2.8", "malformed", "junk", 5.0)
    text = drops.explain()
    assert "13 messages from 192.0.2.7 and 1 other address were dropped" in text
    assert "another key" in text and "same key" in text
    one = DropLog(log, "the client")
    one.dropped("192.0.2.9", "replayed", "sent before", 1.0)
    assert "1 message from 192.0.2.9 was dropped (sent before)" in one.explain()


def test_it_remembers_a_bounded_number_of_addresses() -> None:
    drops = DropLog(log, "the client")
    for n in range(10_000):
        drops.dropped(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", "malformed", "junk", float(n))
    assert len(drops._sources) <= 256


def test_a_late_message_is_told_at_debug_level_only_and_does_not_delay_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.drops")
    drops = DropLog(log, "the worker")
    drops.dropped("10.0.0.5", "late", "a Heartbeat for the previous session", 1000.0)
    assert drops.explain() == ""  # not what went wrong when no worker came
    drops.dropped("10.0.0.5", "replayed", "a Request not fresh for this session", 1001.0)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == [logging.DEBUG, logging.WARNING], levels
    assert "previous session" in levels[0][1] and "captured messages" in levels[1][1]
    assert "more since the last warning" not in levels[1][1]
