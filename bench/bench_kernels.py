#!/usr/bin/env python
"""Benchmark every lenet_fast kernel, and the whole LeNet-5 forward pass, at LeNet-5's shapes.

Validate first, then time, and say what was measured:

1. For each ISA and batch size, every kernel's forward and backward outputs are checked
   against ``lenet_fast.reference`` run on float64 copies of the same inputs. Any
   disagreement aborts the run with exit status 1 before anything is timed: a fast wrong
   kernel must never show up as a win.
2. Each call is then warmed up and timed with ``time.perf_counter``: ``--repeats`` runs,
   each of enough back-to-back calls to last at least ~20 ms; the median (and min/max) time
   per call is reported, with GFLOP/s (flop counts in bench/README.md).
   The results go to ``--json`` (default bench/results/kernels.json; with ``--quick`` only
   when ``--json`` is given), the markdown report to stdout.
3. The whole LeNet-5 forward pass (``lenet_forward``) is validated and timed the same way
   for lenet_fast (each ISA) and for the NumPy reference, in images/s.

Usage::

    python bench/bench_kernels.py                 # full run: all ISAs, 1 thread, 7 repeats
    python bench/bench_kernels.py --quick         # CI smoke run (still validates), < ~20 s
    python bench/bench_kernels.py --isa avx2 --threads 2 --json out.json

Exit status: 0 success, 1 a kernel disagrees with the reference, 2 bad arguments (e.g. an
ISA this CPU or build cannot run).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

from harness.output import SCHEMA, default_json, write_json
from harness.threads import cap_blas_env


def _parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Validate, then time, the lenet_fast kernels and the LeNet-5 forward pass."
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: 3 short runs per measurement (still validates everything)",
    )
    p.add_argument(
        "--json",
        metavar="PATH",
        help=f"write the results as JSON to PATH (default {default_json('kernels')})",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="threads per kernel call (lenet_fast.set_num_threads); default 1",
    )
    p.add_argument(
        "--isa",
        default="all",
        help="'all' (every ISA in available_isas()), or one of them, e.g. scalar, avx2",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs per measurement; the median is reported (default 7, 3 with --quick)",
    )
    p.add_argument("--batches", default="1,256", help="comma-separated batch sizes (default 1,256)")
    p.add_argument("--seed", type=int, default=1998, help="seed of the random inputs and weights")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        p.error("--batches: expected comma-separated integers, e.g. 1,256")
    if not args.batches or min(args.batches) < 1:
        p.error("--batches: expected positive integers")
    if args.json is None and not args.quick:
        args.json = default_json("kernels")
    return args


ARGS = _parse_args() if __name__ == "__main__" else None

# The reference runs on NumPy, whose BLAS (tensordot, matmul) is multi-threaded by default.
# So that "--threads N" means the same for both sides of the lenet_fast / reference ratio,
# cap the BLAS pool *before* NumPy is imported, unless the user already chose a value.
# (OPENBLAS_CORETYPE, if set, is left alone.)
if ARGS is not None:
    cap_blas_env(ARGS.threads)

import numpy as np  # noqa: E402

import lenet_fast  # noqa: E402
from harness.facts import header_lines as facts_lines  # noqa: E402
from harness.facts import machine_facts  # noqa: E402
from harness.tables import kernel_table, pass_table  # noqa: E402
from harness.timing import measure  # noqa: E402
from harness.validation import ATOL_REL, RTOL, ValidationError, check_close  # noqa: E402
from lenet_fast import kernels as K  # noqa: E402
from lenet_fast import reference as R  # noqa: E402
from lenet_fast.layout import MACS_PER_IMAGE, PARAM_SHAPES, RBF_PARAM  # noqa: E402
from lenet_fast.tables import C3_TABLE, RBF_CODES  # noqa: E402

# Timing parameters: (min seconds per timed run, seconds of warm-up).
FULL_TIMING = (0.020, 0.010)
QUICK_TIMING = (0.002, 0.001)


# --------------------------------------------------------------------------- inputs


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


def make_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """LeNet-5 weights, uniform in +-2.4/F with F the fan-in of the unit fed (paper, App. A).

    Biases are treated as weights from a constant +1 input, with the same range. The names
    and shapes are lenet_fast's (``PARAM_SHAPES``), the RBF centres under ``RBF_PARAM``.
    """
    p: dict[str, np.ndarray] = {}
    p["c1.w"] = _uniform(rng, (6, 1, 5, 5), 2.4 / 25)
    p["c1.b"] = _uniform(rng, (6,), 2.4 / 25)
    p["s2.coef"] = _uniform(rng, (6,), 2.4 / 4)
    p["s2.bias"] = _uniform(rng, (6,), 2.4 / 4)
    # C3: one 5x5 kernel per connected (S2 map c, C3 map k), ordered by k then c; the
    # fan-in of C3 map k is 25 x (number of S2 maps it reads): 75, 100 or 150.
    kk = np.argwhere(C3_TABLE.T)[:, 0]
    fan_in_k = 25 * C3_TABLE.sum(axis=0)  # (16,)
    bound_t = (2.4 / fan_in_k[kk]).astype(np.float64)  # (60,)
    p["c3.w"] = (rng.uniform(-1, 1, size=(60, 5, 5)) * bound_t[:, None, None]).astype(np.float32)
    p["c3.b"] = (rng.uniform(-1, 1, size=16) * (2.4 / fan_in_k)).astype(np.float32)
    p["s4.coef"] = _uniform(rng, (16,), 2.4 / 4)
    p["s4.bias"] = _uniform(rng, (16,), 2.4 / 4)
    p["c5.w"] = _uniform(rng, (120, 16, 5, 5), 2.4 / 400)
    p["c5.b"] = _uniform(rng, (120,), 2.4 / 400)
    p["f6.w"] = _uniform(rng, (84, 120), 2.4 / 120)
    p["f6.b"] = _uniform(rng, (84,), 2.4 / 120)
    p[RBF_PARAM] = np.ascontiguousarray(RBF_CODES, dtype=np.float32)
    assert {k: v.shape for k, v in p.items() if k != RBF_PARAM} == dict(PARAM_SHAPES)
    return p


#: Table I as the kernels take it.
TABLE = np.ascontiguousarray(C3_TABLE, dtype=bool)


def lenet_forward(mod: Any, params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """LeNet-5 forward pass built from ``mod``'s kernels (lenet_fast.kernels or .reference).

    x (N,1,32,32) -> RBF outputs (N,10); the predicted class is the argmin.
    """
    p = params
    a = mod.squash_forward(mod.conv2d_forward(x, p["c1.w"], p["c1.b"]))  # C1 (N,6,28,28)
    a = mod.squash_forward(mod.subsample_forward(a, p["s2.coef"], p["s2.bias"]))  # S2 (N,6,14,14)
    a = mod.squash_forward(
        mod.sparse_conv2d_forward(a, p["c3.w"], p["c3.b"], TABLE)
    )  # C3 (N,16,10,10)
    a = mod.squash_forward(mod.subsample_forward(a, p["s4.coef"], p["s4.bias"]))  # S4 (N,16,5,5)
    a = mod.squash_forward(mod.conv2d_forward(a, p["c5.w"], p["c5.b"]))  # C5 (N,120,1,1)
    a = a.reshape(a.shape[0], a.shape[1])  # (N,120), still C-contiguous
    a = mod.squash_forward(mod.linear_forward(a, p["f6.w"], p["f6.b"]))  # F6 (N,84)
    return mod.rbf_forward(a, p[RBF_PARAM])  # OUTPUT (N,10)


def forward_flops_per_image() -> int:
    """Flops of one forward pass: 2 per multiply-add of ``MACS_PER_IMAGE["infer"]``."""
    return 2 * MACS_PER_IMAGE["infer"]


class Case:
    """One kernel at one LeNet-5 shape: its inputs, and its flop / element counts."""

    def __init__(
        self,
        kernel: str,
        layer: str,
        fwd_args: tuple,
        bwd_args: tuple,
        fwd_flops: float | None,
        bwd_flops: float | None,
        elems: int | None = None,
    ) -> None:
        self.kernel = kernel
        self.layer = layer
        self.fwd_args = fwd_args
        self.bwd_args = bwd_args
        self.flops = {"forward": fwd_flops, "backward": bwd_flops}
        self.elems = elems  # for element-wise kernels: elements per call

    def args(self, direction: str) -> tuple:
        return self.fwd_args if direction == "forward" else self.bwd_args

    def fn(self, mod: Any, direction: str) -> Callable:
        return getattr(mod, f"{self.kernel}_{direction}")


def make_cases(n: int, p: dict[str, np.ndarray], rng: np.random.Generator) -> list[Case]:
    """The kernels at LeNet-5's layer shapes for batch n, with random (seeded) inputs."""

    def act(*shape: int) -> np.ndarray:  # activations / upstream gradients in [-1, 1]
        return _uniform(rng, shape, 1.0)

    cases = []
    # C1: conv x(N,1,32,32) w(6,1,5,5)
    macs = n * 6 * 28 * 28 * 1 * 5 * 5
    x = act(n, 1, 32, 32)
    cases.append(
        Case(
            "conv2d",
            "C1",
            (x, p["c1.w"], p["c1.b"]),
            (x, p["c1.w"], act(n, 6, 28, 28)),
            2 * macs,
            4 * macs,
        )
    )
    # S2: subsample x(N,6,28,28)
    x = act(n, 6, 28, 28)
    big, small = n * 6 * 28 * 28, n * 6 * 14 * 14
    cases.append(
        Case(
            "subsample",
            "S2",
            (x, p["s2.coef"], p["s2.bias"]),
            (x, p["s2.coef"], act(n, 6, 14, 14)),
            big + small,
            big + 4 * small,
        )
    )
    # C3: sparse conv x(N,6,14,14) w(60,5,5) with Table I
    macs = n * 60 * 10 * 10 * 5 * 5
    x = act(n, 6, 14, 14)
    t = TABLE
    cases.append(
        Case(
            "sparse_conv2d",
            "C3",
            (x, p["c3.w"], p["c3.b"], t),
            (x, p["c3.w"], act(n, 16, 10, 10), t),
            2 * macs,
            4 * macs,
        )
    )
    # S4: subsample x(N,16,10,10)
    x = act(n, 16, 10, 10)
    big, small = n * 16 * 10 * 10, n * 16 * 5 * 5
    cases.append(
        Case(
            "subsample",
            "S4",
            (x, p["s4.coef"], p["s4.bias"]),
            (x, p["s4.coef"], act(n, 16, 5, 5)),
            big + small,
            big + 4 * small,
        )
    )
    # C5: conv x(N,16,5,5) w(120,16,5,5)
    macs = n * 120 * 1 * 1 * 16 * 5 * 5
    x = act(n, 16, 5, 5)
    cases.append(
        Case(
            "conv2d",
            "C5",
            (x, p["c5.w"], p["c5.b"]),
            (x, p["c5.w"], act(n, 120, 1, 1)),
            2 * macs,
            4 * macs,
        )
    )
    # F6: linear x(N,120) w(84,120)
    macs = n * 84 * 120
    x = act(n, 120)
    cases.append(
        Case(
            "linear",
            "F6",
            (x, p["f6.w"], p["f6.b"]),
            (x, p["f6.w"], act(n, 84)),
            2 * macs,
            4 * macs,
        )
    )
    # squash on the C1 output size (N,6,28,28); backward takes y = f(a), so |y| < 1.7159
    a = rng.standard_normal((n, 6, 28, 28)).astype(np.float32)
    y = R.squash_forward(a)
    cases.append(
        Case("squash", "C1 out", (a,), (y, act(n, 6, 28, 28)), None, None, elems=n * 6 * 28 * 28)
    )
    # RBF: x(N,84), centres RBF_CODES (10,84): per (n,i,j) one subtract + one multiply-add
    x = _uniform(rng, (n, 84), 1.7159)
    nmj = n * 10 * 84
    cases.append(
        Case("rbf", "OUTPUT", (x, p[RBF_PARAM]), (x, p[RBF_PARAM], act(n, 10)), 3 * nmj, 6 * nmj)
    )
    return cases


# --------------------------------------------------------------------------- validation


def _to64(args: tuple) -> tuple:
    return tuple(a.astype(np.float64) if a.dtype == np.float32 else a for a in args)


def _as_tuple(out: Any) -> tuple:
    return out if isinstance(out, tuple) else (out,)


def header(facts: dict, args: argparse.Namespace, timing: tuple[float, float]) -> list[str]:
    return [
        "# lenet_fast kernel benchmark",
        "",
        *facts_lines(facts),
        f"- ISA benchmarked: {', '.join(facts['isas_benchmarked'])}; threads: "
        f"{facts['threads']} per kernel call; NumPy BLAS for the reference: "
        + (
            ", ".join(
                f"{k}={v}"
                for k, v in facts["thread_environment"].items()
                if v is not None and k.endswith("NUM_THREADS")
            )
            or "library default"
        ),
        f"- method: every kernel validated against lenet_fast.reference (float64) first "
        f"(rtol {RTOL:g}, atol {ATOL_REL:g} x max(1, max|ref|)); then warm-up and "
        f"{args.repeats} timed runs of >= {timing[0] * 1e3:g} ms each (time.perf_counter); "
        f"median per call, min-max over the runs" + (" [--quick]" if args.quick else ""),
    ]


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> int:
    t_start = time.perf_counter()
    available = lenet_fast.available_isas()
    if args.isa == "all":
        isas = list(available)
    elif args.isa in available:
        isas = [args.isa]
    else:
        print(
            f"error: --isa {args.isa!r}: not available here (available: {available})",
            file=sys.stderr,
        )
        return 2
    timing = QUICK_TIMING if args.quick else FULL_TIMING
    original_isa = lenet_fast.get_isa()
    lenet_fast.set_num_threads(args.threads)
    if lenet_fast.get_num_threads() != args.threads:
        print(
            f"error: set_num_threads({args.threads}) left get_num_threads() = "
            f"{lenet_fast.get_num_threads()}",
            file=sys.stderr,
        )
        return 2
    facts = machine_facts(threads=args.threads)
    facts["isas_benchmarked"] = isas

    rng = np.random.default_rng(args.seed)
    params = make_params(rng)
    params64 = {
        k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in params.items()
    }
    cases = {n: make_cases(n, params, rng) for n in args.batches}
    images = {n: _uniform(rng, (n, 1, 32, 32), 1.0) for n in args.batches}

    # Reference results, computed once per batch on float64 copies, shared by every ISA.
    ref_kernels = {
        n: [
            {d: _as_tuple(c.fn(R, d)(*_to64(c.args(d)))) for d in ("forward", "backward")}
            for c in cases[n]
        ]
        for n in args.batches
    }
    ref_pass = {n: lenet_forward(R, params64, images[n].astype(np.float64)) for n in args.batches}

    kernel_rows: list[dict] = []
    pass_rows: list[dict] = []
    validation: list[dict] = []
    try:
        for isa in isas:
            lenet_fast.set_isa(isa)
            if lenet_fast.get_isa() != isa:
                raise ValidationError(f"set_isa({isa!r}) left get_isa() = {lenet_fast.get_isa()!r}")
            for n in args.batches:
                for case, ref in zip(cases[n], ref_kernels[n]):
                    for d in ("forward", "backward"):
                        fn, a = case.fn(K, d), case.args(d)
                        what = f"{case.kernel}_{d} ({case.layer}, batch {n}, isa {isa})"
                        # 1. validate
                        worst = check_close(what, _as_tuple(fn(*a)), ref[d])
                        validation.append({"what": what, "worst_err_over_tol": worst})
                        # 2. time
                        m = measure(lambda fn=fn, a=a: fn(*a), args.repeats, *timing)
                        flops = case.flops[d]
                        kernel_rows.append(
                            {
                                "kernel": case.kernel,
                                "layer": case.layer,
                                "direction": d,
                                "batch": n,
                                "isa": isa,
                                **m,
                                "flops_per_call": flops,
                                "gflops": None if flops is None else flops / m["median_s"] / 1e9,
                                "elems_per_call": case.elems,
                                "gelems": None
                                if case.elems is None
                                else case.elems / m["median_s"] / 1e9,
                            }
                        )
                # whole forward pass
                what = f"lenet_forward (batch {n}, isa {isa})"
                worst = check_close(what, (lenet_forward(K, params, images[n]),), (ref_pass[n],))
                validation.append({"what": what, "worst_err_over_tol": worst})
                m = measure(lambda n=n: lenet_forward(K, params, images[n]), args.repeats, *timing)
                pass_rows.append({"implementation": "lenet_fast", "isa": isa, "batch": n, **m})
        # the NumPy reference, on the same float32 inputs a user would pass
        for n in args.batches:
            got = lenet_forward(R, params, images[n])
            check_close(
                f"lenet_forward (reference on float32 inputs, batch {n})", (got,), (ref_pass[n],)
            )
            m = measure(lambda n=n: lenet_forward(R, params, images[n]), args.repeats, *timing)
            pass_rows.append(
                {"implementation": "reference (NumPy)", "isa": "numpy", "batch": n, **m}
            )
    except ValidationError as e:
        print(f"\nVALIDATION FAILED, nothing is reported: {e}", file=sys.stderr)
        return 1
    finally:
        lenet_fast.set_isa(original_isa)

    ref_ips = {r["batch"]: r["batch"] / r["median_s"] for r in pass_rows if r["isa"] == "numpy"}
    flops_img = forward_flops_per_image()
    for r in pass_rows:
        r["images_per_s"] = r["batch"] / r["median_s"]
        r["images_per_s_min"] = r["batch"] / r["max_s"]
        r["images_per_s_max"] = r["batch"] / r["min_s"]
        r["gflops"] = flops_img * r["images_per_s"] / 1e9
        r["ratio_vs_reference"] = (
            None if r["isa"] == "numpy" else r["images_per_s"] / ref_ips[r["batch"]]
        )

    worst = max(validation, key=lambda v: v["worst_err_over_tol"])
    elapsed = time.perf_counter() - t_start
    result = {
        "schema": SCHEMA,
        "script": "bench/bench_kernels.py",
        "facts": facts,
        "settings": {
            "quick": args.quick,
            "repeats": args.repeats,
            "threads": args.threads,
            "batches": args.batches,
            "seed": args.seed,
            "min_run_s": timing[0],
            "warmup_s": timing[1],
            "rtol": RTOL,
            "atol_rel": ATOL_REL,
        },
        "validation": validation,
        "kernels": kernel_rows,
        "forward_pass": pass_rows,
        "forward_flops_per_image": flops_img,
        "run_time_s": elapsed,
    }
    lines = header(facts, args, timing)
    lines += [
        "",
        f"Validation: {len(validation)} checks passed (every kernel forward and backward, and "
        f"the whole forward pass, per ISA and batch); worst |err| / tolerance "
        f"{worst['worst_err_over_tol']:.3g} ({worst['what']}).",
        "",
        "## Kernels at LeNet-5 shapes",
        "",
        *kernel_table(result),
        "",
        "GFLOP/s: 2 flops per multiply-add, counts in bench/README.md; squash reports "
        "Gelem/s (elements per second) instead.",
        "",
        "## LeNet-5 forward pass (C1-S2-C3-S4-C5-F6-RBF, squash after each of C1..F6)",
        "",
        *pass_table(result),
        "",
        f"GFLOP/s at {flops_img:,} flops per image (2 per multiply-add, "
        f"{MACS_PER_IMAGE['infer']:,} multiply-adds); 'vs reference' = median images/s over "
        "the reference's at the same batch.",
        "",
        f"Total run time {elapsed:.1f} s.",
    ]
    print("\n".join(lines))

    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(run(ARGS))
