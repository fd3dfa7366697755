#!/usr/bin/env python
"""The LeNet-5 benchmark suite: lenet_fast against the NumPy reference, PyTorch (eager and
torch.compile), ONNX Runtime, LiteRT and OpenVINO, the same network with the same weights,
for inference and for a training step, at several batch sizes and thread counts.

Every implementation is validated against ``lenet_fast.reference`` in float64 before it is
timed; a lenet_fast (or reference) disagreement stops the run (exit 1, nothing reported), a
peer that disagrees or fails is reported as failed and not timed. Each implementation runs in
a child process of its own (this script again, with ``--worker KEY``), lenet_fast's started
first, so no other library's thread pool exists in the process being timed; the processes
stay alive and take turns in rounds (harness/rounds.py), so a change of load touches all
alike. ``--in-process`` runs them all here, in the same rounds. The FMA peak of "% of FMA
peak" is measured at the start (``--peak-gmacs`` overrides it). The report goes to stdout (markdown), the results to ``--json`` (default
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
import time
from pathlib import Path
from typing import Any

import lenet_fast
from harness import rounds, suite
from harness.facts import machine_facts
from harness.impls import KEYS, LABELS
from harness.output import default_json, write_json
from harness.threads import BlasThreads
from harness.worker import (
    WorkerProcess,
    merge_parts,
    new_part,
    process_facts,
    protocol_channel,
    serve,
    worker_command,
)

#: the rounds of a full run and of --quick, and the seconds of each implementation's turn
ROUNDS, ROUND_S = 9, 0.25
QUICK_ROUNDS, QUICK_ROUND_S = 3, 0.02


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Validate, then time, LeNet-5 inference and training in lenet_fast and its "
        "peers (NumPy reference, PyTorch, ONNX Runtime, LiteRT, OpenVINO), in rounds."
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"CI smoke run: small batches, {QUICK_ROUNDS} rounds of {QUICK_ROUND_S:g} s, no "
        "torch.compile (still validates); no JSON unless --json is given",
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
        "--rounds",
        "--repeats",
        type=int,
        default=None,
        help="rounds: in each, every implementation is timed once per case, in turn "
        f"(default {ROUNDS}, {QUICK_ROUNDS} with --quick; the NumPy reference takes part in "
        f"the first {rounds.REFERENCE_ROUNDS} only). --repeats is its old name",
    )
    p.add_argument(
        "--round-s",
        type=float,
        default=None,
        help=f"seconds of back-to-back calls per implementation, case and round (default "
        f"{ROUND_S:g}, {QUICK_ROUND_S:g} with --quick)",
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
        default=None,
        metavar="G",
        help="fp32 FMA peak per core in G multiply-adds/s for the '%% of FMA peak' column "
        "(default: measured at the start, lenet_fast._core.fma_peak on this CPU's best ISA)",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="time every implementation in this one process, in the same rounds (their "
        "thread pools then live side by side). Default: each in a child process of its own",
    )
    # internal: the child process of one implementation (see harness.worker)
    p.add_argument("--worker", choices=KEYS, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.rounds is None:
        args.rounds = QUICK_ROUNDS if args.quick else ROUNDS
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    if args.round_s is None:
        args.round_s = QUICK_ROUND_S if args.quick else ROUND_S
    if not (args.round_s > 0 and args.round_s < 60):
        p.error(f"--round-s: expected seconds in (0, 60), got {args.round_s:g}")
    if args.peak_gmacs is not None and not (0 < args.peak_gmacs < float("inf")):
        p.error(f"--peak-gmacs: expected a finite G multiply-adds/s > 0, got {args.peak_gmacs:g}")
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
    args.timing = {"warmup_s": 0.005 if args.quick else 0.2}
    # patterns per timed call of the batch-1 training step
    args.block = (
        {"lenet_fast": 32, "torch": 8, "torch.compile": 8, "reference": 2}
        if args.quick
        else {"lenet_fast": 512, "torch": 64, "torch.compile": 64, "reference": 8}
    )
    return args


def run_worker(args: argparse.Namespace) -> int:
    """``--worker KEY``: set up and validate KEY alone in this process, send the part to the
    parent, then time rounds as it asks (harness.worker's protocol). Exit 0 whenever the
    part was sent, a disagreement included."""
    channel = protocol_channel()  # from here on, our stdout is stderr
    if args.isa:
        lenet_fast.set_isa(args.isa)
    if args.worker != "lenet_fast":
        # a peer's process uses lenet_fast only for the SDLM steps: on one thread, so that
        # no OpenMP team of lenet_fast's exists (and spins) while the peer is timed
        lenet_fast.set_num_threads(1)
    model, x, labels, _ = suite.build_inputs(args)
    run = suite.Run(args, model, x, labels, BlasThreads())
    part = run.prepare([args.worker])
    key = args.worker

    def bye() -> dict[str, Any]:
        run.close()
        return process_facts(lenet_fast.get_isa())

    serve(
        channel,
        sys.stdin,
        part,
        lambda case: run.warm(key, case),
        lambda case, seconds: run.time_round(key, case, seconds),
        bye,
    )
    return 0


def start_workers(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One worker process per implementation, lenet_fast's first (if it, or the reference,
    disagrees, nothing else need start), then the others at once (they validate side by
    side; nothing is timed before every one is ready). Returns the parts and the workers
    that are ready to be timed."""
    script = str(Path(__file__).resolve())
    parts: list[dict[str, Any]] = []
    workers: dict[str, WorkerProcess] = {}

    def start(keys: list[str]) -> bool:
        started = {}
        for key in keys:
            if suite.skip_reason(args, key):
                part = new_part()
                part["status"][key] = suite.skip_reason(args, key)
                parts.append(part)
            else:
                started[key] = WorkerProcess(worker_command(script, args.argv, key), key)
        for key, w in started.items():
            part = w.ready()
            if part["crashed"] and key in suite.FATAL:
                part["fatal"] = (
                    f"error: {LABELS[key]}'s process failed, nothing is reported: {part['crashed']}"
                )
            parts.append(part)
            if not part["crashed"] and not part["fatal"]:
                workers[key] = w
        return not any(p["fatal"] for p in parts)

    if start(args.peers[:1]):
        start(args.peers[1:])
    return parts, workers


def run(args: argparse.Namespace) -> int:
    if args.worker:
        return run_worker(args)
    t_start = time.perf_counter()
    if args.isa:
        lenet_fast.set_isa(args.isa)
    blas = BlasThreads()
    model, x, labels, data_source = suite.build_inputs(args)
    facts = machine_facts(threads=sorted({c.threads for c in args.cases}))
    peak = suite.measure_peak(args)  # first: no worker exists yet

    local: suite.Run | None = None
    players: dict[str, Any]
    if args.in_process:
        local = suite.Run(args, model, x, labels, blas)
        parts = [local.prepare(args.peers)]
        players = {k: suite.LocalPlayer(local, k) for k in parts[0]["plan"]}
    else:
        parts, players = start_workers(args)
    fatal = next((p["fatal"] for p in parts if p["fatal"]), None)
    plan = {k: v for p in parts for k, v in p.get("plan", {}).items() if k in players}
    outcome = None
    if fatal is None:
        print(
            f"suite: {', '.join(players)} validated and ready after "
            f"{time.perf_counter() - t_start:.1f} s; {args.rounds} rounds of {args.round_s:g} s",
            file=sys.stderr,
        )
        try:
            outcome = rounds.play(
                players,
                plan,
                [c.key for c in args.cases],
                args.rounds,
                args.round_s,
                max_rounds={"reference": rounds.REFERENCE_ROUNDS},
                fatal=suite.FATAL,
            )
            print(
                f"suite: rounds done after {time.perf_counter() - t_start:.1f} s", file=sys.stderr
            )
        except rounds.PlayerDied as e:
            who = LABELS.get(e.key or "", e.key)
            fatal = f"error: {who}'s process failed, nothing is reported: {e}"
    # the workers quit (each reports its process facts), or the local implementations close
    if local is not None:
        local.close()
    else:
        for part in parts:
            for key in part["status"]:
                if key in players:
                    part["process"] = players[key].close()
    if fatal is not None:
        print(f"\n{fatal}", file=sys.stderr)
        return 1
    assert outcome is not None
    res = merge_parts(parts, facts)
    rounds.collect(res, outcome, [c.key for c in args.cases], peak)
    extra = {
        "model": args.model or f"LeNet5(seed={args.seed}) at initialisation",
        "model_options": dict(model.options),
        "data": data_source,
        "blas_threads": blas.how,
        "onnx_graph": args.onnx_graph,
    }
    result = suite.result_json(args, facts, res, time.perf_counter() - t_start, extra)
    print("\n".join(suite.report_lines(result)))
    if args.json:
        write_json(args.json, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
