"""CURVE certificates, key rotation and their usage errors, through the console scripts.

Real processes on real loopback sockets, as in the other command-line tests: each test waits for
what the processes print, never for a fixed time.
"""

from __future__ import annotations

import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
import zmq.auth

from tests.cli.support import Processes, described, free_port, run_call, run_tool


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit 2 and a single stderr line containing every fragment, nothing on stdout."""
    assert result.returncode == 2, described(result)
    assert "Traceback" not in result.stderr, described(result)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, described(result)
    for fragment in fragments:
        assert fragment in lines[0], described(result)
    assert result.stdout == "", described(result)


def keygen(directory: Path, name: str, *options: str) -> subprocess.CompletedProcess[str]:
    return run_tool("pirate-keygen", str(directory), name, *options)


class Certificates:
    """A client's and a worker's certificate pairs, the client's folder of authorized workers
    (holding the worker's public certificate), and a stranger's pair nobody authorized."""

    def __init__(self, root: Path) -> None:
        for name in ("client", "worker", "stranger"):
            result = keygen(root / name, name)
            assert result.returncode == 0, described(result)
        self.authorized = root / "authorized"
        self.authorized.mkdir()
        shutil.copy(root / "worker" / "worker.key", self.authorized / "worker.key")
        self.root = root

    def secret(self, name: str) -> str:
        return str(self.root / name / f"{name}.key_secret")

    def public(self, name: str) -> str:
        return str(self.root / name / f"{name}.key")

    def worker_options(self, name: str = "worker") -> list[str]:
        return ["--curve-secret", self.secret(name), "--curve-server", self.public("client")]

    def client_options(self) -> list[str]:
        return ["--curve-secret", self.secret("client"), "--curve-authorized", str(self.authorized)]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("certificates"))


# --- pirate-keygen ---


@pytest.mark.timeout(30)
def test_pirate_keygen_writes_a_pair_zmq_auth_loads_and_only_the_owner_can_read_the_secret(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "new" / "certs"  # made, parents too
    result = keygen(folder, "client")
    assert result.returncode == 0, described(result)
    public, secret = folder / "client.key", folder / "client.key_secret"
    assert result.stdout.splitlines() == [str(public), str(secret)], described(result)

    public_key, no_secret = zmq.auth.load_certificate(str(public))
    same_public_key, secret_key = zmq.auth.load_certificate(str(secret))
    assert no_secret is None and secret_key is not None
    assert public_key == same_public_key and len(public_key) == 40 and len(secret_key) == 40
    assert zmq.curve_public(secret_key) == public_key  # the two files are one pair

    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # a folder it made holds a secret
    assert sorted(p.name for p in folder.iterdir()) == ["client.key", "client.key_secret"]


@pytest.mark.timeout(30)
def test_pirate_keygen_refuses_to_overwrite_a_pair_unless_forced(tmp_path: Path) -> None:
    assert keygen(tmp_path, "worker").returncode == 0
    public, secret = tmp_path / "worker.key", tmp_path / "worker.key_secret"
    before = public.read_bytes(), secret.read_bytes()

    assert_usage_error(keygen(tmp_path, "worker"), "exists already", "--force")
    assert (public.read_bytes(), secret.read_bytes()) == before

    secret.chmod(0o644)  # a loosened old secret: the new one must not inherit its mode
    forced = keygen(tmp_path, "worker", "--force")
    assert forced.returncode == 0, described(forced)
    public_key, secret_key = zmq.auth.load_certificate(str(secret))
    assert public_key == zmq.auth.load_certificate(str(public))[0]  # a new pair, and one pair
    assert secret_key is not None and zmq.curve_public(secret_key) == public_key
    assert public.read_bytes() != before[0] and secret.read_bytes() != before[1]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker.key", "worker.key_secret"]


@pytest.mark.timeout(30)
def test_pirate_keygen_refuses_names_that_are_paths_or_hidden(tmp_path: Path) -> None:
    assert_usage_error(keygen(tmp_path, "../escape"), "NAME")
    assert_usage_error(keygen(tmp_path, ".hidden"), "NAME")  # an authorized folder would skip it
    assert list(tmp_path.iterdir()) == []


# --- CURVE between pirate-worker and pirate-call ---


@pytest.mark.timeout(30)
def test_a_worker_and_a_call_over_curve_on_tcp_loopback_succeed_without_a_key(
    processes: Processes, endpoint: str, certificates: Certificates
) -> None:
    processes.worker(endpoint, *certificates.worker_options())
    result = run_call(endpoint, "compare", "--args", '"apple", "apple"', *certificates.client_options())
    assert (result.returncode, result.stdout) == (0, "[True, 1]\n"), described(result)


@pytest.mark.timeout(30)
def test_a_worker_whose_certificate_is_not_authorized_is_refused_and_never_served(
    processes: Processes, endpoint: str, certificates: Certificates
) -> None:
    processes.worker(endpoint, *certificates.worker_options("stranger"))
    began = time.monotonic()
    call = processes.call(endpoint, "ping", "--wait", "2", *certificates.client_options())
    call.wait_for_line(r"refused a worker")  # the client saw it knock, and turned it away
    assert call.finish() == 3, call.describe()
    assert time.monotonic() - began < 15, call.describe()  # --wait 2, plus start-up
    assert "NoWorkerError" in call.stderr and call.stdout == "", call.describe()


@pytest.mark.timeout(30)
def test_curve_lifts_the_loopback_rule_for_both_tools(
    processes: Processes, certificates: Certificates
) -> None:
    # 192.0.2.1 is a documentation address: the worker only tries to connect out.
    worker = processes.worker("tcp://192.0.2.1:5550", *certificates.worker_options())
    worker.signal(signal.SIGTERM)
    assert worker.finish() == 0, worker.describe()
    # Accepted, bound (behind CURVE) and given up at once: exit 3 (no worker), not 2 (refused).
    result = run_call(
        f"tcp://0.0.0.0:{free_port()}", "ping", "--wait", "0", *certificates.client_options()
    )
    assert result.returncode == 3, described(result)


# --- key rotation ---


@pytest.mark.timeout(30)
def test_repeated_key_files_rotate_keys_signing_with_the_first_and_accepting_any(
    processes: Processes, endpoint: str, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_bytes(b"0123456789abcdef-the-old-key\n")
    new.write_bytes(b"0123456789abcdef-the-new-key\n")
    # Mid-rotation: the worker signs with the new key already, this caller still with the old
    # one; each checks the other with its second key.
    processes.worker(endpoint, "--key-file", str(new), "--key-file", str(old))
    result = run_call(endpoint, "ping", "--key-file", str(old), "--key-file", str(new))
    assert (result.returncode, result.stdout) == (0, "'pong'\n"), described(result)
    # Then the caller switches too; the old key is still accepted until it is removed.
    result = run_call(endpoint, "ping", "--key-file", str(new), "--key-file", str(old))
    assert (result.returncode, result.stdout) == (0, "'pong'\n"), described(result)


@pytest.mark.timeout(30)
def test_a_worker_with_the_old_key_only_is_served_by_a_caller_that_added_the_new_key_second(
    processes: Processes, endpoint: str, tmp_path: Path
) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_bytes(b"0123456789abcdef-the-old-key")
    new.write_bytes(b"0123456789abcdef-the-new-key")
    processes.worker(endpoint, "--key-file", str(old))  # not rotated yet
    result = run_call(endpoint, "ping", "--key-file", str(old), "--key-file", str(new))
    assert (result.returncode, result.stdout) == (0, "'pong'\n"), described(result)


@pytest.mark.timeout(30)
def test_signing_with_a_new_key_before_every_worker_accepts_it_keeps_those_workers_out(
    processes: Processes, endpoint: str, tmp_path: Path
) -> None:
    # Why rotation adds the new key second everywhere before anyone signs with it.
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_bytes(b"0123456789abcdef-the-old-key")
    new.write_bytes(b"0123456789abcdef-the-new-key")
    worker = processes.worker(endpoint, "--key-file", str(old))
    call = processes.call(
        endpoint, "ping", "--key-file", str(new), "--key-file", str(old), "--wait", "1.5"
    )
    worker.wait_for_line(r"dropped a message")  # the client's answers, signed with the new key
    assert call.finish() == 3, call.describe()


@pytest.mark.timeout(30)
def test_a_caller_with_another_key_says_in_its_error_what_it_dropped_and_why(
    processes: Processes, endpoint: str, tmp_path: Path
) -> None:
    (tmp_path / "worker.key").write_bytes(b"0123456789abcdef-the-workers-key")
    (tmp_path / "caller.key").write_bytes(b"0123456789abcdef-another-key")
    processes.worker(endpoint, "--key-file", str(tmp_path / "worker.key"))
    result = run_call(endpoint, "ping", "--key-file", str(tmp_path / "caller.key"), "--wait", "1.5")
    assert result.returncode == 3, described(result)
    error = result.stderr.splitlines()[-1]
    assert error.startswith("pirate-call: error: NoWorkerError: "), described(result)
    assert "dropped" in error and "127.0.0.1" in error and "key" in error, described(result)


@pytest.mark.timeout(30)
def test_a_short_key_among_several_is_a_usage_error_naming_its_file(
    endpoint: str, tmp_path: Path
) -> None:
    good, short = tmp_path / "good.key", tmp_path / "short.key"
    good.write_bytes(b"0123456789abcdef-a-good-key")
    short.write_bytes(b"too short\n")
    result = run_call(endpoint, "ping", "--key-file", str(good), "--key-file", str(short), "--wait", "0")
    assert_usage_error(result, str(short), "16")


# --- usage errors ---


@pytest.mark.timeout(30)
def test_half_a_curve_pair_or_a_missing_certificate_is_a_usage_error_for_every_tool(
    endpoint: str, certificates: Certificates, tmp_path: Path
) -> None:
    secret, client_public = certificates.secret("worker"), certificates.public("client")
    authorized = str(certificates.authorized)

    def worker(*options: str) -> subprocess.CompletedProcess[str]:
        return run_tool(
            "pirate-worker", "demos.procedures:DemoProcedures", "--connect", endpoint, *options
        )

    def call(*options: str) -> subprocess.CompletedProcess[str]:
        return run_call(endpoint, "ping", "--wait", "0", *options)

    def listen(*options: str) -> subprocess.CompletedProcess[str]:
        return run_tool("pirate-listen", endpoint, "--count", "1", *options)

    assert_usage_error(worker("--curve-secret", secret), "--curve-server")
    assert_usage_error(worker("--curve-server", client_public), "--curve-secret")
    assert_usage_error(call("--curve-secret", certificates.secret("client")), "--curve-authorized")
    assert_usage_error(call("--curve-authorized", authorized), "--curve-secret")
    assert_usage_error(listen("--curve-secret", certificates.secret("client")), "--curve-authorized")
    assert_usage_error(listen("--curve-authorized", authorized), "--curve-secret")

    missing = str(tmp_path / "no-such.key_secret")
    assert_usage_error(worker("--curve-secret", missing, "--curve-server", client_public), missing)
    assert_usage_error(call("--curve-secret", missing, "--curve-authorized", authorized), missing)
    no_folder = str(tmp_path / "no-such-folder")
    assert_usage_error(
        call("--curve-secret", certificates.secret("client"), "--curve-authorized", no_folder),
        no_folder,
    )
    # A public certificate where the secret one belongs: the library says which file is wrong.
    assert_usage_error(
        worker("--curve-secret", certificates.public("worker"), "--curve-server", client_public),
        certificates.public("worker"),
    )
