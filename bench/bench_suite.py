#!/usr/bin/env python
"""The LeNet-5 benchmark suite: lenet_fast against the NumPy reference, PyTorch (eager and
torch.compile) and ONNX Runtime, the same network with the same weights, for inference and
for a training step, at several batch sizes and thread counts.

Every implementation is validated against ``lenet_fast.reference`` in float64 before it is
timed; a lenet_fast (or reference) disagreement stops the run (exit 1, nothing reported), a
peer that disagrees or fails is reported as failed and not timed. Each implementation runs in
a child process of its own (this script again, with ``--worker KEY``), lenet_fast first, so
no other library's thread pool exists while one is timed; ``--in-process`` runs them all
here. The report goes to stdout (markdown), the results to ``--json`` (default
bench/results/suite.json; ``--quick`` writes JSON only when ``--json`` is given).

Usage::

    python bench/bench_suite.py                      # full run, writes bench/results/suite.json
    python bench/bench_suite.py --quick              # CI smoke run, still validates
    python bench/bench_suite.py --peers lenet_fast,torch,onnxruntime --json out.json

Exit status: 0 success, 1 lenet_fast or the reference disagrees with the float64 reference
(or its process fails), 2 bad arguments. bench/README.md explains every number.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lenet_fast
from harness import suite
from harness.facts import machine_facts
from harness.impls import KEYS, LABELS
from harness.output import default_json, write_json
from harness.threads import BlasThreads
from harness.worker import (
    merge_parts,
    new_part,
    process_facts,
    run_worker_process,
    worker_command,
    write_part,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Validate, then time, LeNet-5 inference and training in lenet_fast and its "
        "peers (NumPy reference, PyTorch, ONNX Runtime)."
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: small batches, 3 short runs, no torch.compile (still "
        "validates); no JSON unless --json is given",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help=f"write the results as JSON to PATH (default {default_json('suite')})",
    )
    p.add_argument(
        "--cases",
        default=None,
        help=f"comma-separated task:batch:threads (default {suite.DEFAULT_CASES}; "
        f"with --quick {suite.QUICK_CASES})",
    )
    p.add_argument(
        "--peers",
        default=",".join(KEYS),
        help=f"implementations to run, comma-separated, from {','.join(KEYS)} "
        "(lenet_fast always runs)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per measurement (default 7, 3 with --quick; the NumPy "
        "reference gets at most 3)",
    )
    p.add_argument("--isa", default=None, help="lenet_fast ISA (default: the one chosen at import)")
    p.add_argument(
        "--model",
        metavar="PATH",
        help="time a saved model (LeNet5.save) instead of a freshly initialised one",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights (default 0)")
    p.add_argument(
        "--data",
        metavar="DIR",
        help="MNIST folder (default $LENET_FAST_DATA); without MNIST, seeded "
        "synthetic digits are used",
    )
    p.add_argument(
        "--onnx-graph",
        choices=("auto", "torch", "helper"),
        default="auto",
        help="where ONNX Runtime's graph comes from: torch.onnx.export, the onnx "
        "helper API, or auto (torch when it can export, else helper)",
    )
    p.add_argument(
        "--peak-gmacs",
        type=float,
        default=suite.PEAK_GMACS_PER_CORE,
        help=f"fp32 FMA peak per core in G multiply-adds/s (default {suite.PEAK_GMACS_PER_CORE:g})",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="time every implementation in this one process (their thread pools "
        "then live side by side). Default: each in a child process of its own",
    )
    # internal: the child process of one implementation (see harness.worker)
    p.add_argument("--worker", choices=KEYS, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", metavar="PATH", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if bool(args.worker) != bool(args.worker_out):
        p.error("--worker and --worker-out go together")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    spec = args.cases or (suite.QUICK_CASES if args.quick else suite.DEFAULT_CASES)
    try:
        args.cases = suite.parse_cases(spec)
    except ValueError:
        p.error(
            f"--cases: expected task:batch:threads items with task infer or train, got {spec!r}"
        )
    peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = sorted(set(peers) - set(KEYS))
    if unknown:
        p.error(f"--peers: unknown {unknown}; choose from {','.join(KEYS)}")
    args.peers = ["lenet_fast"] + [q for q in KEYS if q in peers and q != "lenet_fast"]
    if args.isa is not None and args.isa not in lenet_fast.available_isas():
        have = lenet_fast.available_isas()
        p.error(f"--isa {args.isa!r}: not available here (available: {have})")
    if args.json is None and not args.quick and not args.worker:
        args.json = default_json("suite")
    args.timing = {
        "min_run_s": 0.002 if args.quick else 0.05,
        "warmup_s": 0.005 if args.quick else 0.2,
    }
    # patterns per timed call of the batch-1 training step
    args.block = (
        {"lenet_fast": 32, "torch": 8, "torch.compile": 8, "reference": 2}
        if args.quick
        else {"lenet_fast": 512, "torch": 64, "torch.compile": 64, "reference": 8}
    )
    return args


def run_worker(args: argparse.Namespace) -> int:
    """``--worker KEY``: validate and time KEY alone in this process; write its part to
    ``--worker-out`` (exit 0 whenever the part is written, a disagreement included)."""
    if args.isa:
        lenet_fast.set_isa(args.isa)
    if args.worker != "lenet_fast":
        # a peer's process uses lenet_fast only for the SDLM steps: on one thread, so that
        # no OpenMP team of lenet_fast's exists (and spins) while the peer is timed
        lenet_fast.set_num_threads(1)
    model, x, labels, _ = suite.build_inputs(args)
    part = suite.Run(args, model, x, labels, BlasThreads()).run([args.worker])
    part["process"] = process_facts(lenet_fast.get_isa())
    write_part(args.worker_out, part)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.worker:
        return run_worker(args)
    t_start = time.perf_counter()
    if args.isa:
        lenet_fast.set_isa(args.isa)
    blas = BlasThreads()
    model, x, labels, data_source = suite.build_inputs(args)
    facts = machine_facts(threads=sorted({c.threads for c in args.cases}))

    parts: list[dict[str, Any]] = []
    if args.in_process:
        parts.append(suite.Run(args, model, x, labels, blas).run(args.peers))
    else:
        script = str(Path(__file__).resolve())
        # lenet_fast first: if it (or the reference) disagrees, nothing else need run
        with tempfile.TemporaryDirectory(prefix="lenet_fast_suite_") as tmp:
            for key in args.peers:
                if suite.skip_reason(args, key):
                    part = new_part()
                    part["status"][key] = suite.skip_reason(args, key)
                else:
                    out = Path(tmp) / f"{key}.json"
                    part = run_worker_process(worker_command(script, args.argv, key, out), key, out)
                if part["crashed"] and key in suite.FATAL:
                    part["fatal"] = (
                        f"error: {LABELS[key]}'s process failed, nothing is "
                        f"reported: {part['crashed']}"
                    )
                parts.append(part)
                if part["fatal"]:
                    break
    for part in parts:
        if part["fatal"]:
            print(f"\n{part['fatal']}", file=sys.stderr)
            return 1
    extra = {
        "model": args.model or f"LeNet5(seed={args.seed}) at initialisation",
        "model_options": dict(model.options),
        "data": data_source,
        "blas_threads": blas.how,
        "onnx_graph": args.onnx_graph,
    }
    result = suite.result_json(
        args, facts, merge_parts(parts, facts), time.perf_counter() - t_start, extra
    )
    print("\n".join(suite.report_lines(result)))
    if args.json:
        write_json(args.json, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
