#!/usr/bin/env python
"""Reproduce the paper's MNIST table: LeNet-5 trained with SDLM for 20 passes, without and
with distortions, for several seeds; writes a markdown table (and JSON) of the results.

    python bench/reproduce.py --data DIR [--seeds 0 1 2] [--passes 20] [--jobs 2] [--out DIR]

Each run is ``lenet-fast train`` with the defaults (the paper's recipe) and ``--seed S``
(plus ``--distort``); it trains in its own process, one thread, and writes its model and
per-pass checkpoints under ``--out``. ``--jobs 2`` runs two at a time (one per core on a
2-core machine); each run's wall time is then measured while another run shares the
machine. The paper: 0.95% test error without distortions, 0.8% with (+-0.1%).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PAPER = {False: 0.95, True: 0.80}


def run_one(args: argparse.Namespace, seed: int, distort: bool) -> dict:
    name = f"{'distort' if distort else 'plain'}-seed{seed}"
    out = Path(args.out) / name
    cmd = [sys.executable, "-m", "lenet_fast.cli", "train", "--passes", str(args.passes),
           "--seed", str(seed), "--out", str(out)]
    if args.data:
        cmd += ["--data", args.data]
    if distort:
        cmd.append("--distort")
    cmd += args.extra
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    with open(Path(args.out) / f"{name}.log", "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{name} failed (exit {r.returncode}); see {Path(args.out) / (name + '.log')}")
    from lenet_fast import LeNet5

    hist = LeNet5.load(out / "model.npz").history
    last = hist[-1]
    print(f"{name}: test error {100 * last['test_error']:.2f}%  train error {100 * last['train_error']:.2f}%  "
          f"{seconds / 60:.1f} min", flush=True)
    return {"seed": seed, "distort": distort, "test_error": last["test_error"],
            "train_error": last["train_error"], "seconds": seconds, "history": hist}


def machine() -> str:
    import lenet_fast

    i = lenet_fast.info()
    return (f"{i['cpu']} ({os.cpu_count()} logical cores), {i['isa']}, 1 thread per run, "
            f"lenet_fast {i['version']}, Python {platform.python_version()}")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def table(results: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"LeNet-5, SDLM, {args.passes} passes of 60,000 patterns; machine: {machine()}; "
        f"code of commit {args.commit}; {dt.date.today().isoformat()}; {args.jobs} run(s) at a time.",
        "",
        "| training set | seed | test error | train error (on the fly, last pass) | wall time |",
        "|---|---:|---:|---:|---:|",
    ]
    for distort in (False, True):
        rows = [r for r in results if r["distort"] == distort]
        if not rows:
            continue
        label = "distorted (paper III-C)" if distort else "original 60,000"
        for r in sorted(rows, key=lambda r: r["seed"]):
            lines.append(f"| {label} | {r['seed']} | {100 * r['test_error']:.2f}% | "
                         f"{100 * r['train_error']:.2f}% | {r['seconds'] / 60:.1f} min |")
        med = statistics.median(r["test_error"] for r in rows)
        lines.append(f"| {label} | **median** | **{100 * med:.2f}%** (paper {PAPER[distort]:.2f}%) | "
                     f"{100 * statistics.median(r['train_error'] for r in rows):.2f}% | "
                     f"{statistics.median(r['seconds'] for r in rows) / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="MNIST folder (default $LENET_FAST_DATA)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--passes", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument("--only", choices=("plain", "distort"), help="run only one of the two settings")
    p.add_argument("--out", default="reproduce-runs", help="folder for models, logs and the table")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="more `lenet-fast train` options after --")
    args = p.parse_args(argv)
    args.extra = [a for a in args.extra if a != "--"]
    args.commit = commit()  # the code the runs use, before anything else can change it
    Path(args.out).mkdir(parents=True, exist_ok=True)
    settings = [d for d in (False, True) if args.only is None or d == (args.only == "distort")]
    jobs = [(s, d) for d in settings for s in args.seeds]
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda sd: run_one(args, *sd), jobs))
    md = table(results, args)
    (Path(args.out) / "results.md").write_text(md)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
