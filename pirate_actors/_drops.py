"""Dropped messages, told once: a warning per peer address at most once a minute, and a short
account of what was dropped for errors that would otherwise only say "no worker".

Sans-IO like the engines: ``now`` comes in, nothing is read from a clock. The sessions count
every drop (``Stats``); this only decides what to say and when.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DropLog", "hint_for"]

_ADDRESSES = 256  # addresses remembered at most (the oldest are forgotten first)

_HINTS = {
    "unauthenticated": "check that the client and its workers use the same key",
    "refused": "check the CURVE certificates on both sides",
    "malformed": "check that both ends run the same version of pirate_actors",
    "replayed": "someone may be sending captured messages again",
}
_EXPECTED = {"late"}
"""Kinds that happen in normal operation (a session changed while messages were on their way):
counted by the sessions, logged at debug level only."""


def hint_for(kind: str) -> str:
    """What to check when messages of ``kind`` are dropped."""
    return _HINTS.get(kind, "")


@dataclass
class _Source:
    count: int = 0
    unlogged: int = 0
    next_log: float = float("-inf")
    kinds: dict[str, int] = field(default_factory=dict)
    reason: str = ""


class DropLog:
    """Warnings about dropped messages, per peer address, at most once per ``interval``."""

    def __init__(self, logger: logging.Logger, what: str, interval: float = 60.0) -> None:
        self.logger = logger
        self.what = what
        """Who drops, for the log line (e.g. "the client at tcp://*:5550")."""
        self.interval = interval
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def dropped(self, address: str, kind: str, reason: str, now: float, thing: str = "a message") -> None:
        """One message (or ``thing``) from ``address`` was dropped (``kind`` as counted in ``Stats``)."""
        if kind in _EXPECTED:
            self.logger.debug("%s dropped %s from %s: %s", self.what, thing,
                              address or "an unknown address", reason)
            return
        source = self._sources.get(address)
        if source is None:
            source = self._sources[address] = _Source()
            while len(self._sources) > _ADDRESSES:
                self._sources.popitem(last=False)
        source.count += 1
        source.unlogged += 1
        source.kinds[kind] = source.kinds.get(kind, 0) + 1
        source.reason = reason
        if now >= source.next_log:
            more = f" ({source.unlogged - 1} more since the last warning)" if source.unlogged > 1 else ""
            self.logger.warning(
                "%s dropped %s from %s: %s%s; %s (said at most once a minute per address)",
                self.what, thing, address or "an unknown address", reason, more, hint_for(kind),
            )
            source.unlogged = 0
            source.next_log = now + self.interval

    def take(self, stats: Any, address: str, now: float) -> None:
        """Log the drop a session noted in ``stats.last_drop`` as ``address``'s, and clear it.
        The socket code calls this when ``last_drop`` is set (one attribute read per message on
        the hot path; the address is looked up only then)."""
        kind, reason = stats.last_drop
        stats.last_drop = None
        self.dropped(address, kind, reason, now)

    def explain(self) -> str:
        """A sentence on what was dropped and from where ("" if nothing was), for errors."""
        if not self._sources:
            return ""
        total = sum(source.count for source in self._sources.values())
        address, source = max(self._sources.items(), key=lambda item: item[1].count)
        kind = max(source.kinds, key=lambda k: source.kinds[k])
        where = f"from {address}" if address else "from an unknown address"
        others = len(self._sources) - 1
        if others:
            where += f" and {others} other address{'es' if others > 1 else ''}"
        counted = f"{total} messages {where} were" if total != 1 else f"1 message {where} was"
        return f"; {counted} dropped ({source.reason}): {hint_for(kind)}"
