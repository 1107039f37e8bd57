"""The command line: ``pirate-worker`` serves a ProcedureActor, ``pirate-call`` calls procedures,
``pirate-listen`` prints events, ``pirate-keygen`` writes CURVE certificates.

The tools follow SPEC §8 and §13. Arguments given on the command line are only ever read as JSON,
never evaluated. Usage errors are one line on stderr and exit 2; every other exit code of
``pirate-call`` says how its (last failed) call ended, so scripts can tell "I called it wrong" (2:
nothing was sent) from "the call failed" (1, 3, 4, 5).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import queue
import re
import signal
import sys
import tempfile
import textwrap
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import zmq
import zmq.auth

from pirate_actors import (
    CallFuture,
    CallTimeout,
    Client,
    EventQueue,
    NoWorkerError,
    ProcedureActor,
    RemoteError,
    RemoteTraceback,
    Worker,
    WorkerCrashed,
    WorkerInfo,
    WorkerLost,
)
from pirate_actors._client import SIGNAL_PATIENCE
from pirate_actors._worker_engine import (
    DEFAULT_EVENT_BUFFER,
    DEFAULT_RESULT_CACHE_SIZE,
    DEFAULT_RESULT_TTL,
)

__all__ = ["call_main", "keygen_main", "listen_main", "worker_main"]

EXIT_OK = 0
EXIT_FAILED = 1  # the procedure raised, or a ProtocolError
EXIT_USAGE = 2  # bad options or arguments, or a local set-up error: nothing was sent
EXIT_NO_WORKER = 3
EXIT_TIMEOUT = 4
EXIT_WORKER_LOST = 5
EXIT_CRASHED = 70  # EX_SOFTWARE: pirate-worker gave up (procedure actors kept dying)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5550"
DEFAULT_STOP_TIMEOUT = 5.0
DEFAULT_METRICS_HOST = "127.0.0.1"
METRICS_INSTALL = "pip install 'pirate_actors[metrics]'"
_HELP_WIDTH = 79  # descriptions are wrapped here: their parsers keep the examples' lines as written
FORCED_EXIT_PATIENCE = 2.0  # after a second signal: how long the final goodbye may take
MIN_KEY_LENGTH = 16  # SPEC §7; checked here too so that the error can name the file

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SignalHandler = Callable[[int, "FrameType | None"], Any]


class UsageError(Exception):
    """A problem with what the user asked for: reported in one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (argparse's own repeat the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _usage_error(prog: str, message: str) -> int:
    """Print ``message`` as the one-line usage error of ``prog`` and return exit code 2."""
    print(f"{prog}: error: {_one_line(message)}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def _one_line(text: str, limit: int = 500) -> str:
    """Squash ``text`` to a single line of at most ``limit`` characters, for error messages."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _exit_code(exc: SystemExit) -> int:
    """The int code of a SystemExit raised by argparse (``--help`` → 0, errors → 2)."""
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)


# --- option types: each raises ArgumentTypeError, which argparse turns into a one-line error ---


def _positive_float(text: str) -> float:
    """A number of seconds greater than zero."""
    value = _float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    """A number of seconds, zero allowed."""
    value = _float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {text!r}")
    return value


def _float(text: str) -> float:
    """A finite float."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An int type for argparse that refuses values below ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, not {value}")
        return value

    return parse


def _port(text: str) -> int:
    """A TCP port number, 1 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, not {value}")
    return value


def _count(text: str) -> int:
    """``--count``: a positive number of calls, or -1 for "until interrupted"."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1 and value != -1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, or -1 for no limit, not {value}")
    return value


# --- shared set-up ---


def _add_common_options(
    parser: argparse.ArgumentParser, quiet_help: str, *, client_side: bool
) -> None:
    """The options the tools share: keys, CURVE certificates, --insecure, verbosity.

    ``client_side``: the tool binds (pirate-call, pirate-listen) and so is the CURVE server that
    takes ``--curve-authorized``; otherwise it connects (pirate-worker) and takes ``--curve-server``.
    """
    parser.add_argument(
        "--key-file",
        metavar="PATH",
        action="append",
        help="sign and check every message with the key in this file (at least 16 bytes; trailing "
        "newlines are ignored). Give it several times to rotate keys: messages are signed with the "
        "first and accepted under any of them. Default: the PIRATE_ACTORS_KEY environment variable "
        "(several keys separated by commas), else no key",
    )
    parser.add_argument(
        "--curve-secret",
        metavar="PATH",
        help="encrypt and authenticate the connection with CURVE, using this side's secret "
        "certificate (NAME.key_secret, from pirate-keygen); needs "
        + ("--curve-authorized" if client_side else "--curve-server"),
    )
    if client_side:
        parser.add_argument(
            "--curve-authorized",
            metavar="DIR",
            help="with --curve-secret: the folder of the public certificates (NAME.key) of the "
            "workers allowed in; certificates added later are honoured without a restart",
        )
    else:
        parser.add_argument(
            "--curve-server",
            metavar="PATH",
            help="with --curve-secret: the client's public certificate (NAME.key)",
        )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback endpoint without a key or CURVE (anyone who can reach it can "
        "run code)",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    verbosity.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def _configure_logging(verbose: bool, quiet: bool, library_level: int = logging.INFO) -> None:
    """Log to stderr (the library itself only logs): -v debug, -q warnings only, else info.

    Without -v or -q the library's own messages are shown from ``library_level`` up, so pirate-call
    can keep its output to the call itself.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not (verbose or quiet):
        logging.getLogger("pirate_actors").setLevel(library_level)


def _read_keys(paths: Sequence[str] | None) -> list[bytes] | None:
    """The keys of the ``--key-file`` options, in order (the first signs), or None when there are
    none (the library then reads ``PIRATE_ACTORS_KEY``)."""
    if not paths:
        return None
    return [_read_key(path) for path in paths]


def _read_key(path: str) -> bytes:
    """The key file's bytes without trailing CR/LF; UsageError if unreadable or too short."""
    try:
        with open(path, "rb") as file:
            key = file.read().rstrip(b"\r\n")
    except OSError as exc:
        raise UsageError(f"cannot read key file {path!r}: {exc.strerror or exc}") from None
    if len(key) < MIN_KEY_LENGTH:
        raise UsageError(
            f"key file {path!r} holds {len(key)} bytes; a key needs at least {MIN_KEY_LENGTH}"
        )
    return key


def _curve_files(options: argparse.Namespace) -> tuple[str | None, str | None]:
    """``--curve-secret`` and its partner (``--curve-server`` or ``--curve-authorized``), checked:
    both or neither, the files readable, the folder a folder. (None, None) without CURVE."""
    secret: str | None = options.curve_secret
    client_side = hasattr(options, "curve_authorized")
    peer: str | None = options.curve_authorized if client_side else options.curve_server
    peer_option = "--curve-authorized" if client_side else "--curve-server"
    if secret is None and peer is None:
        return None, None
    if secret is None:
        raise UsageError(
            f"{peer_option} needs --curve-secret too (this side's secret certificate, "
            "NAME.key_secret from pirate-keygen)"
        )
    if peer is None:
        wanted = (
            "the folder of the workers' public certificates"
            if client_side
            else "the client's public certificate, NAME.key"
        )
        raise UsageError(f"--curve-secret needs {peer_option} too ({wanted})")
    _check_readable(secret, "--curve-secret")
    if client_side:
        if not os.path.isdir(peer):
            what = "does not exist" if not os.path.exists(peer) else "is not a folder"
            raise UsageError(f"--curve-authorized {peer!r} {what}")
        try:
            os.listdir(peer)
        except OSError as exc:
            raise UsageError(f"cannot read --curve-authorized {peer!r}: {exc.strerror or exc}") from None
    else:
        _check_readable(peer, "--curve-server")
    return secret, peer


def _check_readable(path: str, option: str) -> None:
    """UsageError unless ``path`` is a file this process can read."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path!r} is a folder, not a certificate file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {option} {path!r}: {exc.strerror or exc}") from None


def _install_signal_handlers(handler: _SignalHandler) -> dict[int, Any]:
    """Route SIGINT and SIGTERM to ``handler``; return the previous handlers."""
    return {signum: signal.signal(signum, handler) for signum in _SIGNALS}


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    """Put back the handlers ``_install_signal_handlers`` replaced."""
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _wait_awake(wait: Callable[[float], object]) -> None:
    """Call ``wait(SIGNAL_PATIENCE)`` until it returns true: a wait that signals can end."""
    while not wait(SIGNAL_PATIENCE):
        pass


def _join_awake(thread: threading.Thread) -> None:
    """``thread.join()`` in slices of SIGNAL_PATIENCE."""
    while thread.is_alive():
        thread.join(SIGNAL_PATIENCE)


# --- pirate-worker ---


def _worker_parser() -> argparse.ArgumentParser:
    """The options of pirate-worker (SPEC §8)."""
    parser = _Parser(
        prog="pirate-worker",
        description=textwrap.fill(
            "Serve the public methods of a ProcedureActor subclass to the pirate_actors client "
            "bound at ENDPOINT. SIGINT or SIGTERM stops it gracefully: it takes no new calls, "
            "hands back those it never started, gives running calls --stop-timeout seconds to "
            "finish and then abandons the rest (the client counts them lost: their callers get "
            "WorkerLost), and exits 0. A second signal while it stops abandons the running "
            "calls at once (exit 1).", _HELP_WIDTH),
        epilog=_WORKER_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        metavar="MODULE:CLASS",
        help="the ProcedureActor subclass to serve, e.g. pirate_actors:FunctionActor; MODULE "
        "must be importable: installed, or a file or package in the current directory",
    )
    parser.add_argument(
        "--connect",
        metavar="ENDPOINT",
        action="append",
        help=f"a client's endpoint (default: {DEFAULT_ENDPOINT}); give it several times to serve "
        "several clients from one pool",
    )
    parser.add_argument(
        "--pool-size",
        metavar="N",
        type=_int_at_least(1),
        default=4,
        help="procedure actors, i.e. calls run at once (default: 4)",
    )
    parser.add_argument(
        "--prefetch",
        metavar="N",
        type=_int_at_least(0),
        default=None,
        help="calls that may wait inside the worker beyond the running ones "
        "(default: the pool size)",
    )
    parser.add_argument(
        "--name",
        help="the name the client shows for this worker (default: host, pid and a random suffix)",
    )
    parser.add_argument(
        "--heartbeat",
        metavar="S",
        type=_positive_float,
        default=1.0,
        help="seconds between heartbeats (default: 1.0)",
    )
    parser.add_argument(
        "--liveness",
        metavar="N",
        type=_int_at_least(2),
        default=3,
        help="missed heartbeats after which the client counts this worker dead (default: 3)",
    )
    parser.add_argument(
        "--stop-timeout",
        metavar="S",
        type=_non_negative_float,
        default=DEFAULT_STOP_TIMEOUT,
        help="after SIGINT/SIGTERM, seconds running calls may take to finish (default: "
        f"{DEFAULT_STOP_TIMEOUT:g}); calls still running then are abandoned: the client treats "
        "them as lost (the caller gets WorkerLost, unless the call is retryable and goes to "
        "another worker), the count is logged, and a result that comes later is dropped",
    )
    parser.add_argument(
        "--result-ttl",
        metavar="S",
        type=_non_negative_float,
        default=DEFAULT_RESULT_TTL,
        help="seconds the outcome of a retryable call is kept for a client that asks again "
        f"after losing this worker for a while (default: {DEFAULT_RESULT_TTL:g})",
    )
    parser.add_argument(
        "--result-cache-size",
        metavar="BYTES",
        type=_int_at_least(0),
        default=DEFAULT_RESULT_CACHE_SIZE,
        help="at most this many bytes of those outcomes, the oldest forgotten first "
        f"(default: {DEFAULT_RESULT_CACHE_SIZE // 2**20} MiB)",
    )
    parser.add_argument(
        "--event-buffer",
        metavar="N",
        type=_int_at_least(0),
        default=DEFAULT_EVENT_BUFFER,
        help=f"events kept while no client is registered, the newest (default: {DEFAULT_EVENT_BUFFER})",
    )
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=_port,
        default=None,
        help="serve the worker's counters for Prometheus on http://HOST:PORT/metrics "
        "(needs pip install 'pirate_actors[metrics]')",
    )
    parser.add_argument(
        "--metrics-host",
        metavar="HOST",
        default=DEFAULT_METRICS_HOST,
        help=f"the address --metrics-port listens on (default: {DEFAULT_METRICS_HOST}, this "
        "machine only; 0.0.0.0 for every interface)",
    )
    _add_common_options(parser, quiet_help="log warnings and errors only", client_side=False)
    return parser


_WORKER_EXAMPLES = """\
examples:
  pirate-worker pirate_actors:FunctionActor          # runs anywhere: serves RemoteExecutor's run()
  pirate-worker mymodule:MyProcedures --pool-size 8  # mymodule.py in the current directory
  pirate-worker pirate_actors:FunctionActor --connect tcp://127.0.0.1:5551 --metrics-port 9150
  pirate-worker demos.procedures:DemoProcedures      # the demo's class: from the repository's root

  Check what is registered: pirate-call tcp://127.0.0.1:5550 --workers
"""


def _load_actor_class(target: str) -> type[ProcedureActor]:
    """Import ``MODULE:CLASS`` and check it is a ProcedureActor subclass; UsageError otherwise."""
    module_name, colon, attribute = target.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(
            f"expected MODULE:CLASS, e.g. demos.procedures:DemoProcedures, not {target!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error raised while importing the user's module is their set-up's
        where = _where_raised(exc)
        raise UsageError(
            f"cannot import module {module_name!r}{where}: {type(exc).__name__}: "
            f"{exc.msg if isinstance(exc, SyntaxError) and where else exc}"
        ) from None
    found: object = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not (isinstance(found, type) and issubclass(found, ProcedureActor)):
        raise UsageError(f"{target} is not a subclass of pirate_actors.ProcedureActor")
    return found


def _where_raised(exc: BaseException) -> str:
    """`` (FILE, line N)`` of the user's code where an import failed, or "" when it failed
    before any of it ran (e.g. no such module): a SyntaxError's own place, else the innermost
    frame of the traceback that is neither this module nor the import machinery."""
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:
        return f" ({exc.filename}, line {exc.lineno})"
    machinery = (os.path.abspath(__file__), os.path.abspath(importlib.__file__ or ""))
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<frozen ")
        and os.path.abspath(frame.filename) not in machinery
    ]
    if not frames:
        return ""
    return f" ({frames[-1].filename}, line {frames[-1].lineno})"


class _Stopper:
    """Stops a pirate-worker when signalled: the first SIGINT/SIGTERM gracefully (running calls
    get ``timeout`` seconds, then are abandoned), a second one at once. Either way the client
    is told last: the worker's final DISCONNECT (and an "abandoned" answer to every running
    call) goes out before the process ends, so the client does not have to wait heartbeat ×
    liveness to find out."""

    def __init__(self, worker: Worker, timeout: float) -> None:
        self.worker = worker
        self.timeout = timeout
        self.asked = threading.Event()
        self.forced = threading.Event()
        self.stopped = threading.Event()
        """Set once ``worker.stop()`` returned: sockets closed, ZeroMQ's queues flushed."""
        self.running = 0
        """Calls running at the last look (sampled while the stop goes on)."""
        self.log = logging.getLogger("pirate-worker")
        self._threads = [
            threading.Thread(target=self._stop, name="pirate-worker-stop", daemon=True),
            threading.Thread(target=self._force, name="pirate-worker-force", daemon=True),
        ]

    def start(self) -> None:
        """Act on signals from now on (once the worker has started: a signal that came while it
        started is acted on now)."""
        for thread in self._threads:
            thread.start()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """First signal: graceful stop. Second: abandon running calls now. Third: just exit."""
        # Event.set is safe here: the main thread never holds these events' locks.
        if self.forced.is_set():
            os._exit(EXIT_FAILED)
        if self.asked.is_set():
            self.forced.set()
        self.asked.set()

    def wait(self) -> None:
        """After the worker stopped: wait for the graceful stop to finish; when forced, for the
        exit (which ``_force`` makes)."""
        if self.forced.is_set():
            _join_awake(self._threads[1])
        _join_awake(self._threads[0])

    def _stop(self) -> None:
        self.asked.wait()
        try:
            before = self.worker.stats(timeout=1.0)
        except Exception:  # stopped meanwhile: nothing to report
            before = {}
        self.running = int(before.get("in_flight", 0))
        queued = int(before.get("queued", 0))
        self.log.info(
            "stopping: %s%s", f"{self.running} running call(s) may take up to {self.timeout:g} s "
            "to finish (--stop-timeout)" if self.running else "no call is running",
            f"; {queued} call(s) not started go back to the client" if queued else "",
        )
        began = time.monotonic()
        stopping = threading.Thread(target=self._stop_worker, name="pirate-worker-leave",
                                    daemon=True)
        stopping.start()
        while True:  # watch how many calls still run, to say how many were abandoned
            stopping.join(0.05)
            if not stopping.is_alive():
                break
            try:
                self.running = int(self.worker.stats(timeout=0.5)["in_flight"])
            except Exception:  # the socket loop has ended: the last look stands
                break
        # A stop that ended before its deadline ended because no call was running any more.
        abandoned = self.running if time.monotonic() - began >= self.timeout else 0
        if abandoned and not self.forced.is_set():  # (if forced, _force said so)
            self.log.warning(
                "abandoned %d call(s) still running after the %g s stop timeout (--stop-timeout):"
                " the client counts them lost", abandoned, self.timeout,
            )
        stopping.join()

    def _stop_worker(self) -> None:
        try:
            self.worker.stop(timeout=self.timeout)
        except Exception:
            self.log.exception("stopping the worker failed")
        finally:
            self.stopped.set()

    def _force(self) -> None:
        """On the second signal: end the socket actor now, which answers every running call
        "abandoned" and sends the final DISCONNECT, give that a moment to go out, then exit 1."""
        self.forced.wait()
        try:
            self.log.warning(
                "second signal: leaving at once; %d running call(s) abandoned (the client counts "
                "them lost)", self.running,
            )
            # Worker.stop() cannot shorten a stop already under way, so stop its socket actor
            # directly: its on_stop says the final goodbye.
            ref = getattr(self.worker, "_ref", None)
            if ref is not None:
                try:
                    ref.stop(block=False)
                except Exception:
                    pass  # already stopped
            self.stopped.wait(FORCED_EXIT_PATIENCE)
            logging.shutdown()
            sys.stderr.flush()
        finally:
            os._exit(EXIT_FAILED)


def _start_metrics(worker: Worker, port: int, host: str) -> None:
    """Serve ``worker``'s Prometheus metrics; UsageError without prometheus_client or when the
    address cannot be bound."""
    try:
        from pirate_actors import _metrics
    except ImportError as exc:
        raise UsageError(
            f"--metrics-port needs the prometheus_client package ({exc}): {METRICS_INSTALL}"
        ) from None
    try:
        _metrics.serve_metrics(worker, port, host)
    except OSError as exc:
        raise UsageError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}"
        ) from None


def worker_main(argv: Sequence[str] | None = None) -> int:
    """Run ``pirate-worker``: serve MODULE:CLASS until SIGINT/SIGTERM; return the exit code."""
    parser = _worker_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exc:
        return _exit_code(exc)
    _configure_logging(options.verbose, options.quiet)
    log = logging.getLogger("pirate-worker")
    if os.getcwd() not in sys.path:
        sys.path.insert(
            0, os.getcwd()
        )  # as `python -m` does: serve classes from the current directory

    try:
        actor_class = _load_actor_class(options.target)
        keys = _read_keys(options.key_file)
        curve_secret, curve_server = _curve_files(options)
        worker = Worker(
            actor_class,
            options.connect or [DEFAULT_ENDPOINT],
            pool_size=options.pool_size,
            prefetch=options.prefetch,
            key=keys,
            heartbeat=options.heartbeat,
            liveness=options.liveness,
            name=options.name,
            insecure=options.insecure,
            result_ttl=options.result_ttl,
            result_cache_size=options.result_cache_size,
            event_buffer=options.event_buffer,
            curve_secret=curve_secret,
            curve_server=curve_server,
        )
        if options.metrics_port is not None:
            _start_metrics(worker, options.metrics_port, options.metrics_host)
    except (UsageError, ValueError) as exc:
        return _usage_error(parser.prog, str(exc))

    stopper = _Stopper(worker, options.stop_timeout)
    _install_signal_handlers(stopper.on_signal)
    try:
        worker.start()
    except (OSError, zmq.ZMQError, ValueError, RuntimeError) as exc:
        where = ", ".join(options.connect or [DEFAULT_ENDPOINT])
        return _usage_error(parser.prog, f"cannot start the worker on {where}: {exc}")
    stopper.start()
    if options.metrics_port is not None:
        log.info(
            "serving metrics on http://%s:%d/metrics",
            _url_host(options.metrics_host), options.metrics_port,
        )
    log.info(
        "started %s with %d procedure actors (capacity %d); SIGINT or SIGTERM stops it "
        "gracefully",
        options.target,
        options.pool_size,
        worker.capacity,
    )
    try:
        _wait_awake(worker.join)
    except WorkerCrashed as exc:
        log.error("%s", exc)
        return EXIT_CRASHED
    if not stopper.asked.is_set():
        log.error("the worker stopped by itself")
        return EXIT_FAILED
    stopper.wait()  # let stop() finish closing the sockets before the interpreter exits
    log.info("stopped")
    return EXIT_OK


def _url_host(host: str) -> str:
    """``host`` as it goes into a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


# --- pirate-call ---


def _call_parser() -> argparse.ArgumentParser:
    """The options of pirate-call (SPEC §8)."""
    parser = _Parser(
        prog="pirate-call",
        description=textwrap.fill(
            "Bind ENDPOINT, wait for a worker, call PROCEDURE and print its result (partial "
            "messages go to stderr as they arrive), or with --workers list the registered "
            "workers. Exit codes: 0 success, 1 the procedure raised (or a protocol error), 2 "
            "usage or local set-up error, 3 no worker, 4 call timeout, 5 worker lost; with "
            "several calls, the code of the last failed one.", _HELP_WIDTH),
        epilog=_CALL_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="the endpoint to bind, e.g. tcp://127.0.0.1:5550"
    )
    parser.add_argument(
        "procedure",
        metavar="PROCEDURE",
        nargs="?",
        help="the procedure to call, e.g. ping (required unless --workers)",
    )
    parser.add_argument(
        "--args",
        metavar="ARGS",
        default="[]",
        help="positional arguments: a JSON array, or the items of one "
        "('\"apple\", \"orange\"', '5'); one list argument is '[[1, 2]]'",
    )
    parser.add_argument(
        "--kwargs",
        metavar="KWARGS",
        default="{}",
        help="keyword arguments: a JSON object, or its members "
        '(\'"str1": "apple", "str2": "orange"\')',
    )
    parser.add_argument(
        "--count",
        metavar="N",
        type=_count,
        default=1,
        help="how many times to call (default: 1; -1: until SIGINT/SIGTERM); "
        "a count other than 1 ends with a summary line on stderr",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=_positive_float,
        default=5.0,
        help="seconds each call may take (default: 5)",
    )
    parser.add_argument(
        "--wait",
        metavar="S",
        type=_non_negative_float,
        default=5.0,
        help="seconds to wait for a worker to register (default: 5)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print results (and partials) as JSON instead of Python repr",
    )
    parser.add_argument(
        "--workers",
        action="store_true",
        help="call nothing: wait up to --wait for a worker, give others a heartbeat to register "
        "too, and print one line per registered worker (id, name, capacity, calls in flight, "
        "procedures), or a JSON array with --json; exit 3 if none came",
    )
    _add_common_options(
        parser,
        quiet_help="log warnings and errors only, and hide partial messages",
        client_side=True,
    )
    return parser


_CALL_EXAMPLES = """\
examples (a worker of any class will do for --workers; the calls need
`pirate-worker demos.procedures:DemoProcedures`, started in the repository):
  pirate-call tcp://127.0.0.1:5550 --workers                 # who is registered, and their capacity
  pirate-call tcp://127.0.0.1:5550 ping                      # 'pong'
  pirate-call tcp://127.0.0.1:5550 compare --args '"apple", "orange"' --json   # [false, 2]
  pirate-call tcp://127.0.0.1:5550 ping --count 1000 -q > /dev/null            # summary on stderr
"""


def parse_call_arguments(args_text: str, kwargs_text: str) -> tuple[list[Any], dict[str, Any]]:
    """Read ``--args`` and ``--kwargs`` as JSON (never evaluated); UsageError if they are not.

    ``--args`` is a JSON array, else the items of one (``5`` → ``[5]``); ``--kwargs`` is a JSON
    object, else the members of one.
    """
    args = _json_container(args_text, "[", "]", list, "--args", "a JSON array or its items")
    kwargs = _json_container(
        kwargs_text, "{", "}", dict, "--kwargs", "a JSON object or its members"
    )
    return args, kwargs


def _json_container(
    text: str, opening: str, closing: str, kind: type, option: str, expected: str
) -> Any:
    """``text`` as JSON of type ``kind``, else ``opening + text + closing`` as JSON of that type."""
    for candidate in (text, f"{opening}{text}{closing}"):
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, kind):
            return value
    raise UsageError(f"{option} must be {expected}, not {_one_line(text, 80)!r}")


class _Outcome:
    """How the calls of one pirate-call went: the summary line's numbers and the exit code."""

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.exit_code = EXIT_OK
        self.started: float | None = None
        self.finished: float | None = None

    def add(self, exit_code: int) -> None:
        """Count one finished call; a failed one sets the exit code (the last failure wins)."""
        self.calls += 1
        self.finished = time.perf_counter()
        if exit_code != EXIT_OK:
            self.errors += 1
            self.exit_code = exit_code

    def summary(self) -> str:
        """``N calls, E errors, X calls/s`` (SPEC §8)."""
        elapsed = (self.finished or 0.0) - (self.started or 0.0)
        rate = self.calls / elapsed if self.calls and elapsed > 0 else 0.0
        return f"{self.calls} calls, {self.errors} errors, {rate:.1f} calls/s"


class _Caller:
    """Makes the calls of one pirate-call, one at a time, in its own thread.

    Keeping the calls off the main thread means a signal only ever interrupts the main thread's
    wait, never the library half-way through a submit; ``interrupt()`` then cancels the call in
    flight from ordinary (non-signal) code.
    """

    def __init__(
        self, client: Client, options: argparse.Namespace, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        self.client = client
        self.options = options
        self.args = args
        self.kwargs = kwargs
        self.outcome = _Outcome()
        self.finished = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._wake: threading.Event | None = None

    def interrupt(self) -> None:
        """Stop after the call in flight, cancelling it if it has not finished."""
        self._stopping.set()
        with self._lock:
            if self._wake is not None:
                self._wake.set()

    def run(self) -> None:
        """Call ``--count`` times (-1: forever) unless interrupted; then set ``finished``."""
        try:
            remaining = self.options.count
            self.outcome.started = time.perf_counter()
            while remaining != 0 and not self._stopping.is_set():
                if not self._call_once():
                    return
                remaining -= 1
        except Exception:  # a bug here must not pass for success
            logging.getLogger("pirate-call").exception("the calls stopped on an unexpected error")
            self.outcome.exit_code = EXIT_FAILED
        finally:
            self.finished.set()

    def _call_once(self) -> bool:
        """Make one call and report it; False if it was interrupted (and so not counted)."""
        wake = threading.Event()
        with self._lock:
            self._wake = wake
        future = self.client.submit(self.options.procedure, *self.args, **self.kwargs)
        future.add_done_callback(lambda _: wake.set())
        if not self.options.quiet:
            future.add_partial_callback(self._print_partial)
        if self._stopping.is_set():
            wake.set()
        wake.wait(self.options.timeout)
        if not future.done():
            future.cancel()  # on timeout or interrupt: wherever the call is, it is dropped
        if future.done() and not future.cancelled():
            self.outcome.add(self._report(future))  # it finished by itself, maybe just in time
            return True
        if self._stopping.is_set():
            return False
        within = f"{self.options.procedure!r} within {self.options.timeout:g} s"
        if future.worker is None and not self.client.workers():
            # (queued behind busy workers is a timeout, not a missing worker)
            _print_error(f"NoWorkerError: no worker took {within}")
            self.outcome.add(EXIT_NO_WORKER)
        else:
            _print_error(f"CallTimeout: no reply to {within}")
            self.outcome.add(EXIT_TIMEOUT)
        return True

    def _report(self, future: CallFuture) -> int:
        """Print a finished call's result (stdout) or error (stderr); return its exit code."""
        error = future.exception()
        if error is None:
            return self._print_result(future.result())
        return _report_error(error)

    def _print_result(self, result: Any) -> int:
        """Print one result as repr, or JSON with --json; exit code 1 if JSON cannot express it."""
        if self.options.json:
            try:
                text = json.dumps(result)
            except (TypeError, ValueError) as exc:
                _print_error(f"the result cannot be printed as JSON ({exc}); its repr: {result!r}")
                return EXIT_FAILED
        else:
            text = repr(result)
        try:
            print(text, flush=True)
        except BrokenPipeError:  # e.g. `pirate-call ... --count -1 | head`: stop as if interrupted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            self._stopping.set()
        return EXIT_OK

    def _print_partial(self, future: CallFuture, message: Any) -> None:
        """Show a partial message on stderr as it arrives (called on the client's thread)."""
        if isinstance(message, str):
            text = message
        elif self.options.json:
            try:
                text = json.dumps(message)
            except (TypeError, ValueError):
                text = repr(message)
        else:
            text = repr(message)
        print(f"partial: {text}", file=sys.stderr, flush=True)


def _report_error(error: BaseException) -> int:
    """Print a failed call's error on stderr (with any remote traceback); return its exit code."""
    if isinstance(error, NoWorkerError):
        code = EXIT_NO_WORKER
    elif isinstance(error, CallTimeout):
        code = EXIT_TIMEOUT
    elif isinstance(error, WorkerLost):
        code = EXIT_WORKER_LOST
    else:  # the procedure raised (rebuilt or RemoteError), a ProtocolError, or any other failure
        code = EXIT_FAILED
    remote = ""
    if isinstance(error, RemoteError):
        remote = error.remote_traceback
        name = error.type_name if type(error) is RemoteError else type(error).__name__
        text = error.message
    else:
        if isinstance(error.__cause__, RemoteTraceback):
            remote = str(error.__cause__)
        name, text = type(error).__name__, str(error)
    if remote:
        print(remote.rstrip("\n"), file=sys.stderr)
    _print_error(f"{name}: {text}" if text else name)
    return code


def _print_error(message: str, prog: str = "pirate-call") -> None:
    """One ``PROG: error: ...`` line on stderr."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)


class _Interrupted(BaseException):
    """Raised in the main thread by the first SIGINT/SIGTERM of a pirate-call. Not an
    Exception, so that nothing catching those swallows it (logging's emit did, when the signal
    came while a line was being written)."""


def call_main(argv: Sequence[str] | None = None) -> int:
    """Run ``pirate-call``: bind, wait for a worker, make the calls; return the exit code."""
    parser = _call_parser()
    try:
        options = parser.parse_args(argv)
        if options.workers and options.procedure is not None:
            raise UsageError(
                f"--workers calls nothing: drop PROCEDURE ({options.procedure!r}) (see --help)"
            )
        if not options.workers and options.procedure is None:
            raise UsageError(
                "the following arguments are required: PROCEDURE (or --workers) (see --help)"
            )
        args, kwargs = parse_call_arguments(options.args, options.kwargs)
    except SystemExit as exc:
        return _exit_code(exc)
    except UsageError as exc:
        return _usage_error(parser.prog, str(exc))
    _configure_logging(options.verbose, options.quiet, library_level=logging.WARNING)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # so results and errors of the user's own types can be rebuilt

    try:
        keys = _read_keys(options.key_file)
        curve_secret, curve_authorized = _curve_files(options)
        client = Client(
            options.endpoint,
            key=keys,
            timeout=options.timeout,
            insecure=options.insecure,
            curve_secret=curve_secret,
            curve_authorized=curve_authorized,
        )
    except (UsageError, ValueError) as exc:  # an unreadable or short key, a refused endpoint
        return _usage_error(parser.prog, str(exc))
    try:
        client.start()
    except (OSError, zmq.ZMQError, ValueError) as exc:  # e.g. address in use
        return _usage_error(parser.prog, _bind_error(options.endpoint, exc))
    try:
        if options.workers:
            return _list_workers(client, options)
        return _run_calls(client, options, args, kwargs)
    finally:
        client.close()


def _bind_error(endpoint: str, exc: BaseException) -> str:
    """Why ``endpoint`` could not be bound, said once: the library's OSError already reads
    ``cannot bind ENDPOINT: REASON`` (its str() would add ``[Errno N]`` and repeat nothing
    useful)."""
    reason = exc.strerror if isinstance(exc, (OSError, zmq.ZMQError)) and exc.strerror else str(exc)
    reason = re.sub(r" \(addr='[^']*'\)$", "", reason)  # pyzmq's; the line names it already
    return reason if reason.startswith("cannot bind") else f"cannot bind {endpoint}: {reason}"


def _list_workers(client: Client, options: argparse.Namespace) -> int:
    """``pirate-call ENDPOINT --workers``: wait up to --wait for a first worker, then until no
    new one has come for a heartbeat (others connecting at the same time register within about
    one), and print them; exit 3 if none came."""
    interrupted: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not interrupted:
            interrupted.append(signum)
            raise _Interrupted

    previous = _install_signal_handlers(on_signal)
    try:
        client.wait_for_worker(timeout=options.wait)
        workers = _settled_workers(client)
    except NoWorkerError as exc:
        _print_error(f"NoWorkerError: {exc}")
        return EXIT_NO_WORKER
    except _Interrupted:
        _print_error(f"interrupted by {signal.Signals(interrupted[0]).name} before the workers "
                     "were listed")
        return 128 + interrupted[0]
    finally:
        _restore_signal_handlers(previous)
    if options.json:
        text = json.dumps([
            {"id": info.id, "name": info.name, "capacity": info.capacity,
             "in_flight": info.in_flight, "procedures": list(info.procedures),
             "idempotent": list(info.idempotent)}
            for info in workers
        ])
    else:
        text = _workers_table(workers)
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _settled_workers(client: Client) -> list[WorkerInfo]:
    """The registered workers once no new one has registered for one heartbeat (at most five
    heartbeats in all, so a steady trickle of workers cannot keep it waiting)."""
    quiet_for = client.heartbeat
    now = time.monotonic()
    give_up = now + 5 * quiet_for
    seen = {info.id for info in client.workers()}
    last_new = now
    while True:
        now = time.monotonic()
        if now - last_new >= quiet_for or now >= give_up:
            break
        time.sleep(min(0.05, quiet_for))
        current = {info.id for info in client.workers()}
        if current - seen:
            last_new = time.monotonic()
        seen |= current
    return sorted(client.workers(), key=lambda info: (info.name, info.id))


def _workers_table(workers: Sequence[WorkerInfo]) -> str:
    """One line per worker under a header: columns padded to their widest entry."""
    rows = [("ID", "NAME", "CAPACITY", "IN FLIGHT", "PROCEDURES")]
    rows += [
        (info.id, info.name, str(info.capacity), str(info.in_flight), " ".join(info.procedures))
        for info in workers
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) if column < 2 else cell.rjust(width)
                 for column, (cell, width) in enumerate(zip(row[:4], widths))]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return "\n".join(lines)


def _run_calls(
    client: Client, options: argparse.Namespace, args: list[Any], kwargs: dict[str, Any]
) -> int:
    """Wait for a worker and make the calls; the first SIGINT/SIGTERM stops them (SPEC §8)."""
    log = logging.getLogger("pirate-call")
    caller = _Caller(client, options, args, kwargs)
    thread = threading.Thread(target=caller.run, name="pirate-call", daemon=True)
    signalled: list[int] = []
    armed = [True]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        """Interrupt the main thread's wait, once and only while it waits."""
        if armed[0] and not signalled:
            signalled.append(signum)
            raise _Interrupted

    previous = _install_signal_handlers(on_signal)
    try:
        log.debug("bound %s; waiting up to %g s for a worker", options.endpoint, options.wait)
        try:
            client.wait_for_worker(timeout=options.wait)
        except NoWorkerError as exc:  # its message says what was dropped, if anything (SPEC §13)
            _print_error(f"NoWorkerError: {exc}")
            caller.outcome.exit_code = EXIT_NO_WORKER  # no call was made: none is counted
        else:
            thread.start()
            # Not thread.join(): before Python 3.13 a join interrupted by an exception from a signal
            # handler marks the thread as stopped while it still runs (bpo-45274's fix), so a second
            # join would return at once. Waiting on an Event is safe to interrupt.
            _wait_awake(caller.finished.wait)
        armed[0] = False
    except _Interrupted:
        armed[0] = False
        caller.interrupt()
        if thread.ident is not None:
            _wait_awake(caller.finished.wait)
    finally:
        _restore_signal_handlers(previous)
    if options.count != 1:
        print(caller.outcome.summary(), file=sys.stderr, flush=True)
    if signalled and thread.ident is None:  # still waiting for the first worker
        _print_error(
            f"interrupted by {signal.Signals(signalled[0]).name} before any worker registered "
            f"at {options.endpoint}; no call was made"
        )
        if options.count == 1:
            return 128 + signalled[0]
    elif signalled and options.count == 1 and caller.outcome.calls == 0:
        _print_error(f"interrupted by {signal.Signals(signalled[0]).name}; the call was cancelled")
        return 128 + signalled[0]  # the one call asked for never finished: say it was interrupted
    return caller.outcome.exit_code


# --- pirate-listen ---


def _listen_parser() -> argparse.ArgumentParser:
    """The options of pirate-listen (SPEC §11)."""
    parser = _Parser(
        prog="pirate-listen",
        description="Bind ENDPOINT and print each event the workers there emit, one per line "
        "(TOPIC DATA-repr, or a JSON object with --json), until SIGINT/SIGTERM (exit 0) or "
        "--count events. Exit code 2: usage or local set-up error.",
    )
    parser.add_argument(
        "endpoint", metavar="ENDPOINT", help="the endpoint to bind, e.g. tcp://127.0.0.1:5550"
    )
    parser.add_argument(
        "--topic", metavar="PREFIX", default="", help="only events whose topic starts with PREFIX"
    )
    parser.add_argument(
        "--count", metavar="N", type=_count, default=-1,
        help="stop after N events (default: -1, until SIGINT/SIGTERM)",
    )
    parser.add_argument(
        "--wait", metavar="S", type=_non_negative_float, default=0.0,
        help="first wait up to S seconds for a worker to register (default: 0, do not wait); "
        "exit 3 if none came",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per event")
    _add_common_options(parser, quiet_help="log warnings and errors only", client_side=True)
    return parser


def _event_line(event: Any, as_json: bool) -> str:
    """One event as pirate-listen prints it."""
    if not as_json:
        return f"{event.topic} {event.data!r}"
    record: dict[str, Any] = {"topic": event.topic, "worker": event.worker, "time": event.time}
    try:
        json.dumps(event.data)
        record["data"] = event.data
    except (TypeError, ValueError):
        record["data_repr"] = repr(event.data)  # JSON cannot express it: say what it was
    return json.dumps(record)


def listen_main(argv: Sequence[str] | None = None) -> int:
    """Run ``pirate-listen``: bind, print events until interrupted or ``--count``; exit code."""
    parser = _listen_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exc:
        return _exit_code(exc)
    _configure_logging(options.verbose, options.quiet, library_level=logging.WARNING)
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())  # so events carrying the user's own types can be rebuilt
    try:
        keys = _read_keys(options.key_file)
        curve_secret, curve_authorized = _curve_files(options)
        client = Client(
            options.endpoint,
            key=keys,
            insecure=options.insecure,
            curve_secret=curve_secret,
            curve_authorized=curve_authorized,
        )
    except (UsageError, ValueError) as exc:
        return _usage_error(parser.prog, str(exc))
    try:
        client.start()
    except (OSError, zmq.ZMQError, ValueError) as exc:
        return _usage_error(parser.prog, _bind_error(options.endpoint, exc))
    events = client.events(options.topic)  # before saying so: no event is missed after the line
    log = logging.getLogger("pirate-listen")
    stop = threading.Event()
    waiting = [True]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        """Stop listening; interrupt the wait for a first worker if it is still under way."""
        stop.set()
        if waiting[0]:
            waiting[0] = False
            raise _Interrupted

    previous = _install_signal_handlers(on_signal)
    try:
        if options.wait:
            log.debug("bound %s; waiting up to %g s for a worker", client.endpoint, options.wait)
            try:
                client.wait_for_worker(timeout=options.wait)
            except NoWorkerError as exc:
                _print_error(f"NoWorkerError: {exc}", parser.prog)
                return EXIT_NO_WORKER
        waiting[0] = False
        _listen(client, events, options, stop)
    except _Interrupted:
        pass  # a signal while waiting for a worker: nothing was missed, exit 0 as for one later
    finally:
        _restore_signal_handlers(previous)
        client.close()
    return EXIT_OK


def _listen(client: Client, events: EventQueue, options: argparse.Namespace,
            stop: threading.Event) -> None:
    """Print the events until ``stop`` is set, ``--count`` are printed or stdout closes."""
    logging.getLogger("pirate-listen").info(
        "listening on %s for events%s (%d worker(s) registered)", client.endpoint,
        f" on topics starting with {options.topic!r}" if options.topic else "",
        len(client.workers()),
    )
    try:
        left = options.count
        while left != 0 and not stop.is_set():
            try:
                event = events.get(timeout=0.2)
            except queue.Empty:
                continue
            print(_event_line(event, options.json), flush=True)
            if left > 0:
                left -= 1
    except BrokenPipeError:
        pass  # the reader went away (`| head`)


# --- pirate-keygen ---


def _keygen_parser() -> argparse.ArgumentParser:
    """The options of pirate-keygen (SPEC §13)."""
    parser = _Parser(
        prog="pirate-keygen",
        description="Write a new CURVE certificate pair: DIR/NAME.key, the public certificate, "
        "for the other side (a worker's goes into the client's --curve-authorized folder, the "
        "client's is the workers' --curve-server), and DIR/NAME.key_secret, the secret one, "
        "readable by you only (mode 0600), for this side's --curve-secret. Prints the two paths. "
        "Exit code 2: usage error, or NAME exists already (see --force).",
    )
    parser.add_argument(
        "directory",
        metavar="DIR",
        help="where to write the certificates (made, readable by you only, if missing)",
    )
    parser.add_argument(
        "name", metavar="NAME", help="the certificates' name, e.g. client or worker-1"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace an existing pair of that NAME (whoever holds the old one is then locked out)",
    )
    return parser


def _check_certificate_name(name: str) -> None:
    """UsageError unless ``name`` is a plain file name that an authorized folder would list."""
    if not name or name in (".", "..") or "/" in name or (os.altsep and os.altsep in name):
        raise UsageError(f"NAME must be a plain file name without '/', not {name!r}")
    if name.startswith("."):
        # zmq.auth reads an authorized folder with a glob, and globs skip hidden files
        raise UsageError(f"NAME must not start with '.': such a certificate would be ignored ({name!r})")
    if "\0" in name:
        raise UsageError("NAME must not contain a NUL character")


def keygen_main(argv: Sequence[str] | None = None) -> int:
    """Run ``pirate-keygen DIR NAME``: write a CURVE certificate pair; return the exit code."""
    parser = _keygen_parser()
    try:
        options = parser.parse_args(argv)
    except SystemExit as exc:
        return _exit_code(exc)
    try:
        public, secret = _write_certificates(Path(options.directory), options.name, options.force)
    except UsageError as exc:
        return _usage_error(parser.prog, str(exc))
    print(public)
    print(secret, flush=True)
    return EXIT_OK


def _write_certificates(directory: Path, name: str, force: bool) -> tuple[Path, Path]:
    """Write ``directory/name.key`` (mode 0644) and ``name.key_secret`` (0600); return their paths.

    The pair is made in a private temporary folder beside its final place and then renamed into
    it, so the secret is never readable by others, not even for a moment, and a replaced secret
    file's old, perhaps looser, mode does not carry over.
    """
    _check_certificate_name(name)
    public = directory / f"{name}.key"
    secret = directory / f"{name}.key_secret"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{str(directory)!r} exists and is not a folder") from None
    except OSError as exc:
        raise UsageError(f"cannot make the folder {str(directory)!r}: {exc.strerror or exc}") from None
    if not force:
        for path in (public, secret):
            if os.path.lexists(path):
                raise UsageError(
                    f"{str(path)!r} exists already; pass --force to replace the pair "
                    "(whoever holds the old certificate is then locked out)"
                )
    try:
        scratch = tempfile.mkdtemp(prefix=".pirate-keygen-", dir=directory)  # mode 0700
    except OSError as exc:
        raise UsageError(f"cannot write into {str(directory)!r}: {exc.strerror or exc}") from None
    try:
        made_public, made_secret = zmq.auth.create_certificates(scratch, name)
        os.chmod(made_secret, 0o600)
        os.chmod(made_public, 0o644)
        os.replace(made_secret, secret)
        os.replace(made_public, public)
    except OSError as exc:
        raise UsageError(f"cannot write the certificates: {exc.strerror or exc}") from None
    finally:
        for leftover in Path(scratch).iterdir():
            leftover.unlink()
        os.rmdir(scratch)
    return public, secret
