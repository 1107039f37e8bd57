"""The lab's short form (``python -m bench.lab --short``), as CI runs it: namespaces as hosts,
worker processes in them, and every scenario's checks. Skipped where namespaces cannot be made
(not root, no ``ip``): the lab itself says so and exits 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from bench.lab.scenarios import DEFAULT
from tests.helpers.processes import ROOT

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the lab needs root"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="the lab needs the ip command (iproute2)"),
]


@pytest.mark.timeout(240)
def test_the_short_lab_passes_every_scenario() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIRATE_ACTORS_KEY"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.lab", "--short"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=220,
    )
    output = done.stdout + done.stderr
    if done.returncode == 0 and done.stdout.startswith("lab skipped:"):
        pytest.skip(done.stdout.strip())
    assert done.returncode == 0, output
    lines = done.stdout.splitlines()
    for name in DEFAULT:
        line = next((line for line in lines if line.startswith(f"{name}:")), None)
        assert line is not None, f"no line for {name}\n{output}"
        assert line.endswith(": PASS"), output
    assert f"lab: {len(DEFAULT)}/{len(DEFAULT)} scenarios passed" in done.stdout, output
