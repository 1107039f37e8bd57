"""pirate-worker --metrics-port (SPEC §15): a real worker process serves its counters in the
Prometheus text format, read from worker.stats() at each scrape; without prometheus_client the
option is a one-line usage error that says what to install."""

from __future__ import annotations

import re
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.cli.support import (
    Processes,
    console_script,
    described,
    free_port,
    run_call,
    run_tool,
    script_env,
)

pytestmark = pytest.mark.timeout(60)

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(port: int) -> dict[str, float]:
    """``name{labels}`` -> value of every sample at http://127.0.0.1:PORT/metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            match = SAMPLE.match(line)
            assert match, f"not a Prometheus sample line: {line!r}"
            key = match["name"] + (f"{{{match['labels']}}}" if match["labels"] else "")
            samples[key] = float(match["value"])
    return samples


def test_a_worker_serves_its_counters_for_prometheus_as_they_are_at_each_scrape(
    processes: Processes, endpoint: str
) -> None:
    port = free_port()
    worker = processes.worker(endpoint, "--metrics-port", str(port))
    worker.wait_for_line(rf"serving metrics on http://127\.0\.0\.1:{port}/metrics")
    before = scrape(port)
    assert before["pirate_actors_worker_up"] == 1
    assert before['pirate_actors_worker_call_entries_received_total{command="request"}'] == 0
    assert before["pirate_actors_worker_live_actors"] == 4
    assert before["pirate_actors_worker_capacity"] == 8  # 4 actors + prefetch 4
    assert before["pirate_actors_worker_oldest_call_seconds"] == 0  # nothing running

    for _ in range(2):
        result = run_call(endpoint, "ping", "--wait", "20")
        assert result.returncode == 0, described(result)
    call = processes.call(endpoint, "slow_succeed", "--args", "30", "--timeout", "60")
    call.wait_for_line(r"^partial: sleeping 30 s")
    during = scrape(port)
    assert during['pirate_actors_worker_call_entries_received_total{command="request"}'] == 3
    assert during['pirate_actors_worker_call_entries_sent_total{command="reply"}'] == 2
    assert during["pirate_actors_worker_calls_in_flight"] == 1  # read now, not counted apart
    assert 0 < during["pirate_actors_worker_oldest_call_seconds"] < 60  # the slow call's age
    assert during["pirate_actors_worker_registered_clients"] == 1
    for direction in ("received", "sent"):
        key = f'pirate_actors_worker_messages_total{{direction="{direction}"}}'
        assert during[key] > before[key], (key, before, during)
    for reason in ("malformed", "unauthenticated", "replayed", "late"):
        assert during[f'pirate_actors_worker_dropped_messages_total{{reason="{reason}"}}'] == 0
    assert during['pirate_actors_worker_events_total{outcome="sent"}'] == 0
    assert during["pirate_actors_worker_actor_replacements_total"] == 0
    assert during["pirate_actors_worker_duplicate_requests_total"] == 0
    call.kill()


def test_metrics_without_prometheus_client_is_a_usage_error_naming_the_extra(
    tmp_path: Path, endpoint: str
) -> None:
    blocker = tmp_path / "blocker" / "prometheus_client"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('not installed (test)')\n")
    result = subprocess.run(
        [console_script("pirate-worker"), "pirate_actors:FunctionActor", "--connect", endpoint,
         "--metrics-port", str(free_port())],
        cwd=tmp_path,
        env={**script_env(), "PYTHONPATH": str(blocker.parent)},
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 2, described(result)
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, described(
        result
    )
    assert "pip install 'pirate_actors[metrics]'" in result.stderr, described(result)


def test_a_metrics_port_in_use_is_a_usage_error_before_the_worker_registers(endpoint: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_tool(
            "pirate-worker", "pirate_actors:FunctionActor", "--connect", endpoint,
            "--metrics-port", str(port),
        )
    assert result.returncode == 2, described(result)
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr, described(result)
    assert "started" not in result.stderr, described(result)
