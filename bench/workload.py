"""The work every RPC contender does per call, so that they all do the same.

- ``compare("uno", "dos")``: two short strings there, a short tuple back. A tuple and not a list,
  because RPyC passes only immutable values by value (a list would come back as a reference whose
  every use is another round trip) and marshal, msgpack and pickle all carry a tuple;
- ``echo(payload)``: 1 MiB of bytes there and the same bytes back.

Raw pyzmq and the design floor pickle nothing and call nothing: they echo one frame.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

ARGS = ("uno", "dos")
PAYLOAD_SIZE = 1 << 20        # 1 MiB
# Not all zeros, so that nothing on the way can treat it as a trivial case; raw pyzmq's server
# echoes any frame that does not start with b"S".
PAYLOAD = bytes(range(256)) * (PAYLOAD_SIZE // 256)


def compare(str1: str, str2: str) -> tuple[bool, int]:
    """``(True, 1)`` if the two are equal, else ``(False, 2)`` (the demo procedure's answer)."""
    return (True, 1) if str1 == str2 else (False, 2)


def echo(data: bytes) -> bytes:
    """The payload, back."""
    return data


def pid_after(seconds: float) -> int:
    """Sleep, then return this process's id (to find every process of a pool)."""
    time.sleep(seconds)
    return os.getpid()


def host_port(endpoint: str) -> tuple[str, int]:
    """``("127.0.0.1", 5555)`` from ``"tcp://127.0.0.1:5555"``."""
    host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
    return host, int(port)


def payload_mb(calls: float, size: int = PAYLOAD_SIZE) -> float:
    """MB (10⁶ bytes) moved by ``calls`` echo calls, both directions counted."""
    return calls * 2 * size / 1e6


def one_at_a_time(call: Callable[[], object], seconds: float) -> dict[str, Any]:
    """Call ``call()`` back to back for ``seconds``: the count and the time it took."""
    clock = time.perf_counter
    n = 0
    t0 = clock()
    deadline = t0 + seconds
    now = t0
    while now < deadline:
        call()
        n += 1
        now = clock()
    return {"count": n, "elapsed": now - t0}
