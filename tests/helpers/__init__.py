"""Helpers shared by the tests: procedures to serve, and scripts that run a worker or a client
in a subprocess so that tests can SIGKILL, SIGSTOP or simply abandon them."""

FAST = {"heartbeat": 0.2, "liveness": 3}
"""The settings of the fault scenarios: a peer silent for 0.6 s is dead."""
