"""Procedures for ``bench/asyncwork.py``: the same 10 ms nap, on threads and on asyncio."""

from __future__ import annotations

import asyncio
import time

from pirate_actors import ProcedureActor


class ThreadSleeper(ProcedureActor):
    def nap(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


class AsyncSleeper(ProcedureActor):
    max_concurrency = 100

    async def nap(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds
