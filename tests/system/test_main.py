"""``python -m lenet_fast`` is the ``lenet-fast`` command."""

from __future__ import annotations

import subprocess
import sys

import lenet_fast


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lenet_fast", *args], capture_output=True, text=True, timeout=120
    )


def test_python_m_runs_the_command_line():
    r = run("info")
    assert r.returncode == 0, r.stderr
    info = dict(line.split(": ", 1) for line in r.stdout.splitlines())
    assert info["version"] == lenet_fast.__version__
    assert info["isa"] in lenet_fast.available_isas()


def test_python_m_reports_bad_arguments_as_the_command_does():
    r = run("no-such-command")
    assert r.returncode == 2
    assert r.stderr.startswith("usage: lenet-fast")
    assert "invalid choice: 'no-such-command'" in r.stderr
