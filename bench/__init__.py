"""Benchmark harness for pirate_actors: raw pyzmq, pirate_actors and zerorpc measured in one run.

Run it from the repository root with ``python -m bench`` (``--quick`` for a short run,
``--json PATH`` to write the results). See ``bench/README.md``.
"""
