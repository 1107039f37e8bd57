"""A client in a process of its own, for the client-restart scenario (the driver SIGKILLs it).

    python -m bench.lab.client_proc MODE BIND --key-file PATH --workers N
        [--heartbeat S] [--liveness N] [--calls K] [--seconds S] [--wait S]

It binds BIND and polls (every 10 ms) until N workers are registered, then prints
``REGISTERED <seconds from the bind to the last registration>``. MODE ``load`` then submits K
calls of ``nap(S)``, prints ``LOADED`` once every one has started and waits until stdin closes
(or a SIGKILL). MODE ``fresh`` submits K calls of ``nap(S)`` and prints
``DONE <succeeded> <failed> <hung>`` after at most ``--wait`` seconds. Timeouts print
``TIMEOUT <what>``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import logging
import sys
import threading
import time
from collections.abc import Sequence

from pirate_actors import Client


def say(line: str) -> None:
    print(line, flush=True)


def wait_registered(client: Client, count: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while len(client.workers()) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lab.client_proc")
    parser.add_argument("mode", choices=("load", "fresh"))
    parser.add_argument("bind")
    parser.add_argument("--key-file", required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--liveness", type=int, default=3)
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.1)
    parser.add_argument("--wait", type=float, default=30.0)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with open(options.key_file, "rb") as file:
        key = file.read().strip()
    client = Client(options.bind, key=key, heartbeat=options.heartbeat, liveness=options.liveness,
                    timeout=options.wait)
    bound = time.monotonic()
    with client:
        if not wait_registered(client, options.workers, options.wait):
            say(f"TIMEOUT registration: {len(client.workers())}/{options.workers} workers")
            return 1
        say(f"REGISTERED {time.monotonic() - bound:.3f}")
        futures = [client.submit("nap", options.seconds) for _ in range(options.calls)]
        if options.mode == "load":
            started = threading.Semaphore(0)
            for future in futures:
                future.add_partial_callback(
                    lambda f, message: started.release() if message == "started" else None)
            deadline = time.monotonic() + options.wait
            if not all(started.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in futures):
                say("TIMEOUT load: not every call started")
                return 1
            say("LOADED")
            sys.stdin.read()
            return 0
        done, pending = concurrent.futures.wait(futures, timeout=options.wait)
        failed = sum(1 for future in done if future.exception() is not None)
        say(f"DONE {len(done) - failed} {failed} {len(pending)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
