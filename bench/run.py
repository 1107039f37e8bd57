"""Run every contender in one process tree, window by window, and report medians, ratios and targets.

Usage (from the repository root): ``python -m bench [--quick] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from typing import Any, Callable

from bench import pirate
from bench.procs import Agent, AgentError, free_endpoint
from bench.floor import FloorClient, FloorServer
from bench.pool import PoolClient
from bench.pyro import PyroClient, PyroServer
from bench.raw import RawClient, RawServer
from bench.rpy import RpycClient, RpycServer
from bench.stats import fmt_range, fmt_ratio, paired_ratios, summary, table
from bench.sysinfo import (counters, cpu_seconds, machine_info, rss_bytes, thread_count,
                           thread_counters)
from bench.workload import PAYLOAD_SIZE, payload_mb
from bench.zrpc import ZerorpcClient, ZerorpcServer

MB = 1_000_000


@dataclasses.dataclass
class Settings:
    """How long and how often each thing is measured."""

    rounds: int
    window: float
    stream_n: int
    bind_samples: int
    death_samples: int
    idle_seconds: float
    rss_calls: int
    rss_warmup: int
    depth: int = 100
    pool_size: int = 4


FULL = Settings(rounds=7, window=1.0, stream_n=100_000, bind_samples=5, death_samples=3,
                idle_seconds=10.0, rss_calls=100_000, rss_warmup=5_000)
QUICK = Settings(rounds=3, window=0.4, stream_n=20_000, bind_samples=2, death_samples=1,
                 idle_seconds=3.0, rss_calls=20_000, rss_warmup=2_000)

CONTENDERS = {"raw": "raw pyzmq", "floor": "design floor", "pirate": "pirate_actors",
              "pirate-hmac": "pirate_actors, HMAC key", "pirate-curve": "pirate_actors, CURVE",
              "zerorpc": "zerorpc", "pyro5": "Pyro5", "rpyc": "RPyC", "pool": "ProcessPoolExecutor(4)"}
SECURED = ("pirate-hmac", "pirate-curve")
# The peers a user would pick instead of pirate_actors (issue 14); pirate_actors' ratio to each
# is paired round by round.
PEERS = ("zerorpc", "pyro5", "rpyc", "pool")
# Contenders that need a package of the bench extra: the module to import.
OPTIONAL = {"zerorpc": "zerorpc", "pyro5": "Pyro5", "rpyc": "rpyc"}
RPC = ["pirate", *SECURED, *PEERS]
SCENARIOS: list[tuple[str, str, list[str]]] = [
    ("sync", "one call at a time (calls/s)", ["raw", "floor", *RPC]),
    ("inflight", "100 calls in flight (calls/s)", ["raw", "floor", *RPC]),
    ("stream", "one-way stream: raw msgs/s, pirate partials/s", ["raw", "pirate"]),
    ("big", "1 MiB there and back, one call at a time (calls/s)", ["raw", "pirate", "pyro5", "rpyc", "pool"]),
]
# pirate_actors ÷ these, per scenario, in the report.
REFERENCES = ("raw", "floor", *PEERS)


def library_revision() -> str | None:
    """``<commit>`` of the checkout that ``pirate_actors`` is imported from, ``+dirty`` if its
    files differ from that commit; None outside a git checkout."""
    import subprocess

    spec = importlib.util.find_spec("pirate_actors")
    if spec is None or not spec.origin:
        return None
    pkg = os.path.dirname(spec.origin)
    try:
        rev = subprocess.run(["git", "-C", pkg, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", pkg, "status", "--porcelain", "--", "."],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return rev + ("+dirty" if dirty else "")


def log(msg: str) -> None:
    """Progress on stderr, so stdout holds only the report."""
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Contenders: a server process and a client process each
# --------------------------------------------------------------------------------------------

class Contender:
    """A running server process and client process for one contender."""

    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        endpoint = free_endpoint()
        self.server: Agent | None
        self.client: Agent
        if name == "raw":
            self.server = Agent("raw-server", RawServer, endpoint)
            self.server.send("serve")
            self.client = Agent("raw-client", RawClient, endpoint)
        elif name == "floor":
            self.server = Agent("floor-server", FloorServer, endpoint, pool_size=settings.pool_size)
            self.server.send("serve")
            self.client = Agent("floor-client", FloorClient, endpoint)
        elif name == "zerorpc":
            self.server = Agent("zerorpc-server", ZerorpcServer, endpoint)
            self.server.send("serve")
            self.client = Agent("zerorpc-client", ZerorpcClient, endpoint)
        elif name == "pyro5":
            self.server = Agent("pyro5-server", PyroServer, endpoint)
            self.server.send("serve")
            self.client = Agent("pyro5-client", PyroClient, endpoint)
        elif name == "rpyc":
            self.server = Agent("rpyc-server", RpycServer, endpoint)
            self.server.send("serve")
            self.client = Agent("rpyc-client", RpycClient, endpoint)
        elif name == "pool":
            self.server = None                   # the pool's workers are the client's children
            self.client = Agent("pool-client", PoolClient, settings.pool_size)
        elif name == "pirate" or name in SECURED:
            security: dict[str, Any] | None = None
            if name == "pirate-hmac":
                security = {"key": pirate.BENCH_KEY}
            elif name == "pirate-curve":
                self._certificates = tempfile.TemporaryDirectory(prefix="bench-curve-")
                pirate.make_certificates(self._certificates.name)
                security = {"curve": self._certificates.name}
            self.server = Agent(f"{name}-worker", pirate.PirateWorker, endpoint,
                                pool_size=settings.pool_size, security=security)
            self.client = Agent(f"{name}-client", pirate.PirateClient, endpoint, security=security)
        else:
            raise ValueError(name)
        self.server_pids: list[int] = (
            [self.server.pid] if self.server is not None else list(self.client.info["server_pids"]))
        # Agents whose main thread is free between windows can name their threads.
        self._nameable: dict[str, Agent] = {"client": self.client}
        if (name == "pirate" or name in SECURED) and self.server is not None:
            self._nameable["server"] = self.server
        self._names: dict[str, dict[int, str]] = {}
        self._unnamed: dict[str, set[int]] = {}

    def window(self, scenario: str, s: Settings) -> tuple[float, dict[str, Any] | None]:
        """Run one window of ``scenario``; return its rate per second and its cost per call.

        The cost is CPU µs and voluntary context switches (≈ thread wake-ups) per call, for the client
        and the server process, all threads, read from outside before and after the window.
        """
        pids = {"client": [self.client.pid], "server": self.server_pids}
        before = {k: counters(p) for k, p in pids.items()}
        tbefore = {k: _threads_of(p) for k, p in pids.items()}
        if scenario == "sync":
            r = self.client.call("sync", timeout=s.window + 60, seconds=s.window)
        elif scenario == "inflight":
            r = self.client.call("inflight", timeout=s.window + 60, seconds=s.window, depth=s.depth)
        elif scenario == "big":
            r = self.client.call("big", timeout=s.window + 120, seconds=s.window)
        else:
            r = self.client.call("stream", timeout=600, n=s.stream_n)
        after = {k: counters(p) for k, p in pids.items()}
        tafter = {k: _threads_of(p) for k, p in pids.items()}
        rate = float(r["count"] / r["elapsed"])
        total = r.get("total", r["count"])
        cost: dict[str, Any] | None = {}
        for k in pids:
            b, a = before[k], after[k]
            if a is None or b is None or cost is None:
                cost = None
                continue
            cost[f"cpu_us_{k}"] = (a["cpu"] - b["cpu"]) * 1e6 / total
            cost[f"wakeups_{k}"] = (a["vol"] - b["vol"]) / total
            cost[f"preempted_{k}"] = (a["invol"] - b["invol"]) / total
        if cost is not None:
            cost["threads"] = self._per_thread(tbefore, tafter, total)
        return rate, cost

    def _thread_label(self, side: str, tid: int, comm: str) -> str:
        """``side: name`` with numbering and endpoints stripped, so that alike threads add up."""
        names = self._names.setdefault(side, {})
        unnamed = self._unnamed.setdefault(side, set())
        if tid not in names and tid not in unnamed and side in self._nameable:
            try:
                names.update(self._nameable[side].thread_names())
            except AgentError:
                pass
            if tid not in names:
                unnamed.add(tid)  # not a Python thread (libzmq's): its OS name will do
        name = re.sub(r"[-/]\d+$", "", names.get(tid, comm).split(" ")[0])
        return f"{side}: {name}"

    def _per_thread(self, before: dict[str, dict[int, dict[str, Any]]],
                    after: dict[str, dict[int, dict[str, Any]]], total: int) -> dict[str, dict[str, float]]:
        """CPU µs, wake-ups and thread count per kind of thread, per call."""
        out: dict[str, dict[str, float]] = {}
        for side in after:
            for tid, a in after[side].items():
                b = before[side].get(tid)
                if b is None:
                    continue
                label = self._thread_label(side, tid, a["comm"])
                entry = out.setdefault(label, {"cpu_us": 0.0, "wakeups": 0.0, "threads": 0.0})
                entry["cpu_us"] += (a["cpu"] - b["cpu"]) * 1e6 / total
                entry["wakeups"] += (a["vol"] - b["vol"]) / total
                entry["threads"] += 1
        return out

    def close(self) -> None:
        """Stop the client, then the server."""
        graceful = self.name == "pirate" or self.name in SECURED
        agents = (self.client, self.server) if not graceful else (self.server, self.client)
        for agent in agents:
            if agent is None:
                continue
            if graceful:
                agent.close(timeout=10)
            elif agent is self.client:
                agent.close(timeout=5)
            else:
                agent.kill()
        certificates = getattr(self, "_certificates", None)
        if certificates is not None:
            certificates.cleanup()


def _threads_of(pids: list[int]) -> dict[int, dict[str, Any]]:
    """:func:`thread_counters` of several processes in one mapping (thread ids are system-wide)."""
    out: dict[int, dict[str, Any]] = {}
    for pid in pids:
        out.update(thread_counters(pid))
    return out


def run_throughput(s: Settings, names: list[str], out: dict[str, Any]) -> None:
    """Start every contender, warm it up, then alternate the windows round by round."""
    contenders: dict[str, Contender] = {}
    errors: dict[str, str] = {}
    for name in names:
        log(f"starting {CONTENDERS[name]} …")
        try:
            contenders[name] = Contender(name, s)
        except AgentError as exc:
            errors[name] = str(exc)
            log(f"  {CONTENDERS[name]} failed to start:\n{exc}")

    samples: dict[str, dict[str, list[float | None]]] = {
        sc: {c: [] for c in cs if c in names} for sc, _, cs in SCENARIOS}
    costs: dict[str, dict[str, list[dict[str, Any] | None]]] = {
        sc: {c: [] for c in cs if c in names} for sc, _, cs in SCENARIOS}
    warm = dataclasses.replace(s, window=min(0.3, s.window), stream_n=min(5_000, s.stream_n))
    for scenario, _, cs in SCENARIOS:
        for c in cs:
            if c in contenders:
                try:
                    contenders[c].window(scenario, warm)
                except AgentError as exc:
                    errors[c] = str(exc)
                    log(f"  {CONTENDERS[c]} failed in warm-up of {scenario}:\n{exc}")
                    contenders.pop(c).close()
    for r in range(s.rounds):
        for scenario, _, cs in SCENARIOS:
            present = [c for c in cs if c in names]
            k = r % len(present)
            order = present[k:] + present[:k]          # rotate who goes first, round by round
            line = []
            for c in order:
                value: float | None = None
                cost: dict[str, Any] | None = None
                if c in contenders:
                    try:
                        value, cost = contenders[c].window(scenario, s)
                    except AgentError as exc:
                        errors[c] = str(exc)
                        log(f"  {CONTENDERS[c]} failed in {scenario}:\n{exc}")
                        contenders.pop(c).close()
                samples[scenario][c].append(value)
                costs[scenario][c].append(cost)
                line.append(f"{c} {value:,.0f}/s" if value is not None else f"{c} —")
            log(f"round {r + 1}/{s.rounds} {scenario:8s} " + "  ".join(line))
    for contender in contenders.values():
        contender.close()

    res: dict[str, Any] = {}
    for scenario, title, cs in SCENARIOS:
        per: dict[str, Any] = {}
        for c in samples[scenario]:
            vals = samples[scenario][c]
            entry: dict[str, Any] = {"samples": vals, "summary": summary(vals)}
            cs_ = [x for x in costs[scenario][c] if x is not None]
            if cs_:
                keys = [k for k in cs_[0] if k != "threads"]
                entry["cost_per_call"] = {
                    key: summary([x[key] for x in cs_]) for key in keys}
                entry["cost_per_call"]["cpu_us_total"] = summary(
                    [x["cpu_us_client"] + x["cpu_us_server"] for x in cs_])
                entry["cost_per_call"]["wakeups_total"] = summary(
                    [x["wakeups_client"] + x["wakeups_server"] for x in cs_])
                labels = sorted({lb for x in cs_ for lb in x.get("threads", {})})
                entry["per_thread"] = {
                    lb: {m: summary([x["threads"][lb][m] for x in cs_ if lb in x.get("threads", {})])
                         for m in ("cpu_us", "wakeups", "threads")}
                    for lb in labels}
            if c != "raw" and "raw" in samples[scenario]:
                rr = paired_ratios(vals, samples[scenario]["raw"])
                entry["ratio_to_raw"] = {"samples": rr, "summary": summary(rr)}
            if c != "zerorpc" and "zerorpc" in samples[scenario]:
                rz = paired_ratios(vals, samples[scenario]["zerorpc"])
                entry["ratio_to_zerorpc"] = {"samples": rz, "summary": summary(rz)}
            if c == "pirate":
                for ref in ("pyro5", "rpyc", "pool"):
                    if ref in samples[scenario]:
                        rq = paired_ratios(vals, samples[scenario][ref])
                        entry[f"ratio_to_{ref}"] = {"samples": rq, "summary": summary(rq)}
            if c in SECURED and "pirate" in samples[scenario]:
                rp = paired_ratios(vals, samples[scenario]["pirate"])
                entry["ratio_to_pirate"] = {"samples": rp, "summary": summary(rp)}
            if c == "pirate" and "floor" in samples[scenario]:
                rf = paired_ratios(vals, samples[scenario]["floor"])
                entry["ratio_to_floor"] = {"samples": rf, "summary": summary(rf)}
            per[c] = entry
        res[scenario] = {"title": title, "contenders": per}
        if scenario == "big":
            res[scenario]["payload_bytes"] = PAYLOAD_SIZE
    out["throughput"] = res
    out["errors"].update(errors)


# --------------------------------------------------------------------------------------------
# pirate_actors probes
# --------------------------------------------------------------------------------------------

def probe_bind(s: Settings) -> dict[str, Any]:
    """Worker process first; 0.5 s later a fresh client process binds and makes its first call.

    Then that client is SIGKILLed and another fresh client binds the same endpoint (the worker has
    not yet had time to notice): the re-registration case of SPEC §5 (informational).
    """
    first: list[float | None] = []
    rebind: list[float | None] = []
    for i in range(s.bind_samples):
        endpoint = free_endpoint()
        worker = Agent("pirate-worker", pirate.PirateWorker, endpoint, pool_size=s.pool_size)
        try:
            probe = Agent("bind-probe", pirate.BindProbe)
            time.sleep(0.5)                      # the worker is running, reconnecting to nobody
            r = probe.call("first_call", timeout=60, endpoint=endpoint)
            first.append(r["seconds"])
            probe.kill()                         # the client dies without a word
            probe2 = Agent("bind-probe", pirate.BindProbe)
            r2 = probe2.call("first_call", timeout=60, endpoint=endpoint)
            rebind.append(r2["seconds"])
            probe2.close()
            log(f"bind probe {i + 1}/{s.bind_samples}: first call {r['seconds']:.3f} s, "
                f"after re-bind {r2['seconds']:.3f} s")
        finally:
            worker.close()
    return {"first_call": {"samples": first, "summary": summary(first)},
            "rebind_first_call": {"samples": rebind, "summary": summary(rebind)}}


def probe_death(s: Settings, hb: float, lv: int) -> dict[str, Any]:
    """SIGKILL a worker holding a started call; time until the client fails it (``WorkerLost``)."""
    endpoint = free_endpoint()
    probe = Agent("death-probe", pirate.DeathProbe, endpoint)
    delays: list[float | None] = []
    outcomes: list[str] = []
    rng = random.Random(5)
    try:
        for i in range(s.death_samples):
            worker = Agent("pirate-worker", pirate.PirateWorker, endpoint, pool_size=s.pool_size)
            probe.call("start_long_call", timeout=60)
            time.sleep(rng.uniform(0.0, hb))     # land anywhere in the heartbeat cycle
            t_kill = time.monotonic()
            os.kill(worker.pid, signal.SIGKILL)
            worker.proc.join(5)
            worker.kill()
            r = probe.call("wait_lost", timeout=hb * lv * 4 + 30)
            delay = r["t_done"] - t_kill if r["t_done"] is not None else None
            delays.append(delay)
            outcomes.append(r["outcome"])
            log(f"death probe {i + 1}/{s.death_samples}: {r['outcome']} after "
                + (f"{delay:.3f} s" if delay is not None else "—"))
    finally:
        probe.close()
    return {"delay": {"samples": delays, "summary": summary(delays)}, "outcomes": outcomes,
            "heartbeat": hb, "liveness": lv}


def probe_idle_rss(s: Settings) -> dict[str, Any]:
    """Idle CPU of a registered worker and client, then their RSS before and after many calls."""
    endpoint = free_endpoint()
    worker = Agent("pirate-worker", pirate.PirateWorker, endpoint, pool_size=s.pool_size)
    client = Agent("pirate-client", pirate.PirateClient, endpoint)
    pids = {"worker": worker.pid, "client": client.pid}
    out: dict[str, Any] = {"threads": {k: thread_count(p) for k, p in pids.items()}}
    try:
        time.sleep(1.0)
        c0 = {k: cpu_seconds(p) for k, p in pids.items()}
        t0 = time.monotonic()
        log(f"idle probe: {s.idle_seconds:g} s with nothing to do …")
        time.sleep(s.idle_seconds)
        c1 = {k: cpu_seconds(p) for k, p in pids.items()}
        wall = time.monotonic() - t0
        out["idle_cpu_percent"] = {k: 100.0 * (c1[k] - c0[k]) / wall for k in pids}
        out["idle_seconds"] = wall
        client.call("run_calls", timeout=600, n=s.rss_warmup, depth=s.depth)
        before = {k: rss_bytes(p) for k, p in pids.items()}
        log(f"rss probe: {s.rss_calls:,} calls …")
        r = client.call("run_calls", timeout=900, n=s.rss_calls, depth=s.depth)
        after = {k: rss_bytes(p) for k, p in pids.items()}
        out["rss"] = {k: {"before": before[k], "after": after[k],
                          "growth_mb": (after[k] - before[k]) / MB} for k in pids}
        out["rss_calls"] = r
        out["rss_warmup_calls"] = s.rss_warmup
    finally:
        worker.close()
        client.close()
    return out


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------

def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d or d[p] is None:
            return None
        d = d[p]
    return d


def evaluate_targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    """Judge each target of issues 5 and 14 on this run's numbers (medians; ratios paired by round)."""
    t = out.get("throughput", {})
    p = out.get("probes", {})
    hb, lv = p.get("death", {}).get("heartbeat", 1.0), p.get("death", {}).get("liveness", 3)
    rows: list[tuple[str, Any, str, float, str]] = [
        ("one call at a time ÷ raw", _get(t, "sync", "contenders", "pirate", "ratio_to_raw", "summary", "median"), ">=", 0.45, "×"),
        ("100 in flight ÷ raw", _get(t, "inflight", "contenders", "pirate", "ratio_to_raw", "summary", "median"), ">=", 0.2, "×"),
        ("partials ÷ raw stream", _get(t, "stream", "contenders", "pirate", "ratio_to_raw", "summary", "median"), ">=", 0.3, "×"),
        ("one call at a time ÷ zerorpc", _get(t, "sync", "contenders", "pirate", "ratio_to_zerorpc", "summary", "median"), ">=", 2.0, "×"),
        ("100 in flight ÷ zerorpc", _get(t, "inflight", "contenders", "pirate", "ratio_to_zerorpc", "summary", "median"), ">=", 2.0, "×"),
        ("first call after bind", _get(p, "bind", "first_call", "summary", "median"), "<=", 0.3, "s"),
        ("SIGKILL → WorkerLost", _get(p, "death", "delay", "summary", "median"), "<=", hb * lv + 0.2, "s"),
        ("RSS growth, client", _get(p, "idle_rss", "rss", "client", "growth_mb"), "<=", 5.0, "MB"),
        ("RSS growth, worker", _get(p, "idle_rss", "rss", "worker", "growth_mb"), "<=", 5.0, "MB"),
        ("idle CPU, worker", _get(p, "idle_rss", "idle_cpu_percent", "worker"), "<", 1.0, "% of a core"),
        ("idle CPU, client", _get(p, "idle_rss", "idle_cpu_percent", "client"), "<", 1.0, "% of a core"),
    ]
    result = []
    for name, value, op, limit, unit in rows:
        result.append({"issue": 5, "target": name, "value": value, "op": op, "limit": limit,
                       "unit": unit, "verdict": _verdict(value, op, limit)})
    def pirate_ratio(scenario: str, ref: str) -> Any:
        return _get(t, scenario, "contenders", "pirate", f"ratio_to_{ref}", "summary", "median")

    rows14: list[tuple[str, Any, str, float, str]] = [
        ("100 in flight ÷ RPyC", pirate_ratio("inflight", "rpyc"), ">=", 1.0, "×"),
        ("one call at a time ÷ ProcessPoolExecutor", pirate_ratio("sync", "pool"), ">=", 1.0, "×"),
        ("one call at a time ÷ raw", pirate_ratio("sync", "raw"), ">=", 0.5, "×"),
        ("1 MiB ÷ Pyro5", pirate_ratio("big", "pyro5"), ">=", 1.0, "×"),
        ("one call at a time ÷ Pyro5 (reported)", pirate_ratio("sync", "pyro5"), "info", 1.0, "×"),
    ]
    for name, value, op, limit, unit in rows14:
        result.append({"issue": 14, "target": name, "value": value, "op": op, "limit": limit,
                       "unit": unit, "verdict": _verdict(value, op, limit)})
    # "The partial stream and the probes of issue 5 no worse": issue 5's targets for them still hold.
    judged = [r for r in result if r["issue"] == 5 and r["verdict"] != "SKIP"
              and not r["target"].startswith(("one call", "100 in flight"))]
    failed = [r["target"] for r in judged if r["verdict"] == "FAIL"]
    result.append({"issue": 14, "target": "partial stream and probes: issue 5's targets met",
                   "value": float(len(judged) - len(failed)) if judged else None, "op": "all",
                   "limit": float(len(judged)), "unit": "met",
                   "verdict": "SKIP" if not judged else ("FAIL" if failed else "PASS"),
                   "failed": failed})
    return result


def _verdict(value: float | None, op: str, limit: float) -> str:
    if value is None:
        return "SKIP"
    if op == "info":
        return "—"
    if op == ">=":
        return "PASS" if value >= limit else "FAIL"
    if op == "<=":
        return "PASS" if value <= limit else "FAIL"
    return "PASS" if value < limit else "FAIL"


def _side_by_side(t: dict[str, Any]) -> list[str]:
    """One row per contender: rate, CPU µs and wake-ups per call in each RPC scenario."""
    scenarios = [sc for sc in ("sync", "inflight", "big") if sc in t]
    names = [c for c in CONTENDERS if any(c in t[sc]["contenders"] for sc in scenarios)]
    if not names:
        return []
    header = ["contender"]
    titles = {"sync": "one at a time", "inflight": "100 in flight", "big": "1 MiB"}
    for sc in scenarios:
        header += [f"{titles[sc]} /s"] + (["MB/s"] if sc == "big" else []) + ["CPU µs", "wake-ups"]
    rows = []
    for c in names:
        row = [CONTENDERS[c]]
        for sc in scenarios:
            e = t[sc]["contenders"].get(c)
            med = _get(e, "summary", "median")
            cpu = _get(e, "cost_per_call", "cpu_us_total", "median")
            wake = _get(e, "cost_per_call", "wakeups_total", "median")
            row.append(f"{med:,.0f}" if med is not None else "")
            if sc == "big":
                row.append(f"{payload_mb(med):,.0f}" if med is not None else "")
            row += [f"{cpu:.0f}" if cpu is not None else "", f"{wake:.1f}" if wake is not None else ""]
        rows.append(row)
    return ["## Every contender side by side (medians of the rounds)", "",
            "Rates in calls/s; CPU µs and wake-ups per call, client and server processes together "
            "(the pool's four workers are its server); MB/s counts the 1 MiB both ways. Empty: not "
            "run in that scenario.", "", table(header, rows), ""]


def _pirate_ratios(t: dict[str, Any]) -> list[str]:
    """pirate_actors ÷ each other contender, per scenario, paired round by round."""
    refs = [r for r in REFERENCES if any(r in sc["contenders"] for sc in t.values())]
    rows = []
    for sc in t.values():
        e = sc["contenders"].get("pirate")
        if e is None:
            continue
        cells = [fmt_ratio(_get(e, f"ratio_to_{r}", "summary")) if r in sc["contenders"] else ""
                 for r in refs]
        rows.append([sc["title"].split(" (")[0], *cells])
    if not rows or not refs:
        return []
    return ["## pirate_actors ÷ each contender (median of the paired ratios, min–max)", "",
            table(["scenario", *[f"÷ {CONTENDERS[r]}" for r in refs]], rows), ""]


def render(out: dict[str, Any]) -> str:
    """The human-readable report (Markdown tables)."""
    m = out["meta"]
    v = m["machine"]["versions"]
    lines = [
        f"# pirate_actors benchmark ({'quick' if m['quick'] else 'full'} run, {m['date']})",
        "",
        f"{m['machine']['nproc']} cores, {m['machine']['cpu_model']}; Python {v['python']}, "
        f"pyzmq {v['pyzmq']} (libzmq {v['libzmq']}), pirate_actors {v['pirate_actors']}"
        f"{' @ ' + m['pirate_actors_revision'] if m.get('pirate_actors_revision') else ''}, "
        f"pykka {v['pykka']}, zerorpc {v['zerorpc']}, Pyro5 {v.get('Pyro5', '?')}, "
        f"RPyC {v.get('rpyc', '?')}; load at start "
        f"{' '.join(f'{x:.2f}' for x in m['machine']['loadavg_at_start'] or [])}",
        "",
        f"{m['settings']['rounds']} rounds of {m['settings']['window']:g} s windows, contenders "
        f"alternating; stream of {m['settings']['stream_n']:,} messages; took {m['wall_seconds']:.0f} s; "
        f"load at end {' '.join(f'{x:.2f}' for x in m.get('loadavg_at_end') or [])}",
        "",
    ]
    lines += _side_by_side(out.get("throughput", {}))
    rows = []
    for scenario, sc in out.get("throughput", {}).items():
        first = True
        for c, e in sc["contenders"].items():
            med, rng = fmt_range(e["summary"], "/s")
            rows.append([sc["title"] if first else "", CONTENDERS[c], med, rng,
                         fmt_ratio(_get(e, "ratio_to_raw", "summary")) if c != "raw" else "1",
                         fmt_ratio(_get(e, "ratio_to_zerorpc", "summary")) if c != "zerorpc" else
                         ("1" if "zerorpc" in sc["contenders"] else "")])
            first = False
    if rows:
        lines += ["## Throughput (median of the rounds; ratios paired round by round)", "",
                  table(["scenario", "contender", "median /s", "min–max", "÷ raw", "÷ zerorpc"], rows), ""]
        floors = [f"{sc['title'].split(' (')[0]} {fmt_ratio(_get(sc, 'contenders', 'pirate', 'ratio_to_floor', 'summary'))}"
                  for sc in out.get("throughput", {}).values()
                  if _get(sc, "contenders", "pirate", "ratio_to_floor", "summary")]
        secured = [f"{sc['title'].split(' (')[0]}: " + ", ".join(
                       f"{CONTENDERS[c].split(', ')[1]} {fmt_ratio(_get(sc, 'contenders', c, 'ratio_to_pirate', 'summary'))}"
                       for c in SECURED if _get(sc, "contenders", c, "ratio_to_pirate", "summary"))
                   for sc in out.get("throughput", {}).values()
                   if any(_get(sc, "contenders", c, "ratio_to_pirate", "summary") for c in SECURED)]
        if secured:
            lines += ["The cost of security, pirate_actors with it ÷ pirate_actors without, paired round by "
                      "round: " + "; ".join(secured) + ".", ""]
        if floors:
            lines += ["The design floor is raw pyzmq plus the thread hand-offs of pirate_actors' design "
                      "and nothing else (`bench/floor.py`). pirate_actors ÷ floor: " + "; ".join(floors) + ".", ""]
    lines += _pirate_ratios(out.get("throughput", {}))
    crow = []
    for scenario, sc in out.get("throughput", {}).items():
        first = True
        for c, e in sc["contenders"].items():
            cpc = e.get("cost_per_call")
            if not cpc:
                continue
            def cell(key: str, fmt: str) -> str:
                x = cpc.get(key)
                return fmt.format(x["median"]) if x else "—"
            crow.append([scenario if first else "", CONTENDERS[c],
                         cell("cpu_us_client", "{:.0f}"), cell("cpu_us_server", "{:.0f}"),
                         cell("cpu_us_total", "{:.0f}"),
                         cell("wakeups_client", "{:.2f}"), cell("wakeups_server", "{:.2f}"),
                         cell("wakeups_total", "{:.2f}"),
                         cell("preempted_client", "{:.2f}") + " / " + cell("preempted_server", "{:.2f}")])
            first = False
    if crow:
        lines += ["## Cost per call (per message for the stream), medians of the windows", "",
                  "CPU = user+system µs of all threads; wake-ups = voluntary context switches of all "
                  "threads (a thread that blocked and was woken); preempted = involuntary switches.", "",
                  table(["scenario", "contender", "CPU µs client", "CPU µs server", "CPU µs total",
                         "wake-ups client", "wake-ups server", "wake-ups total",
                         "preempted client / server"], crow), ""]
    trows = []
    for scenario, sc in out.get("throughput", {}).items():
        e = sc["contenders"].get("pirate")
        if not e or not e.get("per_thread"):
            continue
        first = True
        for label, m in e["per_thread"].items():
            if m["cpu_us"] is None or (m["cpu_us"]["median"] < 0.5 and m["wakeups"]["median"] < 0.01):
                continue
            n = int(m["threads"]["median"]) if m["threads"] else 1
            trows.append([scenario if first else "", label + (f" ×{n}" if n > 1 else ""),
                          f"{m['cpu_us']['median']:.1f}", f"{m['wakeups']['median']:.2f}"])
            first = False
    if trows:
        lines += ["## pirate_actors per thread, per call (per partial for the stream), medians", "",
                  table(["scenario", "thread (server = worker process)", "CPU µs", "wake-ups"], trows), ""]
    p = out.get("probes", {})
    prow = []
    if "bind" in p:
        for key, title in (("first_call", "bind → first answered call (worker running)"),
                           ("rebind_first_call", "re-bind after client SIGKILL → first call")):
            med, rng = fmt_range(p["bind"][key]["summary"], "s")
            prow.append([title, med + " s", rng])
    if "death" in p:
        med, rng = fmt_range(p["death"]["delay"]["summary"], "s")
        prow.append([f"worker SIGKILL → WorkerLost (heartbeat {p['death']['heartbeat']:g} s × "
                     f"liveness {p['death']['liveness']})", med + " s", rng])
    if "idle_rss" in p:
        ir = p["idle_rss"]
        for k in ("worker", "client"):
            prow.append([f"idle CPU, {k} ({ir['idle_seconds']:.0f} s, {ir['threads'][k]} threads)",
                         f"{ir['idle_cpu_percent'][k]:.2f} % of a core", ""])
        for k in ("worker", "client"):
            r = ir["rss"][k]
            prow.append([f"RSS {k} over {ir['rss_calls']['count']:,} calls", f"{r['growth_mb']:+.2f} MB",
                         f"{r['before'] / MB:.1f} → {r['after'] / MB:.1f} MB"])
    if prow:
        lines += ["## pirate_actors probes", "", table(["probe", "median", "min–max"], prow), ""]
    for issue in (5, 14):
        trow = []
        for tg in out.get("targets", []):
            if tg.get("issue", 5) != issue:
                continue
            val = tg["value"]
            if tg["op"] == "all":
                shown = "—" if val is None else f"{val:.0f} of {tg['limit']:.0f} met"
                trow.append([tg["target"], shown, "all", tg["verdict"]])
                continue
            shown = "—" if val is None else (f"{val:.2f}" if tg["unit"] in ("×", "MB", "% of a core")
                                              else f"{val:.3f}")
            op = {">=": "≥", "<=": "≤", "<": "<", "info": ""}[tg["op"]]
            trow.append([tg["target"], f"{shown} {tg['unit']}".strip(),
                         f"{op} {tg['limit']:g}" if op else "—", tg["verdict"]])
        if trow:
            lines += [f"## Targets (issue {issue})", "",
                      table(["target", "this run", "target", "verdict"], trow), ""]
    for name, err in out.get("errors", {}).items():
        first_line = err.strip().splitlines()[-1] if err.strip() else err
        lines.append(f"- {name}: {first_line}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run everything, print the report and write the JSON."""
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a short run (well under a minute)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    ap.add_argument("--rounds", type=int, help="rounds of windows (default 7, quick 3)")
    ap.add_argument("--window", type=float, help="seconds per throughput window (default 1, quick 0.4)")
    ap.add_argument("--contenders", default=",".join(CONTENDERS),
                    help=f"comma-separated subset of {','.join(CONTENDERS)} (default: all)")
    ap.add_argument("--no-probes", action="store_true", help="skip the pirate_actors probes")
    args = ap.parse_args(argv)

    s = dataclasses.replace(QUICK if args.quick else FULL)
    if args.rounds:
        s.rounds = args.rounds
    if args.window:
        s.window = args.window
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in names if c not in CONTENDERS]
    if bad:
        ap.error(f"unknown contender(s): {', '.join(bad)}")

    t_start = time.monotonic()
    out: dict[str, Any] = {
        "meta": {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "quick": args.quick,
                 "pirate_actors_revision": library_revision(),
                 "settings": dataclasses.asdict(s), "machine": machine_info()},
        "errors": {},
    }
    why = pirate.availability()
    if why is not None and "pirate" in names:
        log(f"pirate_actors is not importable ({why}): skipping its contenders and probes")
        out["errors"]["pirate"] = f"not importable: {why}"
        names.remove("pirate")
    if "raw" not in names:
        ap.error("raw pyzmq is the reference; it cannot be left out")
    for name, module in OPTIONAL.items():
        if name in names and importlib.util.find_spec(module) is None:
            log(f"{CONTENDERS[name]} is not installed (no module {module!r}): skipping it "
                "(pip install '.[bench]')")
            out["errors"][name] = f"not importable: no module {module!r}"
            names.remove(name)

    run_throughput(s, names, out)
    out["probes"] = {}
    if "pirate" in names and not args.no_probes:
        hb, lv = pirate.default_liveness()
        probes: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("bind", lambda: probe_bind(s)),
            ("death", lambda: probe_death(s, hb, lv)),
            ("idle_rss", lambda: probe_idle_rss(s)),
        ]
        for key, fn in probes:
            try:
                out["probes"][key] = fn()
            except AgentError as exc:
                out["errors"][f"probe {key}"] = str(exc)
                log(f"probe {key} failed:\n{exc}")
    out["targets"] = evaluate_targets(out)
    out["meta"]["wall_seconds"] = time.monotonic() - t_start
    out["meta"]["loadavg_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report = render(out)
    print(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=2)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
