"""pirate-worker passes its options on to ``Worker`` unchanged, and its defaults are the library's."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from pirate_actors import Worker, cli

OPTIONS = {  # option -> Worker keyword
    "--result-ttl": "result_ttl",
    "--result-cache-size": "result_cache_size",
    "--event-buffer": "event_buffer",
    "--liveness": "liveness",
    "--heartbeat": "heartbeat",
    "--pool-size": "pool_size",
}


@pytest.mark.timeout(10)
def test_the_worker_options_default_to_the_worker_classes_defaults() -> None:
    defaults = vars(cli._worker_parser().parse_args(["demos.procedures:DemoProcedures"]))
    parameters = inspect.signature(Worker).parameters
    for option, keyword in OPTIONS.items():
        assert defaults[option[2:].replace("-", "_")] == parameters[keyword].default, option


@pytest.mark.timeout(10)
def test_the_worker_options_reach_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Recording(Worker):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            seen.update(kwargs)
            raise ValueError("recorded")  # a usage error: worker_main returns before serving

    monkeypatch.setattr(cli, "Worker", Recording)
    code = cli.worker_main([
        "demos.procedures:DemoProcedures", "--connect", "tcp://127.0.0.1:9",
        "--result-ttl", "7.5", "--result-cache-size", "1234", "--event-buffer", "9",
        "--liveness", "4", "--heartbeat", "0.5", "--pool-size", "3",
    ])
    assert code == 2
    assert {keyword: seen[keyword] for keyword in OPTIONS.values()} == {
        "result_ttl": 7.5, "result_cache_size": 1234, "event_buffer": 9,
        "liveness": 4, "heartbeat": 0.5, "pool_size": 3,
    }
