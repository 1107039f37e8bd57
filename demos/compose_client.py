"""Spread a batch of calls over every registered worker and show who served each one.

Part of the compose demo (demos/compose.yaml): after the seed's calls, the client
container runs

    python demos/compose_client.py 'tcp://*:5550'

It binds the endpoint, waits until the workers have (re)registered, submits
``--calls`` concurrent ``slow_succeed`` calls, prints the worker that served each
call and exits 0 only if every call succeeded and every registered worker served
at least one of them (so with three workers, calls were served by three workers).
``--min-workers`` (or DEMO_MIN_WORKERS) makes it fail when fewer workers showed up.
The key comes from PIRATE_ACTORS_KEY, as for the command-line tools.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time

from pirate_actors import Client, PirateError


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("endpoint", nargs="?", default="tcp://*:5550")
    parser.add_argument("--calls", type=int, default=24, help="concurrent calls (default 24)")
    parser.add_argument(
        "--seconds", type=float, default=0.5, help="how long each slow_succeed call sleeps"
    )
    parser.add_argument(
        "--min-workers",
        type=int,
        default=_env_int("DEMO_MIN_WORKERS", 1),
        help="fail unless at least this many workers registered (default DEMO_MIN_WORKERS or 1)",
    )
    parser.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the workers (default 30)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds without a new registration before the calls start (default 2)",
    )
    return parser.parse_args(argv)


def wait_for_workers(client: Client, wanted: int, wait: float, settle: float) -> int:
    """Wait until at least ``wanted`` workers are registered and no more are arriving."""
    deadline = time.monotonic() + wait
    client.wait_for_worker(timeout=wait)
    count = len(client.workers())
    changed = time.monotonic()
    while time.monotonic() < deadline:
        now_count = len(client.workers())
        if now_count != count:
            count, changed = now_count, time.monotonic()
        if count >= wanted and time.monotonic() - changed >= settle:
            break
        time.sleep(0.1)
    return count


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with Client(args.endpoint) as client:
        try:
            registered = wait_for_workers(client, args.min_workers, args.wait, args.settle)
        except PirateError as exc:
            print(f"no worker registered within {args.wait:g} s: {exc}", file=sys.stderr)
            return 3
        names = {info.id: info.name for info in client.workers()}
        print(f"{registered} worker(s) registered: {', '.join(sorted(names.values()))}")

        futures = [client.submit("slow_succeed", args.seconds) for _ in range(args.calls)]
        failures = 0
        for number, future in enumerate(futures, 1):
            try:
                outcome = repr(future.result(timeout=args.wait + args.seconds * args.calls))
            except Exception as exc:  # report every call, then give the verdict
                failures += 1
                outcome = f"{type(exc).__name__}: {exc}"
            worker = names.get(future.worker or "", future.worker)
            print(f"call {number:2d}: slow_succeed({args.seconds:g}) -> {outcome}  served by {worker}")

    served = collections.Counter(names.get(f.worker or "", f.worker) for f in futures)
    summary = ", ".join(f"{name}: {count}" for name, count in sorted(served.items(), key=str))
    print(f"calls per worker: {summary}")
    print(f"{args.calls} calls served by {len(served)} of {registered} registered worker(s)")

    if failures:
        print(f"FAIL: {failures} call(s) failed", file=sys.stderr)
        return 1
    if registered < args.min_workers:
        print(f"FAIL: expected at least {args.min_workers} workers", file=sys.stderr)
        return 1
    if len(served) < registered:
        print("FAIL: not every registered worker served a call", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
