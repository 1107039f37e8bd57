"""``python -m bench.lab [SCENARIO ...] [--short]``: the lab (see ``bench/lab/__init__.py``)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from .net import Network, enter_namespace, remove_leftovers, unavailable_reason
from .scenarios import DEFAULT, FULL, ROOT, SCENARIOS, SHORT, Lab, Outcome


class _Stopped(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, through every ``finally``."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


def _commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = done.stdout.strip() or "unknown"
    return commit + ("+changes" if dirty.stdout.strip() else "")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lab",
        description="Hosts made of network namespaces, worker processes in them, one client: "
        "throughput, a partition, churn and a client restart, each checked and printed on one "
        "line. Needs root; anywhere else it says why and skips (exit 0).")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                        help=f"any of {', '.join(SCENARIOS)} (default: {' '.join(DEFAULT)})")
    parser.add_argument("--short", action="store_true",
                        help="the CI form: 2 hosts x 3 workers, short durations (under a minute)")
    parser.add_argument("--churn-every", metavar="S", type=float, default=None,
                        help="seconds between kills in churn (default: 1, and 2 with --short)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the folder of logs and side-effect files even if all passed")
    parser.add_argument("-v", "--verbose", action="store_true", help="log to stderr too")
    options = parser.parse_args(argv)
    names = options.scenarios or list(DEFAULT)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")

    reason = unavailable_reason()
    if reason is not None:
        print(f"lab skipped: {reason}", flush=True)
        return 0

    settings = SHORT if options.short else FULL
    if options.churn_every is not None:
        if not options.churn_every > 0:
            parser.error("--churn-every must be > 0")
        settings = dataclasses.replace(settings, churn_every=options.churn_every)
    folder = Path(tempfile.mkdtemp(prefix="pirate-lab-"))
    os.chmod(folder, 0o755)
    logging.basicConfig(
        level=logging.INFO, filename=folder / "driver.log",
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if options.verbose:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(logging.WARNING)
        logging.getLogger().addHandler(console)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    removed = remove_leftovers()
    if removed:
        print(f"removed the namespaces of a crashed run: {', '.join(removed)}", flush=True)

    form = "short" if options.short else "full"
    header = (f"lab ({form}), {datetime.date.today().isoformat()}, commit {_commit()}, "
              f"{os.cpu_count()} cores: {settings.describe()}")
    print(header, flush=True)
    outcomes: list[Outcome] = []
    net = Network(settings.hosts, folder)
    interrupted: str | None = None
    started = time.monotonic()
    try:
        net.open()
        enter_namespace(net.client_ns)  # before any thread: the client and its children live there
        lab = Lab(net, settings, folder, secrets.token_hex(32).encode())
        lab.fleet.start_all()
        for name in names:
            try:
                outcome = SCENARIOS[name](lab)
            except Exception as exc:  # noqa: BLE001 - a broken scenario fails, the others run
                logging.getLogger("bench.lab").exception("scenario %s", name)
                outcome = Outcome(name, False, f"{name}: FAIL ({type(exc).__name__}: {exc})")
            outcomes.append(outcome)
            print(outcome.line, flush=True)
    except KeyboardInterrupt:
        interrupted = "SIGINT"
    except _Stopped as exc:
        interrupted = str(exc)
    finally:
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            net.close()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    passed = sum(1 for o in outcomes if o.passed)
    print(f"\nsummary: {header}", flush=True)
    for outcome in outcomes:
        print(f"  {outcome.line}")
    if interrupted:
        print(f"lab interrupted ({interrupted}) after {len(outcomes)} scenario(s); "
              "namespaces and processes removed", flush=True)
    print(f"lab: {passed}/{len(names)} scenarios passed in {time.monotonic() - started:.0f} s"
          + ("" if passed == len(names) and not interrupted else f"; logs in {folder}"), flush=True)
    if passed == len(names) and not interrupted and not options.keep:
        shutil.rmtree(folder, ignore_errors=True)
    if interrupted:
        return 130
    return 0 if passed == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
