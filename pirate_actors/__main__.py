"""``python -m pirate_actors``: the version, and the console scripts that come with it."""

from __future__ import annotations

from . import __version__

_SCRIPTS = (
    ("pirate-worker", "serve a ProcedureActor subclass's procedures (MODULE:CLASS --connect ENDPOINT)"),
    ("pirate-call", "bind an endpoint, wait for a worker and call a procedure"),
    ("pirate-listen", "bind an endpoint and print the events workers emit"),
    ("pirate-keygen", "write a CURVE certificate pair (DIR NAME)"),
)


def main() -> int:
    print(f"pirate_actors {__version__}")
    print("console scripts (each takes --help):")
    for name, what in _SCRIPTS:
        print(f"  {name:14} {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
