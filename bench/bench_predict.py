#!/usr/bin/env python
"""Throughput of ``lenet-fast predict`` on a folder of small PNG digits: files per second,
the whole command (start-up, listing, decoding, normalising, classifying, writing CSV).

    python bench/bench_predict.py [--data DIR] [--files 20000] [--repeats 3] [--quick]

The files are MNIST test digits written as 28x28 dark-on-white grey PNGs (what a form
scanner's digit crops look like) into a temporary folder; the command runs as a user runs
it, in a subprocess with its output to a file, ``--repeats`` times; the median is reported
with every run. Results go to ``--json`` (default bench/results/predict.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from harness.facts import machine_facts
from harness.output import SCHEMA, default_json, write_json


def write_digits(folder: Path, n: int, data: str | None) -> np.ndarray:
    from PIL import Image

    from lenet_fast import load_mnist

    _, _, x, y = load_mnist(data)
    for i in range(n):
        Image.fromarray(255 - x[i % len(x)]).save(folder / f"{i:06d}.png")
    return y[np.arange(n) % len(y)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("LENET_FAST_DATA"), help="MNIST folder")
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1,000 files, one run (a smoke test)")
    p.add_argument("--json", metavar="PATH", default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.files, a.repeats = 1000, 1
    facts = machine_facts(threads=os.cpu_count())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "digits"
        folder.mkdir()
        labels = write_digits(folder, a.files, a.data)
        cmd = [sys.executable, "-m", "lenet_fast", "predict", "--csv", str(folder)]
        seconds = []
        for _ in range(a.repeats):
            with open(Path(tmp) / "out.csv", "w") as out:
                t0 = time.perf_counter()
                subprocess.run(cmd, stdout=out, check=True)
                seconds.append(time.perf_counter() - t0)
        lines = (Path(tmp) / "out.csv").read_text().splitlines()[1:]
        digits = [line.split(",")[1] for line in lines]
        right = sum(d == str(lab) for d, lab in zip(digits, labels))
        rejected = sum(d == "" for d in digits)
        if len(lines) != a.files:
            raise SystemExit(f"expected {a.files} results, got {len(lines)}")
    rate = a.files / statistics.median(seconds)
    print(
        f"lenet-fast predict: {a.files:,} PNG files, median {statistics.median(seconds):.2f} s "
        f"= {rate:,.0f} files/s (runs: {', '.join(f'{s:.2f}' for s in seconds)} s); "
        f"{right / a.files:.2%} right, {rejected / a.files:.2%} rejected (reject=auto)"
    )
    result = {
        "schema": SCHEMA,
        "script": "bench/bench_predict.py",
        "facts": facts,
        "files": a.files,
        "seconds": seconds,
        "files_per_second": rate,
        "right": right / a.files,
        "rejected": rejected / a.files,
    }
    if a.json or not a.quick:
        write_json(a.json or default_json("predict"), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
