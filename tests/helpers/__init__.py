"""Helpers shared by the tests: procedures to serve, and scripts that run a worker or a client
in a subprocess so that tests can SIGKILL, SIGSTOP or simply abandon them."""
