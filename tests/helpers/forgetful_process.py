"""Use a Client and/or a Worker, never call ``close()``/``stop()``, and fall off the end of main.

    python -m tests.helpers.forgetful_process MODE

MODE is one of:

- ``idle``: a client and a worker; one call made and answered.
- ``call-in-flight``: as ``idle``, plus a call still running in the worker at exit.
- ``lonely-worker``: a worker whose client never appears.
- ``queued-call``: a client with a call that waits for a worker that never comes.

Prints ``DONE`` just before main returns; the test measures how long the exit takes after that.
"""

from __future__ import annotations

import socket
import sys
import threading

from pirate_actors import Client, Worker

from .procedures import FaultProcedures
from .worker_process import say

MODES = ("idle", "call-in-flight", "lonely-worker", "queued-call")


def _unused_endpoint() -> str:
    """A loopback endpoint nobody listens on (the port is released before the worker connects)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


def main(mode: str) -> int:
    if mode not in MODES:
        print(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}", file=sys.stderr)
        return 2
    if mode == "lonely-worker":
        Worker(FaultProcedures, _unused_endpoint(), heartbeat=0.2).start()
    elif mode == "queued-call":
        client = Client("tcp://127.0.0.1:*", timeout=60).start()
        client.submit("ping")
    else:
        client = Client("tcp://127.0.0.1:*").start()
        Worker(FaultProcedures, client.endpoint, pool_size=2).start()
        client.wait_for_worker(timeout=10)
        assert client.call("ping", timeout=10) == "pong"
        if mode == "call-in-flight":
            started = threading.Event()
            future = client.submit("sleep", 60)
            future.add_partial_callback(lambda f, m: started.set() if m == "started" else None)
            assert started.wait(10), "the long call never started"
    say("DONE")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else ""))
