"""Run a worker serving ``FaultProcedures`` until stdin says ``stop``, closes, or SIGTERM.

    python -m tests.helpers.worker_process ENDPOINT [--heartbeat S] [--liveness N]
        [--pool-size N] [--prefetch N] [--name NAME] [--key-hex HEX] [--max-message-size N]
        [--watch] [--also ENDPOINT ...]

Prints ``READY <pid> <worker id>`` once started and ``STOPPED`` after a graceful stop. With
``--watch`` it also prints ``REGISTERED`` and ``UNREGISTERED`` as the worker's registration with
its client comes and goes (it looks every 10 ms).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from pirate_actors import Worker

from .procedures import FaultProcedures


def _exit(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _watch(worker: Worker) -> None:
    registered = False
    while worker.running:
        try:
            now = bool(worker.stats(timeout=1.0)["registered"])
        except Exception:  # noqa: BLE001 - stopping
            return
        if now != registered:
            registered = now
            say("REGISTERED" if now else "UNREGISTERED")
        time.sleep(0.01)


def say(line: str) -> None:
    try:
        print(line, flush=True)
    except (BrokenPipeError, ValueError):
        pass  # nobody listens any more


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="worker_process")
    parser.add_argument("endpoint")
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--liveness", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--prefetch", type=int, default=None)
    parser.add_argument("--name", default=None)
    parser.add_argument("--key-hex", default=None)
    parser.add_argument("--max-message-size", type=int, default=None)
    parser.add_argument("--watch", action="store_true")
    parser.add_argument("--also", action="append", default=[], help="another client endpoint")
    options = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    kwargs: dict[str, Any] = {}
    if options.max_message_size is not None:
        kwargs["max_message_size"] = options.max_message_size
    worker = Worker(
        FaultProcedures, [options.endpoint, *options.also],
        pool_size=options.pool_size, prefetch=options.prefetch,
        heartbeat=options.heartbeat, liveness=options.liveness, name=options.name,
        key=bytes.fromhex(options.key_hex) if options.key_hex else None, **kwargs,
    )
    signal.signal(signal.SIGTERM, _exit)
    worker.start()
    say(f"READY {os.getpid()} {worker.id}")
    if options.watch:
        threading.Thread(target=_watch, args=(worker,), name="watch", daemon=True).start()
    try:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
    finally:
        worker.stop()
    say("STOPPED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
