#!/usr/bin/env python
"""Benchmark lenet_fast.image.normalize_digits: raw digits into MNIST's 28x28 format.

Validate first, then time, and say what was measured:

1. The inputs are MNIST test digits drawn dark on light paper (inverted) and resized by
   pixel replication to S x S pixels (S = 28, 64, 128 by default), uint8, C-contiguous.
   For each size, the C++ kernel's digits are compared with the NumPy reference's
   (``backend="reference"``) on the first ``--validate`` images: they must be the same
   bytes, else the run stops with exit status 1 before anything is timed.
2. Each (size, thread count) is then warmed up and timed with ``time.perf_counter``:
   ``--repeats`` runs of back-to-back calls on a batch of ``--batch`` images; the median
   (min, max) is reported in digits/s. The results go to ``--json`` (default
   bench/results/image.json; with ``--quick`` only when ``--json`` is given).

Usage::

    python bench/bench_image.py                  # sizes 28,64,128 at 1 and 2 threads
    python bench/bench_image.py --quick          # smoke run (still validates), a few s
"""

from __future__ import annotations

import argparse
import sys
import time

from harness.output import SCHEMA, default_json, md_table, rate, write_json
from harness.threads import cap_blas_env


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Validate, then time, lenet_fast.image.")
    p.add_argument("--quick", action="store_true", help="smoke run (still validates)")
    p.add_argument("--json", metavar="PATH", help=f"default {default_json('image')}")
    p.add_argument("--sizes", default="28,64,128", help="image sides in pixels (default 28,64,128)")
    p.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    p.add_argument("--batch", type=int, default=None, help="images per call (default 2000)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (default 7, quick 3)")
    p.add_argument("--validate", type=int, default=None, help="images checked (default 300)")
    args = p.parse_args(argv)
    try:
        args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        args.threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        p.error("--sizes, --threads: expected comma-separated integers")
    if not args.sizes or min(args.sizes) < 28 or not args.threads or min(args.threads) < 1:
        p.error("--sizes: expected sides >= 28; --threads: expected counts >= 1")
    args.batch = args.batch or (200 if args.quick else 2000)
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.validate = args.validate or (50 if args.quick else 300)
    if args.json is None and not args.quick:
        args.json = default_json("image")
    return args


ARGS = _parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    cap_blas_env(max(ARGS.threads))

import numpy as np  # noqa: E402

import lenet_fast  # noqa: E402
from harness.facts import header_lines as facts_lines  # noqa: E402
from harness.facts import machine_facts  # noqa: E402
from harness.timing import measure  # noqa: E402
from lenet_fast import image  # noqa: E402

FULL_TIMING = (0.2, 0.05)  # (min seconds per timed run, seconds of warm-up)
QUICK_TIMING = (0.01, 0.005)


def make_inputs(digits: np.ndarray, side: int) -> np.ndarray:
    """MNIST digits (N,28,28) dark on light, resized to (N,side,side) by replication."""
    idx = (np.arange(side) * 28) // side
    return np.ascontiguousarray(255 - digits[:, idx][:, :, idx])


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    digits = lenet_fast.load_mnist()[2]  # $LENET_FAST_DATA, else the cache
    need = max(args.batch, args.validate)
    digits = np.concatenate([digits] * (need // len(digits) + 1))[:need]
    timing = QUICK_TIMING if args.quick else FULL_TIMING
    before = lenet_fast.get_num_threads()
    facts = machine_facts(threads=args.threads)
    rows, validation = [], []
    try:
        for side in args.sizes:
            x = make_inputs(digits, side)
            # 1. validate
            v = x[: args.validate]
            fast, ink = image.normalize_digits(v)
            ref, ink_r = image.normalize_digits(v, backend="reference")
            if not (np.array_equal(fast, ref) and np.array_equal(ink, ink_r) and ink.all()):
                bad = int(np.flatnonzero((fast != ref).any(axis=(1, 2)) | (ink != ink_r))[0])
                print(f"VALIDATION FAILED at {side}px, image {bad}: C++ != NumPy", file=sys.stderr)
                return 1
            validation.append({"side": side, "images": len(v), "identical_bytes": True})
            # 2. time
            xb = x[: args.batch]
            for nt in args.threads:
                lenet_fast.set_num_threads(nt)
                m = measure(lambda xb=xb: image.normalize_digits(xb), args.repeats, *timing)
                rows.append(
                    {
                        "side": side,
                        "threads": nt,
                        "batch": len(xb),
                        **m,
                        "digits_per_s": len(xb) / m["median_s"],
                        "digits_per_s_min": len(xb) / m["max_s"],
                        "digits_per_s_max": len(xb) / m["min_s"],
                    }
                )
    finally:
        lenet_fast.set_num_threads(before)
    elapsed = time.perf_counter() - t_start
    result = {
        "schema": SCHEMA,
        "script": "bench/bench_image.py",
        "facts": facts,
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "batch": args.batch,
            "sizes": args.sizes,
            "threads": args.threads,
            "input": "MNIST test digits, inverted (dark on light), resized by replication, uint8",
            "min_run_s": timing[0],
            "warmup_s": timing[1],
        },
        "validation": validation,
        "results": rows,
        "run_time_s": elapsed,
    }
    lines = [
        "# lenet_fast.image.normalize_digits benchmark",
        "",
        *facts_lines(facts),
        f"- method: C++ digits compared byte for byte with the NumPy reference on "
        f"{args.validate} images per size first; then warm-up and {args.repeats} timed runs "
        f"of >= {timing[0] * 1e3:g} ms on batches of {args.batch} (median, min-max)"
        + (" [--quick]" if args.quick else ""),
        "",
        *md_table(
            ["input", "threads", "digits/s (median)", "min-max"],
            "lrrr",
            [
                [
                    f"{r['side']}x{r['side']} uint8",
                    str(r["threads"]),
                    rate(r["digits_per_s"]),
                    f"{rate(r['digits_per_s_min'])}-{rate(r['digits_per_s_max'])}",
                ]
                for r in rows
            ],
        ),
        "",
        f"Total run time {elapsed:.1f} s.",
    ]
    print("\n".join(lines))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(run(ARGS))
