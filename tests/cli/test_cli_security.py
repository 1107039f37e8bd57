"""CURVE certificates, key rotation and their usage errors, through the console scripts.

Real processes on real loopback sockets, as in the other command-line tests: each test waits for
what the processes print, never for a fixed time.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest
import zmq.auth

from tests.cli.support import described, run_tool


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
