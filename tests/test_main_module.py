"""``python -m pirate_actors`` prints the version and the console scripts (issue 16, item 8)."""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

import pirate_actors

pytestmark = pytest.mark.timeout(30)


def test_python_m_pirate_actors_prints_the_version_and_every_console_script() -> None:
    result = subprocess.run([sys.executable, "-m", "pirate_actors"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"pirate_actors {pirate_actors.__version__}"
    config = configparser.ConfigParser()
    config.read(Path(__file__).resolve().parent.parent / "setup.cfg")
    scripts = [line.split("=")[0].strip()
               for line in config["options.entry_points"]["console_scripts"].splitlines() if line.strip()]
    assert scripts and all(f"  {name} " in result.stdout for name in scripts)
