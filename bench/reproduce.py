#!/usr/bin/env python
"""Reproduce the paper's MNIST table: LeNet-5 trained with SDLM for 20 passes, without and
with distortions, for several seeds; writes a markdown table (and JSON) of the results.

    python bench/reproduce.py --data DIR [--seeds 0 1 2] [--passes 20] [--jobs 2] [--out DIR]

Each run is ``lenet-fast train`` with the defaults (the paper's recipe) and ``--seed S``
(plus ``--distort``); it trains in its own process, one thread, and writes its model and
per-pass checkpoints under ``--out``. ``--jobs 2`` runs two at a time (one per core on a
2-core machine); each run's wall time is then measured while another run shares the
machine. ``--scheduler tcp://HOST:8786`` sends the runs to a Dask cluster instead, one task
per run, each again a ``lenet-fast train`` subprocess (of the worker), so they spread over
the workers; ``--out`` and ``--data`` are then paths on the workers. The paper: 0.95% test error without distortions, 0.8% with (+-0.1%).

The summary (machine facts, settings, each run's errors and time) goes to ``--json``
(default bench/results/reproduce.json); each run's full history to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.facts import machine_facts
from harness.output import SCHEMA, default_json, source_line, write_json
from harness.tables import reproduce_table

#: The paper's test error, %, without and with distortions.
PAPER = {"plain": 0.95, "distort": 0.80}


def run_one(args: argparse.Namespace, seed: int, distort: bool) -> dict:
    """One run, here in a local process: see :func:`train_run`."""
    name, train_args = train_command(args, seed, distort)
    return report(name, train_run(name, train_args, str(args.out)))


def train_command(args: argparse.Namespace, seed: int, distort: bool) -> tuple[str, list[str]]:
    """The run's name and its ``lenet-fast train`` arguments."""
    name = f"{'distort' if distort else 'plain'}-seed{seed}"
    cmd = [
        "train",
        "--passes",
        str(args.passes),
        "--seed",
        str(seed),
        "--out",
        str(Path(args.out) / name),
    ]
    if args.data:
        cmd += ["--data", args.data]
    if distort:
        cmd.append("--distort")
    return name, cmd + args.extra


def train_run(name: str, train_args: list[str], out: str) -> dict:
    """Run ``lenet-fast train`` in a subprocess of this process, on one thread, with its
    log in ``out/NAME.log``; return its wall time, its model's history and the host.

    This is also what a Dask worker runs (``--scheduler``): it uses nothing of this script
    but modules, so it pickles by value, and it reads the model where the worker wrote it."""
    from lenet_fast import LeNet5

    Path(out).mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "lenet_fast.cli", *train_args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log_path = Path(out) / f"{name}.log"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        r = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(
            f"{name} failed (exit {r.returncode}) on {socket.gethostname()}; see {log_path}"
        )
    hist = LeNet5.load(Path(out) / name / "model.npz").history
    return {"seconds": seconds, "history": hist, "host": socket.gethostname(), "worker": _worker()}


def _worker() -> str | None:
    """The address of the Dask worker running this, or None outside one."""
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except (ImportError, ValueError):
        return None


def report(name: str, run: dict) -> dict:
    hist, seconds = run["history"], run["seconds"]
    last = hist[-1]
    print(
        f"{name}: test error {100 * last['test_error']:.2f}%  train error {100 * last['train_error']:.2f}%  "
        f"{seconds / 60:.1f} min",
        flush=True,
    )
    distort = name.startswith("distort")
    return {
        "seed": int(name.rsplit("seed", 1)[1]),
        "distort": distort,
        "test_error": last["test_error"],
        "train_error": last["train_error"],
        "seconds": seconds,
        "host": run["host"],
        "worker": run["worker"],
        "history": hist,
    }


def run_on_cluster(args: argparse.Namespace, jobs: list[tuple[int, bool]]) -> list[dict]:
    """The runs as tasks of the Dask cluster at ``args.scheduler``, one task per run:
    each worker thread trains one run at a time, in a subprocess of the worker. ``--out``
    and ``--data`` are paths on the workers (a shared filesystem, or the same machine)."""
    from distributed import Client

    if __name__ != "__main__":  # imported: send train_run by value, the workers lack bench/
        import cloudpickle

        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    with Client(args.scheduler) as client:
        futures = []
        for seed, distort in jobs:
            name, train_args = train_command(args, seed, distort)
            futures.append(
                client.submit(
                    train_run, name, train_args, str(args.out), key=f"reproduce-{name}", pure=False
                )
            )
        return [report(f.key.split("reproduce-", 1)[1], f.result()) for f in futures]


def result_json(
    args: argparse.Namespace, facts: dict[str, Any], results: list[dict[str, Any]]
) -> dict[str, Any]:
    runs = [{k: v for k, v in r.items() if k != "history"} for r in results]
    return {
        "schema": SCHEMA,
        "script": "bench/reproduce.py",
        "facts": facts,
        "settings": {
            "passes": args.passes,
            "seeds": args.seeds,
            "jobs": args.jobs,
            "only": args.only,
            "extra_train_options": args.extra,
            "data": args.data,
            "scheduler": args.scheduler,
        },
        "paper_test_error_percent": PAPER,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="MNIST folder (default $LENET_FAST_DATA)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--passes", type=int, default=20)
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="run on this Dask cluster (e.g. tcp://scheduler:8786), one task per run, "
        "instead of --jobs local processes (needs the dask extra)",
    )
    p.add_argument("--only", choices=("plain", "distort"), help="run only one of the two settings")
    p.add_argument("--out", default="reproduce-runs", help="folder for models, logs and the table")
    p.add_argument(
        "--json",
        metavar="PATH",
        default=default_json("reproduce"),
        help="the summary as JSON (default %(default)s)",
    )
    p.add_argument(
        "extra", nargs=argparse.REMAINDER, help="more `lenet-fast train` options after --"
    )
    args = p.parse_args(argv)
    args.extra = [a for a in args.extra if a != "--"]
    # the code the runs use, before anything else can change it
    facts = machine_facts(threads=1)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    settings = [d for d in (False, True) if args.only is None or d == (args.only == "distort")]
    jobs = [(s, d) for d in settings for s in args.seeds]
    if args.scheduler:
        results = run_on_cluster(args, jobs)
    else:
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            results = list(pool.map(lambda sd: run_one(args, *sd), jobs))
    result = result_json(args, facts, results)
    md = "\n".join([*reproduce_table(result), "", source_line(args.json, facts)]) + "\n"
    (Path(args.out) / "results.md").write_text(md)
    (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1))
    write_json(args.json, result)
    print()
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
