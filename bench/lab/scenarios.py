"""The lab's scenarios: each takes the :class:`Lab` and returns an :class:`Outcome` whose line
carries its figures and its verdict. Every check is on counts taken in the run: futures'
outcomes and attempts on the client's side, runs recorded by the procedures themselves
(``bench.lab.procs``) on the workers' side, and registration times polled every 10 ms with the
machine-wide monotonic clock."""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from pirate_actors import Client, PirateError

from .net import Network
from .procs import Run, read_runs

logger = logging.getLogger("bench.lab")

ROOT = Path(__file__).resolve().parents[2]
PORT = 5600
"""The client binds this port in its own namespace; each host reaches it at its own gateway."""


@dataclass(frozen=True)
class Settings:
    hosts: int
    per_host: int
    """Worker processes per host."""
    pool_size: int = 4
    heartbeat: float = 0.25
    liveness: int = 4
    register_timeout: float = 90.0
    """How long the whole fleet may take to start and register (32 processes on 2 cores)."""
    # throughput
    in_flight: int = 256
    nap: float = 0.1
    warmup: float = 3.0
    window: float = 30.0
    # partition
    partition_load: int = 64
    partition_work: float = 1.0
    cut: float = 10.0
    after_heal: float = 2.0
    # churn
    churn_seconds: int = 60
    churn_every: float = 1.0
    """Seconds between kills."""
    churn_load: int = 128
    churn_work: float = 0.2
    # client restart
    restart_nap: float = 3.0
    restart_calls: int = 256
    drain: float = 30.0
    """How long calls may take to end once the load stops before they count as hung."""

    @property
    def detection_bound(self) -> float:
        return self.heartbeat * self.liveness + 1.0

    def describe(self) -> str:
        return (f"{self.hosts} hosts x {self.per_host} worker processes (pool_size {self.pool_size}), "
                f"heartbeat {self.heartbeat:g} s x liveness {self.liveness} on both sides")


FULL = Settings(hosts=4, per_host=8)
SHORT = Settings(
    hosts=2, per_host=3, register_timeout=60.0, in_flight=64, warmup=2.0, window=6.0,
    partition_load=12, partition_work=0.5, cut=4.0, after_heal=1.0,
    churn_seconds=16, churn_every=2.0, churn_load=24, restart_nap=1.5, restart_calls=48, drain=20.0,
)

REREGISTRATION_BOUND = 1.5
"""SPEC §5 and the issue: a worker registers within 1.5 s of a client's bind or a heal."""


@dataclass
class Outcome:
    name: str
    passed: bool
    line: str


def verdict(problems: list[str]) -> str:
    return "PASS" if not problems else "FAIL (" + "; ".join(problems) + ")"


# --------------------------------------------------------------------------- the fleet


@dataclass
class Member:
    name: str
    host: int
    process: subprocess.Popen[bytes]


class Fleet:
    """The worker processes (``pirate-worker bench.lab.procs:LabProcedures``) on the hosts."""

    def __init__(self, net: Network, settings: Settings, key_file: Path) -> None:
        self.net = net
        self.settings = settings
        self.key_file = key_file
        self.members: dict[str, Member] = {}
        self._numbers = itertools.count()

    def _argv(self, host: int, name: str) -> list[str]:
        script = Path(sys.executable).with_name("pirate-worker")
        command = [str(script)] if script.exists() else [
            sys.executable, "-c", "import sys; from pirate_actors.cli import worker_main; "
            "sys.exit(worker_main())"]
        s = self.settings
        return [*command, "bench.lab.procs:LabProcedures",
                "--connect", f"tcp://{self.net.client_address(host)}:{PORT}",
                "--pool-size", str(s.pool_size), "--heartbeat", f"{s.heartbeat:g}",
                "--liveness", str(s.liveness), "--key-file", str(self.key_file),
                "--name", name, "-q"]

    def start(self, host: int) -> str:
        name = f"h{host}-w{next(self._numbers)}"
        process = self.net.start(host, self._argv(host, name), name, ROOT)
        self.members[name] = Member(name, host, process)
        return name

    def start_all(self) -> None:
        for worker in range(self.settings.per_host):
            for host in range(self.settings.hosts):
                self.start(host)

    def kill(self, name: str) -> None:
        member = self.members.pop(name)
        member.process.kill()
        member.process.wait(10)

    def names(self, host: int | None = None) -> list[str]:
        return [m.name for m in self.members.values() if host is None or m.host == host]

    def pids(self, host: int) -> set[int]:
        return {m.process.pid for m in self.members.values() if m.host == host}

    def dead(self) -> list[str]:
        return [f"{m.name} (exit {m.process.returncode})" for m in self.members.values()
                if m.process.poll() is not None]


@dataclass
class Lab:
    net: Network
    settings: Settings
    folder: Path
    """Logs, the key and the procedures' side-effect files."""
    key: bytes
    fleet: Fleet = field(init=False)

    def __post_init__(self) -> None:
        key_file = self.folder / "key"
        key_file.write_bytes(self.key)
        key_file.chmod(0o600)
        self.fleet = Fleet(self.net, self.settings, key_file)

    @property
    def bind(self) -> str:
        return f"tcp://0.0.0.0:{PORT}"

    def client(self, **options: Any) -> Client:
        s = self.settings
        settings = {"heartbeat": s.heartbeat, "liveness": s.liveness, "timeout": 30.0, **options}
        return Client(self.bind, key=self.key, **settings)  # started by its with block

    def side_effects(self, scenario: str) -> str:
        folder = self.folder / scenario
        folder.mkdir(exist_ok=True)
        return str(folder)


def registered_names(client: Client) -> dict[str, str]:
    """name -> id of the workers registered now."""
    return {info.name: info.id for info in client.workers()}


def wait_registered(client: Client, names: Iterable[str], timeout: float) -> float | None:
    """Poll until every one of ``names`` is registered: the time it was seen, or None."""
    wanted = set(names)
    deadline = time.monotonic() + timeout
    while True:
        now = time.monotonic()
        if wanted <= set(registered_names(client)):
            return now
        if now > deadline:
            return None
        time.sleep(0.01)


def fleet_ready(lab: Lab, client: Client) -> list[str]:
    """Problems that keep the whole fleet from being registered with ``client``."""
    names = lab.fleet.names()
    if wait_registered(client, names, lab.settings.register_timeout) is not None:
        return []
    missing = sorted(set(names) - set(registered_names(client)))
    dead = lab.fleet.dead()
    return [f"{len(missing)} of {len(names)} workers never registered"
            + (f", dead: {', '.join(dead)}" if dead else "")]


# --------------------------------------------------------------------------- load


@dataclass
class Call:
    tag: int
    kind: str
    future: concurrent.futures.Future[Any]
    submitted: float
    ended: float | None = None


class Load:
    """Keeps ``in_flight`` calls going, from a thread of its own, until :meth:`stop`.
    ``make(tag)`` returns ``(kind, procedure, args)`` for each new call."""

    def __init__(self, client: Client, in_flight: int,
                 make: Callable[[int], tuple[str, str, tuple[Any, ...]]]) -> None:
        self.client = client
        self.make = make
        self.calls: dict[int, Call] = {}
        self._slots = threading.Semaphore(in_flight)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="lab load", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Load:
        self._thread.start()
        return self

    def _feed(self) -> None:
        try:
            for tag in itertools.count():
                while not self._slots.acquire(timeout=0.1):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                kind, procedure, args = self.make(tag)
                call = Call(tag, kind, self.client.submit(procedure, *args), time.monotonic())
                self.calls[tag] = call
                call.future.add_done_callback(lambda f, call=call: self._ended(call))
        except BaseException as exc:  # noqa: BLE001 - reported by the scenario
            self.error = exc

    def _ended(self, call: Call) -> None:
        call.ended = time.monotonic()
        self._slots.release()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def drain(self, timeout: float) -> set[int]:
        """Wait up to ``timeout`` for every call to end; the tags of those that did not."""
        calls = list(self.calls.values())
        _, pending = concurrent.futures.wait([c.future for c in calls], timeout=timeout)
        return {c.tag for c in calls if c.future in pending}


def outcome_name(future: concurrent.futures.Future[Any]) -> str:
    if future.cancelled():
        return "cancelled"
    exception = future.exception(timeout=0)
    return "ok" if exception is None else type(exception).__name__


def first_failure(calls: Iterable[Call], hung: set[int]) -> str:
    """The first failed call's exception and the workers it was sent to, for a FAIL line."""
    for call in calls:
        if call.tag in hung or not call.future.done() or call.future.cancelled():
            continue
        exception = call.future.exception(timeout=0)
        if exception is not None:
            return f"first: {call.kind} call {call.tag}: {type(exception).__name__}: {exception}"
    return ""


def wait_until(deadline: float) -> None:
    """Sleep until ``deadline`` (the scenario's own timeline: cut for 10 s, one kill a second)."""
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))


# --------------------------------------------------------------------------- throughput


def throughput(lab: Lab) -> Outcome:
    """256 calls of a 100 ms procedure kept in flight; completions counted in a window after
    the whole fleet registered and a warm-up."""
    s = lab.settings
    name = "throughput"
    with lab.client() as client:
        problems = fleet_ready(lab, client)
        if problems:
            return Outcome(name, False, f"{name}: {verdict(problems)}")
        workers = client.workers()
        capacity = sum(info.capacity for info in workers)
        actors = len(workers) * s.pool_size
        ideal = min(s.in_flight, actors) / s.nap
        load = Load(client, s.in_flight, lambda tag: ("nap", "nap", (s.nap,))).start()
        begin = time.monotonic() + s.warmup
        wait_until(begin)
        end = begin + s.window
        wait_until(end)
        load.stop()
        hung = load.drain(s.drain)
    outcomes = Counter(outcome_name(c.future) for c in load.calls.values() if c.tag not in hung)
    counted = sum(1 for c in load.calls.values()
                  if c.ended is not None and begin <= c.ended < end and outcome_name(c.future) == "ok")
    rate = counted / s.window
    share = rate / ideal
    failed = sum(n for kind, n in outcomes.items() if kind != "ok")
    problems = []
    if share < 0.8:
        problems.append(f"{share:.1%} of the ideal is below 80 %")
    if failed:
        problems.append(f"{failed} calls failed: {dict(outcomes)}, "
                        f"{first_failure(load.calls.values(), hung)}")
    if hung:
        problems.append(f"{len(hung)} calls hung")
    if load.error is not None:
        problems.append(f"the load stopped: {load.error!r}")
    line = (
        f"{name}: {len(workers)} workers on {s.hosts} hosts ({actors} actors, capacity {capacity}), "
        f"{s.in_flight} calls of a {s.nap * 1000:g} ms procedure in flight, {s.window:g} s window "
        f"after a {s.warmup:g} s warm-up: {rate:,.0f} calls/s = {share:.1%} of the ideal "
        f"{ideal:,.0f}/s (>= 80 %), {failed} failed, {len(hung)} hung: {verdict(problems)}"
    )
    return Outcome(name, not problems, line)


# --------------------------------------------------------------------------- partition


def partition(lab: Lab) -> Outcome:
    """One host's link cut for ``cut`` seconds under a load of idempotent calls, then healed:
    the issue's partition. The other hosts have room, so the client sends the cut-off calls
    there as soon as it has given the host up."""
    return _partition(lab, "partition", [lab.settings.hosts - 1])


def isolation(lab: Lab) -> Outcome:
    """Every host's link cut at once (the client's own network fails), then healed: the calls
    that were out have nowhere else to go, so they are sent again once the workers are back,
    and what finished during the cut must come from the outcomes the workers kept (SPEC §10)."""
    return _partition(lab, "isolation", list(range(lab.settings.hosts)))


def _partition(lab: Lab, name: str, hosts: list[int]) -> Outcome:
    s = lab.settings
    folder = lab.side_effects(name)
    with lab.client() as client:
        problems = fleet_ready(lab, client)
        if problems:
            return Outcome(name, False, f"{name}: {verdict(problems)}")
        ids = registered_names(client)
        cut_names = [n for host in hosts for n in lab.fleet.names(host)]
        victims = {ids[n] for n in cut_names}
        victim_pids = {pid for host in hosts for pid in lab.fleet.pids(host)}
        load = Load(client, s.partition_load,
                    lambda tag: ("work", "work", (folder, tag, s.partition_work))).start()
        wait_until(time.monotonic() + 2 * s.partition_work + 0.5)  # every worker has some
        on_victim = {c.tag for c in list(load.calls.values())
                     if not c.future.done() and getattr(c.future, "worker", None) in victims}
        cut = time.monotonic()
        for host in hosts:
            lab.net.cut(host)
        detected = None
        while time.monotonic() < cut + s.cut:
            if not victims & set(registered_names(client).values()):
                detected = time.monotonic()
                break
            time.sleep(0.01)
        wait_until(cut + s.cut)
        healed = time.monotonic()
        for host in hosts:
            lab.net.heal(host)
        back = wait_registered(client, cut_names, 10.0)
        wait_until(time.monotonic() + s.after_heal)
        load.stop()
        hung = load.drain(s.drain)
    calls = load.calls
    outcomes = Counter(outcome_name(c.future) for c in calls.values() if c.tag not in hung)
    failed = sum(n for kind, n in outcomes.items() if kind != "ok")
    cut_off = [calls[t] for t in sorted(on_victim)]
    cut_ok = sum(1 for c in cut_off if c.tag not in hung and outcome_name(c.future) == "ok")
    came_back = sum(1 for c in cut_off if c.future.done() and outcome_name(c.future) == "ok"
                    and c.future.result() in victim_pids)

    runs = read_runs(folder)
    finished_there = {tag for tag, tag_runs in runs.items()
                      if any(r.pid in victim_pids and r.end is not None and cut < r.end < healed
                             for r in tag_runs)}
    redone_after_heal = {tag for tag, tag_runs in runs.items()
                         if any(r.end is not None and r.end < healed for r in tag_runs)
                         and any(r.start > healed for r in tag_runs)}
    rerun_elsewhere = {tag for tag in finished_there
                       if any(r.pid not in victim_pids for r in runs[tag])}
    twice_on_one = _twice_on_one_worker(runs)
    beyond_attempts = {tag for tag, tag_runs in runs.items()
                       if tag in calls and len(tag_runs) > len(_attempts(calls[tag]))}
    # Sent again and answered without a second run: the worker's kept outcome (SPEC §10).
    from_kept = {tag for tag in finished_there
                 if len(_attempts(calls[tag])) > 1 and len(runs[tag]) == 1}

    where = (f"host h{hosts[0]}" if len(hosts) == 1 else f"all {len(hosts)} hosts")
    rerun_note = (f", {len(rerun_elsewhere)} had been sent elsewhere on detection (as retries must)"
                  if rerun_elsewhere else "")
    detection = None if detected is None else detected - cut
    reregistration = None if back is None else back - healed
    if failed:
        problems.append(f"{failed} calls failed: {dict(outcomes)}, {first_failure(calls.values(), hung)}")
    if hung:
        problems.append(f"{len(hung)} calls hung")
    if cut_ok != len(cut_off):
        problems.append(f"only {cut_ok} of the {len(cut_off)} calls on the cut-off host succeeded")
    if not cut_off:
        problems.append("no call was on the cut-off host: the scenario proved nothing")
    if detection is None or detection > s.detection_bound:
        problems.append(f"detection {_secs(detection)} > {s.detection_bound:g} s")
    if reregistration is None or reregistration > REREGISTRATION_BOUND:
        problems.append(f"re-registration {_secs(reregistration)} > {REREGISTRATION_BOUND:g} s")
    if not finished_there:
        problems.append("no work finished on the cut-off host during the cut: nothing to check")
    if redone_after_heal:
        problems.append(f"{len(redone_after_heal)} calls finished before the heal ran again after it")
    if twice_on_one:
        problems.append(f"{len(twice_on_one)} calls ran twice on one worker")
    if beyond_attempts:
        problems.append(f"{len(beyond_attempts)} calls ran more often than they were sent")
    if load.error is not None:
        problems.append(f"the load stopped: {load.error!r}")
    line = (
        f"{name}: {where} ({len(victims)} workers) cut off for {s.cut:g} s under "
        f"{s.partition_load} idempotent {s.partition_work:g} s calls in flight: detected in "
        f"{_secs(detection)} (<= {s.detection_bound:g} s), all re-registered {_secs(reregistration)} "
        f"after the heal (<= {REREGISTRATION_BOUND:g} s); {len(cut_off)} calls were on it: {cut_ok} "
        f"succeeded ({cut_ok - came_back} elsewhere, {came_back} on it after the heal); "
        f"{len(finished_there)} finished there during the cut, {len(redone_after_heal)} redone "
        f"after the heal, {len(from_kept)} answered from the outcome kept there"
        f"{rerun_note}; {len(calls)} calls, {failed} failed, {len(hung)} hung, {len(twice_on_one)} ran "
        f"twice on one worker: {verdict(problems)}"
    )
    return Outcome(name, not problems, line)


def _attempts(call: Call) -> tuple[str, ...]:
    return tuple(getattr(call.future, "attempts", ()))


def _twice_on_one_worker(runs: dict[int, list[Run]]) -> set[int]:
    return {tag for tag, tag_runs in runs.items() if len({r.pid for r in tag_runs}) < len(tag_runs)}


def _secs(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


# --------------------------------------------------------------------------- churn


def churn(lab: Lab) -> Outcome:
    """A random worker SIGKILLed and a new one started (on the same host) every second, while
    calls run: half to an idempotent procedure, half to one that is not."""
    s = lab.settings
    name = "churn"
    folder = lab.side_effects(name)
    rng = random.Random(15)

    def make(tag: int) -> tuple[str, str, tuple[Any, ...]]:
        procedure = "work" if tag % 2 == 0 else "unsafe"
        return procedure, procedure, (folder, tag, s.churn_work)

    with lab.client() as client:
        problems = fleet_ready(lab, client)
        if problems:
            return Outcome(name, False, f"{name}: {verdict(problems)}")
        load = Load(client, s.churn_load, make).start()
        begin = time.monotonic()
        kills = int(s.churn_seconds / s.churn_every)
        for kill in range(1, kills + 1):
            wait_until(begin + kill * s.churn_every)
            victim = rng.choice(sorted(lab.fleet.names()))
            host = lab.fleet.members[victim].host
            lab.fleet.kill(victim)
            lab.fleet.start(host)
        load.stop()
        hung = load.drain(s.drain)
        retried = client.stats().get("retried", 0)
        # The next scenario wants the whole fleet: the last new workers register now.
        problems += fleet_ready(lab, client)
    calls = load.calls
    runs = read_runs(folder)
    by_kind: dict[str, Counter[str]] = {"work": Counter(), "unsafe": Counter()}
    for call in calls.values():
        by_kind[call.kind]["hung" if call.tag in hung else outcome_name(call.future)] += 1
    idem, unsafe = by_kind["work"], by_kind["unsafe"]
    idem_failed = sum(n for kind, n in idem.items() if kind not in ("ok", "hung"))
    unsafe_other = sum(n for kind, n in unsafe.items() if kind not in ("ok", "WorkerLost", "hung"))
    unsafe_tags = [c.tag for c in calls.values() if c.kind == "unsafe"]
    ran_twice = [t for t in unsafe_tags if len(runs.get(t, ())) > 1]
    # A result is proof of a run: each one that came back must have run exactly once.
    unaccounted = [t for t in unsafe_tags if t not in hung and outcome_name(calls[t].future) == "ok"
                   and len(runs.get(t, ())) != 1]
    twice_on_one = _twice_on_one_worker({t: r for t, r in runs.items() if t in calls})
    beyond_attempts = [t for t, r in runs.items() if t in calls and len(r) > len(_attempts(calls[t]))]
    if idem_failed:
        problems.append(f"{idem_failed} idempotent calls failed: {dict(idem)}, "
                        f"{first_failure((c for c in calls.values() if c.kind == 'work'), hung)}")
    if idem["hung"] or unsafe["hung"]:
        problems.append(f"{idem['hung'] + unsafe['hung']} calls hung")
    if unsafe_other:
        problems.append(f"{unsafe_other} non-idempotent calls ended neither with a result nor "
                        f"WorkerLost: {dict(unsafe)}")
    if ran_twice:
        problems.append(f"{len(ran_twice)} non-idempotent calls ran twice")
    if unaccounted:
        problems.append(f"{len(unaccounted)} non-idempotent results without exactly one run")
    if twice_on_one:
        problems.append(f"{len(twice_on_one)} calls ran twice on one worker")
    if beyond_attempts:
        problems.append(f"{len(beyond_attempts)} calls ran more often than they were sent")
    if load.error is not None:
        problems.append(f"the load stopped: {load.error!r}")
    line = (
        f"{name}: a worker SIGKILLed and a new one started every {s.churn_every:g} s for "
        f"{s.churn_seconds} s ({kills} kills, {len(lab.fleet.members)} workers), "
        f"{s.churn_load} calls of {s.churn_work:g} s in flight: "
        f"idempotent {sum(idem.values())} calls, {idem['ok']} succeeded, {idem_failed} failed, "
        f"{idem['hung']} hung ({retried} calls sent again); non-idempotent {sum(unsafe.values())} "
        f"calls, {unsafe['ok']} results + {unsafe['WorkerLost']} WorkerLost, {unsafe_other} other, "
        f"{unsafe['hung']} hung, {len(ran_twice)} ran twice: {verdict(problems)}"
    )
    return Outcome(name, not problems, line)


# --------------------------------------------------------------------------- client restart


class _ClientProcess:
    """``python -m bench.lab.client_proc``, in the driver's (the client's) namespace."""

    def __init__(self, lab: Lab, mode: str, calls: int, seconds: float, log: IO[bytes]) -> None:
        s = lab.settings
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.lab.client_proc", mode, lab.bind,
             "--key-file", str(lab.fleet.key_file), "--workers", str(len(lab.fleet.members)),
             "--heartbeat", f"{s.heartbeat:g}", "--liveness", str(s.liveness),
             "--calls", str(calls), "--seconds", f"{seconds:g}", "--wait", f"{s.drain:g}"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,
        )
        lab.net.processes.append(self.process)  # killed at teardown whatever happens

    def expect(self, prefix: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(prefix):
                return line.split(maxsplit=1)[1].strip() if " " in line.strip() else ""
            if line.startswith("TIMEOUT"):
                raise RuntimeError(f"client process: {line.strip()}")
        raise RuntimeError(f"client process exited ({self.process.wait()}) before {prefix}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(10)


def client_restart(lab: Lab) -> Outcome:
    """Every actor busy with a client's calls; that client SIGKILLed and a new one bound at
    once (the workers have not yet noticed); then the same with ``close()`` and a new Client
    in this process. Each time: every worker registered again within 1.5 s of the bind, and
    the new client's calls all end."""
    s = lab.settings
    name = "restart"
    problems: list[str] = []
    actors = len(lab.fleet.members) * s.pool_size
    with open(lab.folder / "client-processes.log", "ab") as log:
        loaded = _ClientProcess(lab, "load", actors, s.restart_nap, log)
        try:
            loaded.expect("REGISTERED")
            loaded.expect("LOADED")
        except RuntimeError as exc:
            loaded.kill()
            return Outcome(name, False, f"{name}: {verdict([str(exc)])}")
        loaded.kill()
        fresh = _ClientProcess(lab, "fresh", s.restart_calls, s.nap, log)
        try:
            killed_delay: float | None = float(fresh.expect("REGISTERED"))
            succeeded, failed, hung = (int(n) for n in fresh.expect("DONE").split())
        except RuntimeError as exc:
            killed_delay, succeeded, failed, hung = None, 0, 0, 0
            problems.append(f"after the kill: {exc}")
        fresh.process.wait(30)
    if killed_delay is not None and killed_delay > REREGISTRATION_BOUND:
        problems.append(f"{killed_delay:.2f} s to re-register after the kill")
    if failed or hung:
        problems.append(f"after the kill {failed} calls failed, {hung} hung")

    # The same in this process: close() under load, then a new Client on the same endpoint.
    with lab.client() as first:
        problems += fleet_ready(lab, first)
        started = threading.Semaphore(0)
        futures = [first.submit("nap", s.restart_nap) for _ in range(actors)]
        for future in futures:
            future.add_partial_callback(
                lambda f, message: started.release() if message == "started" else None)
        deadline = time.monotonic() + s.drain
        if not all(started.acquire(timeout=max(0.0, deadline - time.monotonic())) for _ in futures):
            problems.append("close: not every call started")
        closing = time.monotonic()
    closed_in = time.monotonic() - closing
    open_after_close = sum(1 for f in futures if not f.done())
    not_pirate = sum(1 for f in futures if f.done() and not f.cancelled()
                     and not isinstance(f.exception(timeout=0), PirateError))
    if open_after_close:
        problems.append(f"{open_after_close} calls still open after close()")
    if not_pirate:
        problems.append(f"{not_pirate} calls ended otherwise than with PirateError on close()")
    bound = time.monotonic()
    with lab.client() as second:
        back = wait_registered(second, lab.fleet.names(), 10.0)
        closed_delay = None if back is None else back - bound
        calls = [second.submit("nap", s.nap) for _ in range(s.restart_calls)]
        done, pending = concurrent.futures.wait(calls, timeout=s.drain)
        closed_failed = sum(1 for f in done if f.exception() is not None)
    if closed_delay is None or closed_delay > REREGISTRATION_BOUND:
        problems.append(f"{_secs(closed_delay)} to re-register after close()")
    if closed_failed or pending:
        problems.append(f"after close() {closed_failed} calls failed, {len(pending)} hung")
    line = (
        f"{name}: {len(lab.fleet.members)} workers with all {actors} actors busy; client process "
        f"SIGKILLed and a new one bound at once: all re-registered {_secs(killed_delay)} after its "
        f"bind (<= {REREGISTRATION_BOUND:g} s), its {s.restart_calls} calls {succeeded} succeeded, "
        f"{failed} failed, {hung} hung; close() and a new Client: close() took {closed_in:.2f} s "
        f"and ended all {actors} calls, all re-registered {_secs(closed_delay)} after the bind, "
        f"{closed_failed} failed, {len(pending)} hung: {verdict(problems)}"
    )
    return Outcome(name, not problems, line)


SCENARIOS: dict[str, Callable[[Lab], Outcome]] = {
    "throughput": throughput,
    "partition": partition,
    "isolation": isolation,
    "churn": churn,
    "restart": client_restart,
}

DEFAULT = ("throughput", "partition", "churn", "restart")
"""The issue's scenarios, run when none is named. ``isolation`` goes beyond them (every host
cut at once) and runs only when named."""

__all__ = ["DEFAULT", "FULL", "SCENARIOS", "SHORT", "Lab", "Outcome", "Settings"]
