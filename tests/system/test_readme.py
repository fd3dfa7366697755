"""The README's example of ``lenet-fast predict`` is the command's real output."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_shows_what_predict_prints_on_the_examples():
    text = (ROOT / "README.md").read_text()
    m = re.search(r"```text\n(digit +prob +margin +file\n.*?)```", text, re.S)
    assert m, "README: no example output of lenet-fast predict"
    r = subprocess.run(
        [sys.executable, "-m", "lenet_fast", "predict", "examples/digits"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == m.group(1)
    # the twelve digits are named by their labels: all read right
    for line in r.stdout.splitlines()[1:]:
        digit, *_, file = line.split()
        if "label" in file:
            assert digit == file.split("label")[1][0], line
