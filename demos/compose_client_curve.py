"""demos/compose_client.py over CURVE: the same batch of concurrent calls, with the client's
certificates given on the command line.

The compose demo's client container runs

    python demos/compose_client_curve.py 'tcp://*:5550' \\
        --curve-secret /certs/client.key_secret --curve-authorized /certs/authorized

Every other option is compose_client.py's (see ``--help`` there). It runs compose_client.main
with its ``Client`` made with ``curve_secret`` and ``curve_authorized``, so the two demos cannot
drift apart. A key in PIRATE_ACTORS_KEY, if set, is used as well (the library reads it).
"""

from __future__ import annotations

import argparse
import functools
import sys

import compose_client  # beside this file: python puts the script's folder first on sys.path

from pirate_actors import Client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=False)
    parser.add_argument("--curve-secret", required=True, metavar="PATH")
    parser.add_argument("--curve-authorized", required=True, metavar="DIR")
    ours, theirs = parser.parse_known_args(argv)
    compose_client.Client = functools.partial(  # type: ignore[misc]
        Client, curve_secret=ours.curve_secret, curve_authorized=ours.curve_authorized
    )
    return compose_client.main(theirs)


if __name__ == "__main__":
    sys.exit(main())
