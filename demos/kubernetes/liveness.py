"""Liveness probe for a pirate-worker started with --metrics-port: exit 0 if the worker's socket
loop answered this scrape, 1 if it did not.

    python demos/kubernetes/liveness.py [PORT] [TIMEOUT]     (defaults: 9150, 4 seconds)

The metrics page is made by asking the worker's socket actor for its counters
(``worker.stats()``). When that actor does not answer within 2 seconds, because its loop is
wedged or the worker is stopping, the page still comes back, with HTTP 200, but says
``pirate_actors_worker_up 0``. A plain HTTP probe would pass it; this one reads the value.
It also fails when the page does not come at all: the process is frozen, or nothing listens.

Whether the worker is registered with a client is printed, but does not count: a worker whose
client is away is alive, and restarting it would not bring the client back.
"""

from __future__ import annotations

import sys
import urllib.request


def _value(page: str, name: str) -> float | None:
    for line in page.splitlines():
        metric, _, value = line.partition(" ")
        if metric == name:
            try:
                return float(value)
            except ValueError:
                return None
    return None


def main(argv: list[str]) -> int:
    port = int(argv[0]) if argv else 9150
    timeout = float(argv[1]) if len(argv) > 1 else 4.0
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            page = response.read().decode("utf-8", "replace")
    except OSError as exc:
        print(f"not alive: no metrics from {url}: {exc}")
        return 1
    up = _value(page, "pirate_actors_worker_up")
    clients = _value(page, "pirate_actors_worker_registered_clients")
    if up != 1:
        print(f"not alive: the worker's loop did not answer the scrape (pirate_actors_worker_up {up})")
        return 1
    held = _value(page, "pirate_actors_worker_calls_held")
    capacity = _value(page, "pirate_actors_worker_capacity")
    print(f"alive: registered with {clients:g} client(s), holding {held:g} of {capacity:g} calls"
          if None not in (clients, held, capacity) else "alive")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
