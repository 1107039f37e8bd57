"""Two saturating clients on one worker: how the pool is shared (SPEC §12).

    python -m bench.share [--seconds 30] [--work 0.01] [--depth 32] [--pool-size 4]

One worker process (``bench.pirate_procs:BenchProcedures``, ``--pool-size``) connects to two
client processes; each keeps ``--depth`` calls of ``work(--work)`` in flight for ``--seconds``
and counts its replies. Prints each client's calls served and share, against the ideal
(pool size ÷ work seconds, in all).
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time


def _free_endpoint() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


def client_main(endpoint: str, seconds: float, work: float, depth: int) -> int:
    """One saturating client: bind, wait for the worker, keep ``depth`` calls going."""
    from pirate_actors import Client

    with Client(endpoint) as client:
        client.wait_for_worker(timeout=30)
        print("READY", flush=True)
        sys.stdin.readline()  # "go": both start together
        slots = threading.Semaphore(depth)
        served = [0]
        end = time.monotonic() + seconds

        def done(future: object) -> None:
            if time.monotonic() <= end:
                served[0] += 1
            slots.release()

        while time.monotonic() < end:
            if slots.acquire(timeout=0.5):
                client.submit("work", work).add_done_callback(done)
        for _ in range(depth):
            slots.acquire(timeout=30)
        print(f"SERVED {served[0]}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.share", description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--work", type=float, default=0.01)
    parser.add_argument("--depth", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--client", metavar="ENDPOINT", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.client:
        return client_main(options.client, options.seconds, options.work, options.depth)
    endpoints = [_free_endpoint(), _free_endpoint()]
    clients = [
        subprocess.Popen([sys.executable, "-m", "bench.share", "--client", e, "--seconds",
                          str(options.seconds), "--work", str(options.work), "--depth", str(options.depth)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for e in endpoints
    ]
    script = os.path.join(os.path.dirname(sys.executable), "pirate-worker")
    worker = subprocess.Popen([script, "bench.pirate_procs:BenchProcedures", "--pool-size",
                               str(options.pool_size), *[a for e in endpoints for a in ("--connect", e)], "-q"],
                              stdin=subprocess.DEVNULL)
    try:
        for client in clients:
            assert client.stdout is not None and client.stdout.readline().strip() == "READY"
        for client in clients:
            assert client.stdin is not None
            client.stdin.write("go\n")
            client.stdin.flush()
        served = []
        for client in clients:
            assert client.stdout is not None
            line = client.stdout.readline().split()
            served.append(int(line[1]))
            client.wait(30)
    finally:
        worker.terminate()
        worker.wait(10)
    total = sum(served)
    ideal = options.pool_size / options.work * options.seconds
    print(f"two saturating clients, {options.seconds:g} s, pool {options.pool_size}, calls of {options.work:g} s: "
          f"client A {served[0]:,} ({served[0] / total:.0%}), client B {served[1]:,} ({served[1] / total:.0%}); "
          f"{total:,} in all, {total / ideal:.0%} of the ideal {ideal:,.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
