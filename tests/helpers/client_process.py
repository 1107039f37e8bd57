"""Run a client that binds ENDPOINT and serves until stdin closes (tests SIGKILL or SIGSTOP it).

    python -m tests.helpers.client_process ENDPOINT [--heartbeat S] [--liveness N] [--busy N]

Prints ``BOUND <endpoint>`` once bound, ``REGISTERED`` once a worker registered and ``PONG``
after a ``ping`` call to it succeeded. With ``--busy N`` it then submits N calls of
``sleep(60)``, prints ``BUSY`` once all of them have started and ``ENDED <result or exception
type>`` as each ends. Each ``ping`` line on stdin
makes another ``ping`` call: ``PONG`` or ``FAILED <exception type>``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

from pirate_actors import Client

from .worker_process import say


def _report_end(future: Any) -> None:
    if future.cancelled():
        say("ENDED cancelled")
    elif future.exception() is not None:
        say(f"ENDED {type(future.exception()).__name__}")
    else:
        say(f"ENDED {future.result()!r}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="client_process")
    parser.add_argument("endpoint")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--liveness", type=int, default=3)
    parser.add_argument("--busy", type=int, default=0)
    parser.add_argument("--key-file", help="sign with the key in this file (the test's, not the environment's)")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    key = open(options.key_file, "rb").read() if options.key_file else None
    with Client(options.endpoint, heartbeat=options.heartbeat, liveness=options.liveness, key=key) as client:
        say(f"BOUND {client.endpoint}")
        client.wait_for_worker(timeout=60)
        say("REGISTERED")
        if client.call("ping", timeout=30) == "pong":
            say("PONG")
        if options.busy:
            started = threading.Semaphore(0)
            for _ in range(options.busy):
                future = client.submit("sleep", 60)
                future.add_partial_callback(
                    lambda future, message: started.release() if message == "started" else None
                )
                future.add_done_callback(_report_end)
            if all(started.acquire(timeout=30) for _ in range(options.busy)):
                say("BUSY")
        for line in sys.stdin:
            if line.strip() == "ping":
                try:
                    say("PONG" if client.call("ping", timeout=10) == "pong" else "WRONG")
                except Exception as exc:  # noqa: BLE001 - reported to the test
                    say(f"FAILED {type(exc).__name__}")
            elif line.strip() == "stop":
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
