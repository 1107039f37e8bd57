"""Events per second from one worker to one client, against the partial stream, in one run.

    python -m bench.events [--n 100000] [--rounds 5]

A worker process serves ``bench.pirate_procs:BenchProcedures``; this process is its client. Each
round times one call whose procedure reports ``n`` partials and one whose procedure emits ``n``
events (the call returns after its last event, and events arrive before the reply), alternating.
Prints the medians and the events ÷ partials ratio of the paired rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time

from pirate_actors import Client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args(argv)
    script = os.path.join(os.path.dirname(sys.executable), "pirate-worker")
    with Client("tcp://127.0.0.1:*") as client:
        worker = subprocess.Popen([script, "bench.pirate_procs:BenchProcedures", "--connect",
                                   client.endpoint, "-q"], stdin=subprocess.DEVNULL)
        try:
            client.wait_for_worker(timeout=30)
            received = 0
            last = threading.Event()

            def count(event: object) -> None:
                nonlocal received
                received += 1
                if received == options.n:
                    last.set()

            client.subscribe(count, "bench")
            partials, events, ratios = [], [], []
            for _ in range(options.rounds):
                t0 = time.perf_counter()
                future = client.submit("stream", options.n)
                assert future.result(timeout=600) == options.n
                partial_rate = options.n / (time.perf_counter() - t0)
                received = 0
                last.clear()
                t0 = time.perf_counter()
                assert client.call("emit_events", options.n, timeout=600) == options.n
                assert last.wait(60), f"{received} of {options.n} events arrived"
                event_rate = options.n / (time.perf_counter() - t0)
                partials.append(partial_rate)
                events.append(event_rate)
                ratios.append(event_rate / partial_rate)
        finally:
            worker.terminate()
            worker.wait(10)
    print(f"{options.rounds} rounds of {options.n:,}: partials {statistics.median(partials):,.0f}/s, "
          f"events {statistics.median(events):,.0f}/s, events ÷ partials {statistics.median(ratios):.2f} "
          f"({min(ratios):.2f}–{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
