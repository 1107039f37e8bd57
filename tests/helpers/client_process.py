"""Run a client that binds ENDPOINT and serves until stdin closes (tests SIGKILL it).

    python -m tests.helpers.client_process ENDPOINT [--heartbeat S] [--liveness N]

Prints ``BOUND <endpoint>`` once bound, ``REGISTERED`` once a worker registered and
``PONG`` after a ``ping`` call to it succeeded.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from pirate_actors import Client

from .worker_process import say


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="client_process")
    parser.add_argument("endpoint")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--liveness", type=int, default=3)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with Client(options.endpoint, heartbeat=options.heartbeat, liveness=options.liveness) as client:
        say(f"BOUND {client.endpoint}")
        client.wait_for_worker(timeout=60)
        say("REGISTERED")
        if client.call("ping", timeout=30) == "pong":
            say("PONG")
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
