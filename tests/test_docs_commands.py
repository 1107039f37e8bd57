"""Every shell command in the README and ``docs/*.md`` is run: by this file, by a named test, or by CI.

The commands are those of the fenced ``sh``/``bash``/``shell``/``console`` blocks, the ``$ ``
lines of unlabelled fences, and the indented code blocks. Each one must be in one of three tables:

- ``RUN_HERE``: this file runs it, as written, in the scenario of its section (the section's
  runnable commands in order, in one temporary folder), and checks its exit code and, where the
  doc shows it, the shape of its output. To run a doc's command on one machine, without touching
  anything outside the test, a scenario changes only this: every port the doc names becomes a
  free one (one per port, the same throughout the section); ``client-host``/``CLIENT_HOST`` become
  ``127.0.0.1``; ``/etc/pirate`` becomes a folder in the temporary one. The temporary folder holds
  ``demos`` (the repository's, as at its root) and ``mymodule.py``, the ``mymodule:MyProcedures``
  the docs use as a stand-in for the reader's own module; the package's scripts are on ``PATH``.
  A worker a doc runs until it is stopped (``&``, or a line meant for another machine) runs in the
  background; the scenario waits for it to start before the next command, for it to register
  before the section ends, and then stops it with SIGTERM, which must end it with exit 0.
- ``REGISTRY``: another test or a CI script runs it; the test checks that the named test's source
  or the named script (reached from ``.ci/run``) really holds what runs it.
- ``NOT_RUN``: illustrative only, each with its reason. Rare, and never a way out of a command
  that could run.

A command in none of them fails the test, naming its doc and line and what to do.
"""

from __future__ import annotations

import ast
import concurrent.futures
import configparser
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.cli.support import Process, free_port, script_env

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / ".ci" / "run"
SHELL_LANGUAGES = {"sh", "bash", "shell", "console", "shell-session"}
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
HEADING = re.compile(r"^#{1,6} ")
COMMAND_WORDS = re.compile(  # the start of a command line (not of a log line: "pirate-call: ...")
    r"^((pirate-(worker|call|listen|keygen)|python3?|pip|docker|podman|kubectl|curl|systemctl|"
    r"journalctl|bash|sudo)( |$)|(demos|\.venv|\.ci|bench)/)"
)


def doc_paths() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# ------------------------------------------------------------------------------ extraction


@dataclass(frozen=True)
class Command:
    """One shell command of a doc, as written (continuation lines included, comment left off)."""

    doc: str  # relative to the repository's root
    line: int
    text: str
    comment: str  # what the doc says after '#' on its line
    section: str  # the heading it is under
    block: int  # the line of its block's opening fence (or first indented line)
    output: tuple[str, ...] = ()  # the output a `$ ` block shows after it

    @property
    def key(self) -> str:
        return normalized(self.text)

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def normalized(text: str) -> str:
    """``text`` with continuation lines joined and runs of blanks made one space."""
    return " ".join(text.replace("\\\n", " ").split())


def _complete(text: str) -> bool:
    """Whether ``text`` is a whole command: no continuation backslash, no open quote."""
    if text.endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def _split_comment(text: str) -> tuple[str, str]:
    """``command  # comment`` -> (command, comment), for a '#' outside quotes that starts a word."""
    quote = ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] in " \t") and "\n" not in text[i:]:
            return text[:i].rstrip(), text[i + 1 :].strip()
    return text.rstrip(), ""


@dataclass
class Block:
    kind: str  # "fence" or "indented"
    language: str
    start: int
    lines: list[tuple[int, str]]
    section: str


def blocks(path: Path) -> Iterator[Block]:
    """The code blocks of a Markdown file: fenced ones (also inside list items) and indented ones."""
    lines = path.read_text().splitlines()
    section = "(top)"
    i = 0
    previous_blank, in_list = True, False
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            indent, marker, language = fence.groups()
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(marker):
                text = lines[j]
                body.append((j + 1, text[len(indent):] if text.startswith(indent) else text.lstrip()))
                j += 1
            yield Block("fence", language.lower(), i + 1, body, section)
            i, previous_blank = j + 1, False
            continue
        if line.startswith("    ") and line.strip() and previous_blank and not in_list:
            body = []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append((i + 1, lines[i][4:]))
                i += 1
            while body and not body[-1][1].strip():
                body.pop()
            yield Block("indented", "", body[0][0], body, section)
            previous_blank = False
            continue
        if HEADING.match(line):
            section, in_list = line.strip(), False
        elif re.match(r"^\s*([-*+]|\d+\.)\s", line):
            in_list = True
        elif line.strip() and not line.startswith(" "):
            in_list = False
        previous_blank = not line.strip()
        i += 1


def commands(path: Path, root: Path = ROOT) -> list[Command]:
    """Every shell command of the doc at ``path``."""
    doc = str(path.relative_to(root))
    found: list[Command] = []
    for block in blocks(path):
        prompted = any(text.startswith("$ ") for _, text in block.lines)
        if block.kind == "fence" and block.language not in SHELL_LANGUAGES and not (
            block.language == "" and prompted
        ):
            continue
        pending: tuple[int, str] | None = None
        output: list[str] = []
        for number, text in block.lines:
            if pending is not None:
                pending = (pending[0], pending[1] + "\n" + text)
            elif prompted and not text.startswith("$ "):
                if found and found[-1].block == block.start:
                    output.append(text)
                continue
            else:
                if output and found:
                    found[-1] = _with_output(found[-1], output)
                output = []
                if not text.strip() or text.lstrip().startswith("#"):
                    continue
                pending = (number, text[2:] if prompted else text)
            if _complete(pending[1]):
                command, comment = _split_comment(pending[1])
                found.append(Command(doc, pending[0], command, comment, block.section, block.start))
                pending = None
        if output and found:
            found[-1] = _with_output(found[-1], output)
        assert pending is None, f"{doc}:{pending[0]}: a command that never ends (open quote or '\\')"
    return found


def _with_output(command: Command, output: list[str]) -> Command:
    return dataclasses.replace(command, output=tuple("\n".join(output).rstrip().splitlines()))


def unlabelled_commands(path: Path, root: Path = ROOT) -> list[str]:
    """Lines of fences not marked as shell that read like a command line but are not a synopsis."""
    doc = str(path.relative_to(root))
    suspects = []
    for block in blocks(path):
        if block.kind != "fence" or block.language in SHELL_LANGUAGES or block.language not in (
            "", "text", "console"
        ):
            continue
        for number, text in block.lines:
            if COMMAND_WORDS.match(text) and not text.startswith("$ ") and "[" not in text:
                suspects.append(f"{doc}:{number}: {text.strip()}")
    return suspects


# ------------------------------------------------------------------------------ the tables


@dataclass(frozen=True)
class Outcome:
    rc: int
    stdout: str
    stderr: str
    folder: Path
    prefix: str  # the shell state (umask, export) the command ran with


@dataclass(frozen=True)
class Expect:
    """How this file runs a command and what it checks."""

    stdout: str | None = None  # a regex the whole of stdout (less its last newline) must match
    stderr: str | None = None  # a regex stderr must contain
    rc: int = 0
    background: bool = False  # runs until stopped: SIGTERM at the section's end (or `kill %N`)
    beside: bool = False  # another machine's command: run beside the rest, its end awaited last
    needs_worker: bool = False  # shown against a running demo worker: one is started if none is
    registers: bool = True  # (background workers) it must register with a client before the end
    check: Callable[[Outcome], str | None] | None = None  # more checks: a message if one fails


DOC_OUTPUT = "\0the output the doc shows"
DEMO_PROCEDURES = "compare ping return_none slow_fail slow_succeed ticker"
WORKERS_TABLE = (
    r"ID +NAME +CAPACITY +IN FLIGHT +PROCEDURES\n"
    rf"[0-9a-f]{{32}} +\S+ +8 +0 +{DEMO_PROCEDURES}"
)


def _workers_json(outcome: Outcome) -> str | None:
    (worker,) = json.loads(outcome.stdout)
    keys = {"id", "name", "capacity", "in_flight", "procedures", "idempotent"}
    if set(worker) != keys or worker["capacity"] != 8 or " ".join(worker["procedures"]) != DEMO_PROCEDURES:
        return f"not the JSON of one demo worker with {sorted(keys)}: {worker}"
    return None


def _a_key_file(outcome: Outcome) -> str | None:
    key = outcome.folder / "pirate.key"
    if len(key.read_bytes().rstrip(b"\n")) < 16:
        return f"{key} holds less than the 16 bytes a key needs"
    if "umask 077" in outcome.prefix and key.stat().st_mode & 0o077:
        return f"{key} is readable by others after umask 077: {oct(key.stat().st_mode)}"
    return None


def _a_certificate_pair(folder: str, name: str) -> Callable[[Outcome], str | None]:
    def check(outcome: Outcome) -> str | None:
        base = outcome.folder / folder / name
        modes = {suffix: (base.parent / (base.name + suffix)).stat().st_mode & 0o777
                 for suffix in (".key", ".key_secret")}
        return None if modes == {".key": 0o644, ".key_secret": 0o600} else f"{base}: modes {modes}"
    return check


PONG = Expect(stdout="'pong'", stderr="partial: started")
PONG_BESIDE = Expect(stdout="'pong'", beside=True)

RUN_HERE: dict[str, Expect] = {
    # docs/cli.md: the opening example, the examples, pirate-listen, pirate-keygen
    "pirate-worker demos.procedures:DemoProcedures --connect tcp://127.0.0.1:5550 &": Expect(
        background=True),
    "pirate-call tcp://127.0.0.1:5550 ping": PONG,
    """pirate-call tcp://127.0.0.1:5550 compare --args '"apple", "orange"'""": Expect(
        stdout=r"\[False, 2\]"),
    "pirate-call tcp://127.0.0.1:5550 --workers": Expect(stdout=WORKERS_TABLE, needs_worker=True),
    "kill %1": Expect(),  # the job it stops must exit 0: "graceful stop, exit 0"
    "pirate-call tcp://127.0.0.1:5550 return_none": Expect(stdout="None", needs_worker=True),
    """pirate-call tcp://127.0.0.1:5550 compare --kwargs '"str1":"apple", "str2":"apple"'""": Expect(
        stdout=r"\[True, 1\]", needs_worker=True),
    """pirate-call tcp://127.0.0.1:5550 compare --args '"apple", "orange"' --json""": Expect(
        stdout=r"\[false, 2\]", needs_worker=True),
    "pirate-call tcp://127.0.0.1:5550 slow_succeed --args 5 --timeout 10": Expect(
        stdout="True", stderr="partial: started\npartial: sleeping 5 s before succeeding",
        needs_worker=True),
    "pirate-call tcp://127.0.0.1:5550 slow_fail --args 1; echo $?": Expect(
        stdout="1", stderr=r"Traceback[\s\S]*\npirate-call: error: RuntimeError: slow_fail failed",
        needs_worker=True),
    "pirate-call tcp://127.0.0.1:5550 ping --count 1000 -q > /dev/null": Expect(
        stdout="", stderr=r"(?m)^1000 calls, 0 errors, [\d.]+ calls/s$", needs_worker=True),
    "pirate-call tcp://127.0.0.1:5550 ping --count -1 -q | head -3": Expect(
        stdout="'pong'\n'pong'\n'pong'", needs_worker=True),
    "pirate-call tcp://127.0.0.1:5599 ping --wait 1; echo $?": Expect(
        stdout="3", stderr="NoWorkerError: no worker registered"),
    "pirate-listen tcp://127.0.0.1:5551 --topic tick &": Expect(background=True, stdout=""),
    "pirate-worker demos.procedures:DemoProcedures --connect tcp://127.0.0.1:5551 &": Expect(
        background=True),
    "pirate-keygen certs/client client": Expect(
        stdout=DOC_OUTPUT, check=_a_certificate_pair("certs/client", "client")),
    # docs/cli.md and docs/security.md: keys and certificates
    "head -c 32 /dev/urandom | base64 > pirate.key": Expect(stdout="", check=_a_key_file),
    "pirate-call 'tcp://*:5550' ping --key-file pirate.key --wait 30": PONG_BESIDE,
    "pirate-worker mymodule:MyProcedures --connect tcp://client-host:5550 --key-file pirate.key": Expect(
        background=True),
    "pirate-keygen certs client && pirate-keygen certs worker": Expect(
        stdout="certs/client.key\ncerts/client.key_secret\ncerts/worker.key\ncerts/worker.key_secret",
        check=_a_certificate_pair("certs", "worker")),
    "mkdir -p authorized && cp certs/worker.key authorized/": Expect(stdout=""),
    "pirate-call 'tcp://*:5550' ping --curve-secret certs/client.key_secret --curve-authorized authorized": (
        PONG_BESIDE),
    "pirate-worker mymodule:MyProcedures --connect tcp://client-host:5550 --curve-secret"
    " certs/worker.key_secret --curve-server certs/client.key": Expect(background=True),
    "umask 077": Expect(stdout=""),
    "pirate-keygen /etc/pirate client": Expect(
        stdout=r"/.*/etc/pirate/client\.key\n/.*/etc/pirate/client\.key_secret"),
    "pirate-keygen /etc/pirate worker-1": Expect(
        stdout=r"/.*/etc/pirate/worker-1\.key\n/.*/etc/pirate/worker-1\.key_secret",
        check=_a_certificate_pair("etc/pirate", "worker-1")),
    "pirate-call 'tcp://*:5550' ping --curve-secret /etc/pirate/client.key_secret --curve-authorized"
    " /etc/pirate/workers --wait 30": PONG_BESIDE,
    "pirate-worker mymodule:MyProcedures --connect tcp://client-host:5550 --curve-secret"
    " /etc/pirate/worker-1.key_secret --curve-server /etc/pirate/client.key": Expect(background=True),
    # docs/operations.md
    "pirate-call tcp://127.0.0.1:5550 --workers --json": Expect(check=_workers_json, needs_worker=True),
    "pirate-worker pirate_actors:FunctionActor --connect tcp://127.0.0.1:5550 --metrics-port 9150": Expect(
        background=True, registers=False),
    "curl -s http://127.0.0.1:9150/metrics | grep '^pirate_actors_worker_calls'": Expect(
        stdout=r"(pirate_actors_worker_calls_[a-z_]+ \d+\.\d+\n?)+"),
}

# Steps the prose asks for between two commands ("copy each worker's NAME.key into the client's
# authorized folder"), run before the command they precede.
GLUE: dict[str, str] = {
    "pirate-call 'tcp://*:5550' ping --curve-secret /etc/pirate/client.key_secret --curve-authorized"
    " /etc/pirate/workers --wait 30": "mkdir -p /etc/pirate/workers && cp /etc/pirate/worker-1.key /etc/pirate/workers/",
}


@dataclass(frozen=True)
class Elsewhere:
    """Where a command is run: ``tests/...py::test_name`` or a script that CI runs."""

    where: str
    evidence: tuple[str, ...] = ()  # regexes its source must match; none: the command itself
    note: str = ""  # how what runs there differs from the doc's command, when it does


DOCKER_DEMO = "demos/docker_demo.sh"
README_QUICKSTART = Elsewhere(
    "tests/cli/test_cli_demo.py::test_the_readmes_command_line_quickstart_runs_as_written",
    (r'readme_block\("## Quickstart: the command line"\)', r"fresh_shell_env\(\)"),
    "the whole block, in a shell without the venv on PATH, ports made free")
COMPOSE_UP = (r'compose\+=\(-p "\$PROJECT" -f "\$COMPOSE_FILE"\)', r"COMPOSE_FILE=demos/compose\.yaml")

REGISTRY: dict[tuple[str, str], Elsewhere] = {
    ("README.md", 'python3 -m venv .venv && .venv/bin/pip install -q -e . && PATH="$PWD/.venv/bin:$PATH"'
     " demos/demo.sh"): Elsewhere(".ci/run"),
    ("README.md", "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m"
     " pytest -q"): Elsewhere(".ci/run"),
    ("README.md", 'export PATH="$PWD/.venv/bin:$PATH"'): README_QUICKSTART,
    ("README.md", "pirate-worker demos.procedures:DemoProcedures --connect tcp://127.0.0.1:5550 &"): (
        README_QUICKSTART),
    ("README.md", "pirate-call tcp://127.0.0.1:5550 ping"): README_QUICKSTART,
    ("README.md", """pirate-call tcp://127.0.0.1:5550 compare --args '"apple", "orange"'"""): README_QUICKSTART,
    ("README.md", "pirate-call tcp://127.0.0.1:5550 slow_succeed --args 1 --count 3"): README_QUICKSTART,
    ("README.md", "pirate-call tcp://127.0.0.1:5550 --workers"): README_QUICKSTART,
    ("README.md", "kill %1"): README_QUICKSTART,
    ("README.md", "demos/docker_demo.sh"): Elsewhere(".ci/docker", (r"bash demos/docker_demo\.sh",)),
    ("docs/docker.md", "docker build -t pirate-actors ."): Elsewhere(
        DOCKER_DEMO, (r'build=\("\$ENGINE" build -t "\$IMAGE"', r'"\$\{build\[@\]\}" \.'),
        "$ENGINE is docker where a Docker engine answers, else podman; $IMAGE is pirate-actors:latest"),
    ("docs/docker.md", "docker run --rm pirate-actors"): Elsewhere(
        DOCKER_DEMO, (r'"\$ENGINE" run --rm --network none "\$IMAGE" >/dev/null \|\| die',),
        "with --network none"),
    ("docs/docker.md", "docker run --rm pirate-actors pirate-call --help"): Elsewhere(
        DOCKER_DEMO, (r'"\$ENGINE" run --rm --network none "\$IMAGE" id -u',
                      r"pirate-keygen /certs/client client"),
        "an equivalent only: the demo runs the image's own console scripts (pirate-worker --help, "
        "pirate-keygen; pirate-call in demos/compose.yaml), not pirate-call --help; --help itself is "
        "tests/cli/test_cli_usage.py::test_help_lists_the_options_and_exits_0"),
    ("docs/docker.md", 'demo="$(mktemp -d)" && mkdir -m 0777 "$demo/certs" && export'
     ' PIRATE_ACTORS_CERTS="$demo/certs"'): Elsewhere(
        DOCKER_DEMO, (r"tmpdir=\$\(mktemp -d\)", r'certs="\$tmpdir/certs"', r'mkdir -m 0777 "\$certs"',
                      r"export .*PIRATE_ACTORS_CERTS=\$certs")),
    ("docs/docker.md", "docker run --rm --network none -v \"$PIRATE_ACTORS_CERTS:/certs\" pirate-actors bash"
     " -ec ' pirate-keygen /certs/client client pirate-keygen /certs/worker worker mkdir -m 0700"
     " /certs/client/authorized cp /certs/worker/worker.key /certs/client/authorized/ cp"
     " /certs/client/client.key /certs/worker/'"): Elsewhere(
        DOCKER_DEMO, (r'"\$ENGINE" run --rm --network none -v "\$certs:/certs" "\$IMAGE" bash -ec',
                      r"pirate-keygen /certs/client client", r"pirate-keygen /certs/worker worker",
                      r"mkdir -m 0700 /certs/client/authorized",
                      r"cp /certs/worker/worker\.key /certs/client/authorized/",
                      r"cp /certs/client/client\.key /certs/worker/")),
    ("docs/docker.md", 'chmod 0700 "$PIRATE_ACTORS_CERTS"'): Elsewhere(
        DOCKER_DEMO, (r'chmod 0700 "\$certs"',)),
    ("docs/docker.md", "docker compose -f demos/compose.yaml up --scale worker=3 --abort-on-container-exit"
     " --exit-code-from client"): Elsewhere(
        DOCKER_DEMO, (*COMPOSE_UP, r'up --no-build --scale "worker=\$WORKERS" \\\n\s*'
                      r"--abort-on-container-exit --exit-code-from client"),
        "with -p pirate_actors_demo and --no-build (the image was just built); podman-compose where "
        "there is no Docker engine"),
    ("docs/docker.md", "docker compose -f demos/compose.yaml down"): Elsewhere(
        DOCKER_DEMO, (*COMPOSE_UP, r'"\$\{compose\[@\]\}" down')),
    ("docs/docker.md", "docker run --rm -p 5550:5550 -v /etc/pirate:/certs:ro pirate-actors pirate-call"
     " 'tcp://*:5550' ping --count 20 --wait 30 --curve-secret /certs/client.key_secret"
     " --curve-authorized /certs/authorized"): Elsewhere(
        "demos/compose.yaml", (r"pirate-call 'tcp://\*:5550' ping --count 20 --wait 30",
                               r"--curve-secret /certs/client\.key_secret --curve-authorized /certs/authorized",
                               r"/client:/certs:ro"),
        "the compose demo's client service: the same image, command and certificates, mounted "
        "read-only at /certs, on compose's network instead of a published port"),
    ("docs/docker.md", "docker run -d --restart unless-stopped --name pirate-worker -v /etc/pirate:/certs:ro"
     " pirate-actors pirate-worker demos.procedures:DemoProcedures --connect tcp://CLIENT_HOST:5550"
     " --pool-size 8 --curve-secret /certs/worker-1.key_secret --curve-server /certs/client.key"): Elsewhere(
        "demos/compose.yaml", (r"- pirate-worker\n\s*- demos\.procedures:DemoProcedures\n\s*- --connect\n"
                               r"\s*- tcp://client:5550\n\s*- --curve-secret\n\s*- /certs/worker\.key_secret\n"
                               r"\s*- --curve-server\n\s*- /certs/client\.key", r"/worker:/certs:ro"),
        "the compose demo's worker service, three of them: the same image, command and certificate "
        "layout, with the default pool size, under compose rather than docker run -d"),
    ("docs/operations.md", "pip install -e '.[metrics]'"): Elsewhere(
        ".ci/run", (r"pip install -q -e '\.\[test\]'",),
        "an equivalent: CI installs the test extra, which holds every requirement of the metrics "
        "extra (checked here against setup.cfg)"),
    ("docs/performance.md", "pip install -e '.[bench]'"): Elsewhere(
        ".ci/run", (r"pip install -q -e '\.\[bench\]'",), "quietly, in CI's virtual environment"),
    ("docs/performance.md", "python -m bench --quick"): Elsewhere(
        ".ci/run", (r"python -m bench --quick",), "with every contender, as the doc's command"),
}

NOT_RUN: dict[tuple[str, str], str] = {
    ("docs/performance.md", "python -m bench --json bench/results.json"): (
        "the full benchmark: 2-3 minutes of every core, whose figures are the doc's; a measurement, "
        "not a check, so neither the tests nor CI run it"),
}
MAX_NOT_RUN = 4


# ------------------------------------------------------------------------------ classification


def all_commands() -> list[Command]:
    return [command for path in doc_paths() for command in commands(path)]


def how_run(command: Command) -> str:
    """"here", "elsewhere", "not run", or "" when nothing runs it."""
    if (command.doc, command.key) in REGISTRY:
        return "elsewhere"
    if (command.doc, command.key) in NOT_RUN:
        return "not run"
    if command.key in RUN_HERE:
        return "here"
    return ""


def unhandled(found: list[Command]) -> list[str]:
    return [
        f"{command.where}: `{command.key}` is run by nothing. Run it in {Path(__file__).name}'s "
        f"RUN_HERE (with what its output must look like), or add ({command.doc!r}, {command.key!r}) "
        "to REGISTRY with the test or CI script that runs it, or, if it truly cannot run anywhere, "
        "to NOT_RUN with the reason; or fix the doc if the command is wrong"
        for command in found
        if not how_run(command)
    ]


@pytest.mark.timeout(30)
def test_every_command_in_the_readme_and_docs_is_run_by_this_file_a_test_or_ci() -> None:
    found = all_commands()
    assert len(found) > 40, [command.where for command in found]  # the extraction finds them
    problems = unhandled(found)
    for path in doc_paths():
        problems += [
            f"{suspect}: reads like a command in a block not marked as shell: mark the block "
            "```sh (or prefix the line with `$ `) so that it is run, or ```text if it is output"
            for suspect in unlabelled_commands(path)
        ]
    keys = {command.key for command in found}
    places = {(command.doc, command.key) for command in found}
    problems += [f"RUN_HERE: `{key}` is in no doc any more: remove it" for key in RUN_HERE if key not in keys]
    problems += [f"GLUE: `{key}` is in no doc any more: remove it" for key in GLUE if key not in keys]
    for table in (REGISTRY, NOT_RUN):
        problems += [f"`{key}` is not in {doc} any more: remove its entry" for doc, key in table
                     if (doc, key) not in places]
    assert not problems, "\n".join(problems)
    assert len(NOT_RUN) <= MAX_NOT_RUN, "commands not run must stay rare: make them runnable"


@pytest.mark.timeout(30)
def test_a_command_nobody_runs_fails_naming_its_doc_line_and_what_to_do(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    copy = docs / "cli.md"
    copy.write_text((ROOT / "docs" / "cli.md").read_text() + "\n```sh\npirate-call --bogus-option\n```\n")
    bogus = [c for c in commands(copy, root=tmp_path) if c.key == "pirate-call --bogus-option"]
    assert len(bogus) == 1
    (problem,) = unhandled(bogus)
    line = len(copy.read_text().splitlines()) - 1
    assert problem.startswith(f"docs/cli.md:{line}: `pirate-call --bogus-option` is run by nothing"), problem
    assert "RUN_HERE" in problem and "REGISTRY" in problem and "NOT_RUN" in problem, problem
    # the rest of the copy is what the real doc has, all of it handled
    assert not unhandled([c for c in commands(copy, root=tmp_path) if c not in bogus])


# ------------------------------------------------------------------------------ elsewhere


def reached_from_ci() -> set[str]:
    """The repository's files that ``.ci/run`` runs or names, and those they name in turn."""
    reached, todo = set(), [".ci/run"]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        for token in set(re.findall(r"[\w.][\w./-]*", (ROOT / name).read_text())):
            token = token.rstrip(".")
            if "/" in token and not token.startswith(".venv/") and (ROOT / token).is_file():
                todo.append(token)
    return reached


def _test_source(node: str) -> str:
    path, name = node.split("::")
    tree = ast.parse((ROOT / path).read_text())
    for item in ast.walk(tree):
        if isinstance(item, ast.FunctionDef) and item.name == name:
            return ast.get_source_segment((ROOT / path).read_text(), item) or ""
    raise AssertionError(f"{node}: no such test")


def _extras() -> dict[str, set[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {name: {line.strip() for line in value.splitlines() if line.strip()}
            for name, value in config["options.extras_require"].items()}


@pytest.mark.timeout(30)
def test_each_command_run_elsewhere_is_really_in_the_test_or_ci_script_named() -> None:
    ci = reached_from_ci()
    assert "pytest" in CI.read_text(), "CI runs the tests"
    problems = []
    for (doc, command), elsewhere in REGISTRY.items():
        if "::" in elsewhere.where:
            source = _test_source(elsewhere.where)
            if not elsewhere.where.startswith("tests/"):
                problems.append(f"{elsewhere.where}: not under tests/, which CI runs")
        elif elsewhere.where not in ci:
            problems.append(f"{doc}: `{command}`: {elsewhere.where} is not run by CI (.ci/run)")
            continue
        else:
            source = (ROOT / elsewhere.where).read_text()
        for evidence in elsewhere.evidence or (re.escape(command),):
            if not re.search(evidence, source):
                problems.append(f"{doc}: `{command}`: {elsewhere.where} does not match {evidence!r}")
    assert not problems, "\n".join(problems)
    # the metrics extra is installed by CI through the test extra
    extras = _extras()
    assert extras["metrics"] <= extras["test"], extras


# ------------------------------------------------------------------------------ run here

MYMODULE = '''\
"""The reader's own module of docs/cli.md and docs/security.md (``mymodule:MyProcedures``)."""

from pirate_actors import ProcedureActor


class MyProcedures(ProcedureActor):
    def ping(self):
        return "pong"
'''
PORT = re.compile(r"((?:tcp|https?)://[^\s:'\"/]+:|--metrics-port )(\d{4,5})\b")
STATE = re.compile(r"^(umask|export) ")
KILL = re.compile(r"^kill %(\d+)$")
STARTED = {"pirate-worker": "^\\S+ INFO pirate-worker: started ",
           "pirate-listen": "^\\S+ INFO pirate-listen: listening on "}
BACKGROUND_TIMEOUT = 30.0


@dataclass
class Scenario:
    """A section's runnable commands, run in order in a folder of their own."""

    doc: str
    section: str
    commands: list[Command]
    failures: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.doc} {self.section}"

    def fail(self, command: Command, message: str) -> None:
        self.failures.append(f"{command.where}: `{command.key}`: {message}")

    def run(self, folder: Path) -> list[str]:
        (folder / "demos").symlink_to(ROOT / "demos")
        (folder / "mymodule.py").write_text(MYMODULE)
        ports: dict[str, str] = {}

        def local(text: str) -> str:
            text = PORT.sub(lambda m: m[1] + ports.setdefault(m[2], str(free_port())), text)
            text = re.sub(r"tcp://(client-host|CLIENT_HOST):", "tcp://127.0.0.1:", text)
            return text.replace("/etc/pirate", f"{folder}/etc/pirate")

        started: list[Process] = []
        try:
            self._start_demo_workers(folder, local, started)
            by_block: dict[int, list[Command]] = {}
            for command in self.commands:
                by_block.setdefault(command.block, []).append(command)
            prefix = ""
            for block in by_block.values():
                prefix = self._run_block(block, folder, local, prefix)
        finally:
            for process in started:
                process.kill()
        return self.failures

    def _start_demo_workers(self, folder: Path, local: Callable[[str], str], started: list[Process]) -> None:
        """A demo worker for each endpoint that a command expects one at, unless the section starts one."""
        served = {endpoint for command in self.commands if command.key.startswith("pirate-worker ")
                  for endpoint in re.findall(r"--connect (\S+)", command.text)}
        wanted = {endpoint for command in self.commands if RUN_HERE[command.key].needs_worker
                  for endpoint in re.findall(r"tcp://\S+", command.text)[:1]} - served
        for endpoint in sorted(wanted):
            worker = Process(["bash", "-c", "exec " + local(
                f"pirate-worker demos.procedures:DemoProcedures --connect {endpoint}")], cwd=folder)
            started.append(worker)
            worker.wait_for_line(STARTED["pirate-worker"])

    def _run_block(self, block: list[Command], folder: Path, local: Callable[[str], str], prefix: str) -> str:
        jobs: list[tuple[Command, Process]] = []
        stopped: list[tuple[Command, Process]] = []
        try:
            for command in block:
                expect = RUN_HERE[command.key]
                if command.key in GLUE:
                    glue = self._shell(local(GLUE[command.key]), folder, prefix)
                    if glue.returncode:
                        self.fail(command, f"the step before it failed: {glue.stderr}")
                text = local(command.text)
                if kill := KILL.match(command.key):
                    job = jobs[int(kill[1]) - 1]
                    self._stop(command, job)
                    stopped.append(job)
                elif expect.background or expect.beside:
                    assert expect.beside or text.rstrip().endswith("&") or "pirate-worker" in text
                    process = Process(["bash", "-c", prefix + "exec " + text.rstrip().rstrip("&")],
                                      cwd=folder)
                    jobs.append((command, process))
                    if started := STARTED.get(text.split()[0]):  # as one would see it start
                        process.wait_for_line(started)
                else:
                    result = self._shell(text, folder, prefix)
                    self._check(command, expect, Outcome(result.returncode, result.stdout,
                                                         result.stderr, folder, prefix))
                    if STATE.match(command.key):
                        prefix += text + "\n"
            for command, process in jobs:  # calls from another machine: they end by themselves
                if RUN_HERE[command.key].beside:
                    code = process.finish(BACKGROUND_TIMEOUT)
                    self._check(command, RUN_HERE[command.key],
                                Outcome(code, process.stdout, process.stderr, folder, prefix))
            running = [job for job in jobs if not RUN_HERE[job[0].key].beside and job not in stopped]
            for job in running:  # workers and listeners: each did its part before it is stopped
                self._registered(job)
            for job in reversed(running):  # the last started first, as `kill %2 %1`
                self._stop(job[0], job)
        finally:
            for _, process in jobs:
                process.kill()
        return prefix

    def _stop(self, command: Command, job: tuple[Command, Process]) -> None:
        """Stop a background job with SIGTERM (for ``kill %N`` or at the block's end); exit 0."""
        started, process = job
        expect = RUN_HERE[started.key]
        self._registered(job)
        process.signal(signal.SIGTERM)
        code = process.finish(BACKGROUND_TIMEOUT)
        if code != 0:
            self.fail(command, f"the job it stopped exited with {code}, not 0:\n{process.describe()}")
        outcome = Outcome(code, process.stdout, process.stderr, Path(), "")
        self._check(started, Expect(stdout=expect.stdout, stderr=expect.stderr), outcome)

    def _registered(self, job: tuple[Command, Process]) -> None:
        """Wait until a background worker has registered with a client (if it is to)."""
        started, process = job
        if started.key.startswith("pirate-worker ") and RUN_HERE[started.key].registers:
            try:
                process.wait_for_line(r" registered with ", timeout=BACKGROUND_TIMEOUT)
            except pytest.fail.Exception as error:
                self.fail(started, f"it never registered with a client: {error}")

    @staticmethod
    def _shell(text: str, folder: Path, prefix: str) -> subprocess.CompletedProcess[str]:
        process = subprocess.Popen(["bash", "-c", prefix + text], cwd=folder, env=script_env(),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = process.communicate(timeout=BACKGROUND_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            return subprocess.CompletedProcess(text, -9, stdout, stderr + "\n(timed out)")
        return subprocess.CompletedProcess(text, process.returncode, stdout, stderr)

    def _check(self, command: Command, expect: Expect, outcome: Outcome) -> None:
        shown = f"exit {outcome.rc}\n--- stdout:\n{outcome.stdout}\n--- stderr:\n{outcome.stderr}"
        if outcome.rc != expect.rc:
            self.fail(command, f"exit {outcome.rc}, not {expect.rc}:\n{shown}")
            return
        stdout = outcome.stdout.removesuffix("\n")
        if expect.stdout == DOC_OUTPUT:
            if tuple(stdout.splitlines()) != command.output:
                self.fail(command, f"the output is not the doc's {list(command.output)}:\n{shown}")
        elif expect.stdout is not None and not re.fullmatch(expect.stdout, stdout):
            self.fail(command, f"stdout does not match {expect.stdout!r}:\n{shown}")
        if expect.stderr is not None and not re.search(expect.stderr, outcome.stderr):
            self.fail(command, f"stderr does not contain {expect.stderr!r}:\n{shown}")
        if expect.check is not None and (message := expect.check(outcome)):
            self.fail(command, message)


def scenarios() -> list[Scenario]:
    found: dict[tuple[str, str], Scenario] = {}
    for command in all_commands():
        if how_run(command) == "here":
            found.setdefault((command.doc, command.section),
                             Scenario(command.doc, command.section, [])).commands.append(command)
    return list(found.values())


SCENARIOS = scenarios()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Every scenario run once, several at a time: each on ports and in a folder of its own."""
    # The folders are made here, not in the threads: the factory is not thread-safe (two
    # threads making its base folder at once can each see a different one).
    folders = [tmp_path_factory.mktemp("doc") for _ in SCENARIOS]

    def run(scenario: Scenario, folder: Path) -> list[str]:
        try:
            return scenario.run(folder)
        except BaseException as error:  # a failed wait_for_line, a timeout: report, not crash
            return [*scenario.failures, f"{scenario.name}: {type(error).__name__}: {error}"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip([s.name for s in SCENARIOS], pool.map(run, SCENARIOS, folders)))


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", [s.name for s in SCENARIOS])
def test_the_docs_commands_run_as_written(name: str, outcomes: dict[str, list[str]]) -> None:
    failures = outcomes[name]
    assert not failures, "\n\n".join(failures)
