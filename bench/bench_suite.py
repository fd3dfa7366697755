#!/usr/bin/env python
"""The LeNet-5 benchmark suite: lenet_fast against the NumPy reference, PyTorch (eager and
torch.compile) and ONNX Runtime, running the same network with the same weights, for
inference and for a training step, at the batch sizes and thread counts of issue 4.

Validate first, then time, and say what was measured (STYLE.md habit 12):

1. Every implementation builds the same network from one ``LeNet5``'s parameters. Before
   it is timed, each one's output (inference), or its gradients and the parameter
   change of the timed step (training), is checked against ``lenet_fast.reference`` in
   float64. A lenet_fast (or reference) disagreement aborts the run (exit status 1, nothing
   reported); a peer that disagrees or fails is reported as failed, with the reason, and
   not timed.
2. Each measurement is warmed up, then timed ``--repeats`` times (runs of back-to-back
   calls of >= ``min_run`` seconds each); the median and min-max are reported in images/s,
   with the fraction of the CPU's FMA peak and the ratio lenet_fast / peer.
3. A markdown report goes to stdout and, with ``--json PATH``, the same as JSON with the
   CPU, ISA, threads, library versions and git commit.

Each implementation is validated and timed in a child process of its own, one after the
other (lenet_fast first): this script again, with the same arguments and environment plus
the internal ``--worker KEY --worker-out PART.json``; this process merges the parts, computes
the ratios and reports. So no other library's thread pool exists while one is timed: in one
process PyTorch's and ONNX Runtime's pools outlive their measurements beside lenet_fast's
OpenMP team (one full run measured lenet_fast at 32,001 images/s, inference at batch 256 on
2 threads, beside them, and 145,884 alone; bench/README.md has what re-measuring found).
``--in-process`` runs everything in this one process, as the suite used to. A peer whose
process fails (exit status, signal) is reported as failed with the last line of its stderr.

Usage::

    python bench/bench_suite.py                      # full run (~2 minutes)
    python bench/bench_suite.py --quick              # CI smoke run (< 30 s), still validates
    python bench/bench_suite.py --json suite.json --peers lenet_fast,torch,onnxruntime
    python bench/bench_suite.py --in-process         # all in one process (thread pools interfere)

Peers that are not installed (``pip install ".[bench]"`` installs them) are reported as
"not installed". Exit status: 0 success, 1 lenet_fast or the reference disagrees with the
float64 reference (or its process fails), 2 bad arguments. bench/README.md explains every
number.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as _dt
import gc
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lenet_fast
import numpy as np
from lenet_fast import LeNet5, tables
from lenet_fast.model import PARAM_SHAPES, RBF_PARAM
from lenet_fast.train import paper_eta, sdlm_mu

# The timing loop and git facts are bench_kernels.py's (this folder is on sys.path when a
# script here runs), so both suites measure the same way.
from bench_kernels import _git, measure  # noqa: E402

# ------------------------------------------------------------------------------ constants

#: Multiply-adds per image (sparse C3, 60 kernels). Forward: C1 117,600 + C3 150,000 +
#: C5 48,000 + F6 10,080 + S2 1,176 + S4 400 + RBF 840. Training (forward + backward):
#: plus dx and dw of C3, C5 and F6, dw of C1 (C1's dx is not needed), 2 per subsampled
#: output (dcoef, dx) and the RBF's dx. See bench/README.md.
MACS = {"infer": 328_096, "train": 865_848}
#: This CPU's measured fp32 FMA peak per core, in multiply-adds/s (94 GFLOP/s / 2).
PEAK_GMACS_PER_CORE = 47.0

#: The cases of issue 4's table: (task, batch, threads).
DEFAULT_CASES = "infer:1:1,infer:32:1,infer:256:1,infer:256:2,train:1:1,train:32:1,train:256:2"
QUICK_CASES = "infer:1:1,infer:8:1,infer:16:2,train:1:1,train:8:1,train:16:2"
#: Issue 4's targets for lenet_fast, images/s, by (task, batch, threads).
TARGETS = {
    ("infer", 1, 1): 40_000,
    ("infer", 32, 1): 70_000,
    ("infer", 256, 1): 70_000,
    ("infer", 256, 2): 130_000,
    ("train", 1, 1): 15_000,
    ("train", 32, 1): 20_000,
    ("train", 256, 2): 40_000,
}

PEERS = ("lenet_fast", "reference", "torch", "torch.compile", "onnxruntime")
LABELS = {
    "lenet_fast": "lenet_fast",
    "reference": "NumPy reference",
    "torch": "PyTorch eager",
    "torch.compile": "PyTorch torch.compile",
    "onnxruntime": "ONNX Runtime",
}

# Tolerances against the float64 reference (see bench/README.md).
FORWARD_TOL = 1e-4  # |y - y_ref| <= FORWARD_TOL * max(1, max|y_ref|)
GRAD_TOL = 1e-4  # |g - g_ref| <= GRAD_TOL * max|g_ref| per parameter array
UPDATE_TOL = 5e-4  # |dp - dp_ref| <= UPDATE_TOL * max|dp_ref| per parameter array (+ rounding)

SGD_LR = 0.005  # the rate of the batch SGD step (lenet_fast.train's default)
SDLM_ETA, SDLM_MU = paper_eta(1), sdlm_mu(1)  # the SDLM steps of pass 1: eta / (mu + h_kk)
VALIDATE_PATTERNS = 4  # per-pattern (batch 1) training: patterns of the validation run


class ValidationError(Exception):
    pass


@dataclass(frozen=True)
class Case:
    task: str  # "infer" | "train"
    batch: int
    threads: int

    @property
    def key(self) -> str:
        return f"{self.task}:{self.batch}:{self.threads}"

    @property
    def label(self) -> str:
        what = "inference" if self.task == "infer" else "training step"
        return f"{what}, batch {self.batch}, {self.threads} thr"


# ------------------------------------------------------------------------------ arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Validate, then time, LeNet-5 inference and training in lenet_fast and its "
        "peers (NumPy reference, PyTorch, ONNX Runtime)."
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke run: small batches, 3 short runs, no torch.compile (still validates)",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument(
        "--cases",
        default=None,
        help=f"comma-separated task:batch:threads (default {DEFAULT_CASES}; "
        f"with --quick {QUICK_CASES})",
    )
    p.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"implementations to run, comma-separated, from {','.join(PEERS)} "
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
        help="MNIST folder (default $LENET_FAST_DATA); without "
        "MNIST, seeded synthetic digits are used",
    )
    p.add_argument(
        "--onnx-graph",
        choices=("auto", "torch", "helper"),
        default="auto",
        help="where ONNX Runtime's graph comes from: torch.onnx.export, the onnx helper "
        "API, or auto (torch when it can export, else helper)",
    )
    p.add_argument(
        "--peak-gmacs",
        type=float,
        default=PEAK_GMACS_PER_CORE,
        help=f"fp32 FMA peak per core in G multiply-adds/s (default {PEAK_GMACS_PER_CORE:g})",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="time every implementation in this one process (the old way; their thread pools "
        "then live side by side and slow each other down). Default: each implementation is "
        "validated and timed in a child process of its own",
    )
    # internal: the child process of one implementation (see worker_command)
    p.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--worker-out", metavar="PATH", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if bool(args.worker) != bool(args.worker_out):
        p.error("--worker and --worker-out go together")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    spec = args.cases or (QUICK_CASES if args.quick else DEFAULT_CASES)
    try:
        cases = []
        for item in spec.split(","):
            task, b, t = item.strip().split(":")
            if task not in ("infer", "train") or int(b) < 1 or int(t) < 1:
                raise ValueError(item)
            cases.append(Case(task, int(b), int(t)))
    except ValueError:
        p.error(
            f"--cases: expected task:batch:threads items with task infer or train, got {spec!r}"
        )
    if not cases:
        p.error("--cases: no case given")
    args.cases = list(dict.fromkeys(cases))
    peers = [s.strip() for s in args.peers.split(",") if s.strip()]
    unknown = sorted(set(peers) - set(PEERS))
    if unknown:
        p.error(f"--peers: unknown {unknown}; choose from {','.join(PEERS)}")
    args.peers = ["lenet_fast"] + [q for q in PEERS if q in peers and q != "lenet_fast"]
    if args.isa is not None and args.isa not in lenet_fast.available_isas():
        p.error(
            f"--isa {args.isa!r}: not available here (available: {lenet_fast.available_isas()})"
        )
    # (min seconds per timed run, warm-up seconds, patterns per call for batch-1 training)
    args.timing = {
        "min_run_s": 0.002 if args.quick else 0.05,
        "warmup_s": 0.005 if args.quick else 0.2,
    }
    args.block = (
        {"lenet_fast": 32, "torch": 8, "torch.compile": 8, "reference": 2}
        if args.quick
        else {"lenet_fast": 512, "torch": 64, "torch.compile": 64, "reference": 8}
    )
    return args


# ------------------------------------------------------------------------------ data


def load_inputs(args: argparse.Namespace, n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """n preprocessed float32 (n,1,32,32) patterns and their labels, and where they came from:
    the first n MNIST training digits (``--data``, else ``$LENET_FAST_DATA`` or the cache),
    or, when MNIST is not found and ``--data`` was not given, seeded synthetic digits."""
    from lenet_fast.data import load_mnist, preprocess

    try:
        images, labels, _, _ = load_mnist(args.data)
        idx = np.arange(n) % images.shape[0]
        return preprocess(images[idx]), labels[idx].astype(np.intp), "MNIST training digits"
    except Exception as e:  # noqa: BLE001 - whatever keeps MNIST away, synthetic digits will do
        if args.data:
            print(f"error: --data {args.data}: cannot read MNIST there: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        rng = np.random.default_rng(1998)
        # strokes of ink on a blank page: ~20% of the pixels inked, at random intensities
        ink = rng.random((n, 28, 28)) < 0.2
        digits = (ink * rng.integers(64, 256, size=(n, 28, 28))).astype(np.uint8)
        return (
            preprocess(digits),
            rng.integers(0, 10, size=n).astype(np.intp),
            f"synthetic digits (MNIST not found: {type(e).__name__})",
        )


def sdlm_steps(model: LeNet5, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """SDLM step sizes eta / (mu + h_kk) of pass 1, from the Hessian estimate on x."""
    h = model.hessian_diagonal(x, labels)
    return {k: (SDLM_ETA / (SDLM_MU + v)).astype(np.float32) for k, v in h.items()}


# ------------------------------------------------------------------------------ threads


class BlasThreads:
    """Sets the thread count of NumPy's BLAS at run time (threadpoolctl if present, else
    OpenBLAS's own ``*_set_num_threads`` found among the loaded libraries)."""

    def __init__(self) -> None:
        self.how = "not controlled (library default)"
        self._set: Callable[[int], None] | None = None
        try:
            from threadpoolctl import threadpool_limits  # type: ignore[import-not-found]

            self._set = lambda n: threadpool_limits(n, user_api="blas")
            self.how = "threadpoolctl"
            return
        except ImportError:
            pass
        try:
            with open("/proc/self/maps", encoding="utf-8") as f:
                libs = sorted(
                    {
                        line.split()[-1]
                        for line in f
                        if "openblas" in line.lower() and line.split()[-1].startswith("/")
                    }
                )
        except OSError:
            libs = []
        for path in libs:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for sym in (
                "scipy_openblas_set_num_threads64_",
                "scipy_openblas_set_num_threads",
                "openblas_set_num_threads64_",
                "openblas_set_num_threads",
            ):
                if hasattr(lib, sym):
                    fn = getattr(lib, sym)
                    fn.argtypes = [ctypes.c_int]
                    self._set = lambda n, fn=fn: fn(n)
                    self.how = f"{sym} ({Path(path).name})"
                    return

    def set(self, n: int) -> None:
        if self._set is not None:
            self._set(n)


# ------------------------------------------------------------------------------ timing


# ------------------------------------------------------------------------------ float64 truth


class Truth:
    """The float64 NumPy reference (``lenet_fast.reference`` through ``LeNet5``) of a model:
    its outputs and its parameter updates, from the same float32 starting weights."""

    def __init__(self, model: LeNet5) -> None:
        m = model.copy()
        m.backend = "reference"
        self.model = m.astype(np.float64)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.model.forward(x.astype(np.float64))

    def gradients(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.gradients(x.astype(np.float64), labels)[1]

    def sgd_delta(self, x: np.ndarray, labels: np.ndarray, lr: float) -> dict[str, np.ndarray]:
        return {
            k: -np.float32(lr).astype(np.float64) * v for k, v in self.gradients(x, labels).items()
        }

    def sdlm_delta(
        self, x: np.ndarray, labels: np.ndarray, steps: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        m = self.model.copy()
        start = {k: v.copy() for k, v in m.params.items()}
        for i in range(x.shape[0]):
            _, g, _ = m.gradients(x[i : i + 1].astype(np.float64), labels[i : i + 1])
            for k in m.params:
                m.params[k] -= steps[k].astype(np.float64) * g[k]
        return {k: m.params[k] - start[k] for k in start}


def check_forward(what: str, got: Any, want: np.ndarray) -> float:
    """Raise ValidationError unless got (N,10) matches want; return the worst err / tol."""
    g = np.asarray(got)
    if g.shape != want.shape:
        raise ValidationError(f"{what}: output shape {g.shape}, reference {want.shape}")
    tol = FORWARD_TOL * max(1.0, float(np.abs(want).max(initial=0.0)))
    err = np.abs(g.astype(np.float64) - want)
    if not np.all(np.isfinite(g)) or not err.max(initial=0.0) <= tol:
        j = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
        raise ValidationError(
            f"{what}: disagrees with the float64 reference at {tuple(map(int, j))}: "
            f"got {float(g[j])!r}, want {float(want[j])!r} (tolerance {tol:.3g})"
        )
    return float(err.max(initial=0.0) / tol)


def check_gradients(what: str, got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> float:
    """Raise ValidationError unless every gradient matches the reference's within GRAD_TOL of
    its array's largest |entry|; return the worst err / tol."""
    if set(got) != set(want):
        raise ValidationError(f"{what}: gradients of {sorted(got)}, reference {sorted(want)}")
    worst = 0.0
    for k, w in want.items():
        g = np.asarray(got[k], dtype=np.float64)
        if g.shape != w.shape:
            raise ValidationError(
                f"{what}: gradient of {k} has shape {g.shape}, reference {w.shape}"
            )
        tol = GRAD_TOL * max(float(np.abs(w).max(initial=0.0)), 1e-30)
        err = float(np.abs(g - w).max(initial=0.0)) if np.all(np.isfinite(g)) else math.inf
        if not err <= tol:
            raise ValidationError(
                f"{what}: the gradient of {k} disagrees with the float64 "
                f"reference: max |err| {err:.3g} > tolerance {tol:.3g}"
            )
        worst = max(worst, err / tol)
    return worst


def check_update(
    what: str,
    start: dict[str, np.ndarray],
    after: dict[str, np.ndarray],
    want: dict[str, np.ndarray],
    steps: int,
) -> float:
    """Raise ValidationError unless each parameter's change (after - start, in float64)
    matches the reference's change ``want``; return the worst err / tol.

    Tolerance per array: UPDATE_TOL * max|want| plus the float32 rounding of storing the
    parameters after each of ``steps`` updates (half an ulp of the largest |parameter|)."""
    if set(after) != set(want):
        raise ValidationError(f"{what}: parameters {sorted(after)}, reference {sorted(want)}")
    worst = 0.0
    for k, w in want.items():
        d = np.asarray(after[k], dtype=np.float64) - start[k].astype(np.float64)
        if d.shape != w.shape:
            raise ValidationError(f"{what}: {k} has shape {d.shape}, reference {w.shape}")
        big = float(np.abs(start[k]).max(initial=0.0)) + float(np.abs(w).max(initial=0.0))
        tol = UPDATE_TOL * float(np.abs(w).max(initial=0.0)) + steps * 0.5 * float(
            np.spacing(np.float32(big))
        )
        err = float(np.abs(d - w).max(initial=0.0)) if np.all(np.isfinite(d)) else math.inf
        if not err <= tol:
            raise ValidationError(
                f"{what}: the update of {k} disagrees with the float64 reference: "
                f"max |err| {err:.3g} > tolerance {tol:.3g} (max |update| "
                f"{float(np.abs(w).max()):.3g})"
            )
        worst = max(worst, err / tol if tol > 0 else 0.0)
    return worst


# ------------------------------------------------------------------------------ implementations


class Impl:
    """One implementation of LeNet-5. ``infer(x)`` gives a callable returning the (N,10)
    penalties; ``trainer(batch)`` an object with ``load(params)``, ``data(x, labels)``,
    ``run()`` (one timed call: one step at batch b > 1; one per-pattern SDLM step for each
    pattern of the block at batch 1), ``params()`` (float32 arrays, lenet_fast names) and
    ``gradients(x, labels)`` (of the batch-mean loss, by the code ``run`` uses)."""

    key = "?"
    version = ""
    note = ""

    def supports(self, case: Case) -> str | None:
        """None if the case runs, else why not ("-" in the table)."""
        return None

    def set_threads(self, n: int) -> None:
        pass

    def infer(self, x: np.ndarray) -> Callable[[], Any]:
        raise NotImplementedError

    def trainer(self, batch: int) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LenetFastImpl(Impl):
    key = "lenet_fast"

    def __init__(self, model: LeNet5, steps: dict[str, np.ndarray]) -> None:
        self.model, self.steps = model, steps
        self.version = lenet_fast.__version__
        self.note = (
            "forward: model.forward(x); training at batch 1: lenet_fast.fused.sdlm_pass "
            "over a block of patterns; at batch b: model.gradients + params -= lr*g"
        )

    def set_threads(self, n: int) -> None:
        lenet_fast.set_num_threads(n)

    def infer(self, x: np.ndarray) -> Callable[[], Any]:
        m = self.model
        return lambda: m.forward(x)

    def trainer(self, batch: int) -> Any:
        return _NumpyTrainer(self.model.copy(), self.steps, batch, fused=True)


class ReferenceImpl(LenetFastImpl):
    key = "reference"

    def __init__(self, model: LeNet5, steps: dict[str, np.ndarray], blas: BlasThreads) -> None:
        m = model.copy()
        m.backend = "reference"
        super().__init__(m, steps)
        self.blas = blas
        self.version = f"numpy {np.__version__}"
        self.note = (
            "LeNet5(backend='reference'): lenet_fast.reference, NumPy, float64 inside; "
            f"BLAS threads: {blas.how}"
        )

    def set_threads(self, n: int) -> None:
        self.blas.set(n)

    def trainer(self, batch: int) -> Any:
        return _NumpyTrainer(self.model.copy(), self.steps, batch, fused=False)


class _NumpyTrainer:
    """lenet_fast (fused SDLM pass at batch 1) or the reference (Python loop at batch 1)."""

    def __init__(
        self, model: LeNet5, steps: dict[str, np.ndarray], batch: int, fused: bool
    ) -> None:
        self.model, self.steps, self.batch, self.fused = model, steps, batch, fused

    def load(self, params: dict[str, np.ndarray]) -> None:
        for k, v in params.items():
            np.copyto(self.model.params[k], v)

    def params(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.model.params.items()}

    def gradients(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        return self.model.gradients(x, labels)[1]

    def data(self, x: np.ndarray, labels: np.ndarray) -> int:
        m, steps, p = self.model, self.steps, self.model.params
        if self.batch == 1 and self.fused:
            from lenet_fast.fused import sdlm_pass

            order = np.arange(x.shape[0])
            self.run = lambda: sdlm_pass(m, x, labels, order, steps)
        elif self.batch == 1:
            patterns = [(x[i : i + 1], labels[i : i + 1]) for i in range(x.shape[0])]

            def run() -> None:
                for xi, li in patterns:
                    _, g, _ = m.gradients(xi, li)
                    for k in p:
                        p[k] -= steps[k] * g[k]

            self.run = run
        else:
            rate = np.float32(SGD_LR)

            def run() -> None:
                _, g, _ = m.gradients(x, labels)
                for k in p:
                    p[k] -= rate * g[k]

            self.run = run
        return x.shape[0]


def c3_pairs() -> np.ndarray:
    """(k, c) of each packed C3 kernel, in lenet_fast's order (output map k, then input map c)."""
    return np.argwhere(np.asarray(tables.C3_TABLE).T)


class TorchImpl(Impl):
    """The paper's LeNet-5 in PyTorch, eager (or compiled with ``compile=True``)."""

    def __init__(self, model: LeNet5, steps: dict[str, np.ndarray], compile: bool = False) -> None:
        import torch  # raises ImportError: "not installed"

        self.torch = torch
        self.model, self.steps, self.compile = model, steps, compile
        self.key = "torch.compile" if compile else "torch"
        self.version = (
            f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()} kernels)"
        )
        self.net = build_torch_net(model)
        self._infer_fn: Any = None
        self.note = (
            "torch.compile(dynamic=False) of the eager network (inference, and the "
            "loss for training; backward through AOTAutograd; optimizer eager)"
            if compile
            else "nn.Conv2d C1/C5, dense Conv2d C3 with Table I mask, "
            f"avg_pool2d{' * 4' if model.options['subsample'] == 'sum' else ''} x coef + bias, "
            "Linear F6, RBF as sum((x-c)^2); torch.inference_mode; SGD(foreach) / SDLM via "
            "_foreach_addcmul_"
        )
        if compile:
            import torch._dynamo

            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 16)

    def set_threads(self, n: int) -> None:
        self.torch.set_num_threads(n)

    def infer(self, x: np.ndarray) -> Callable[[], Any]:
        torch = self.torch
        xt = torch.from_numpy(x)
        if self.compile:
            if self._infer_fn is None:
                self._infer_fn = torch.compile(self.net, dynamic=False)
            fn = self._infer_fn

            def run() -> Any:
                with torch.no_grad():
                    return fn(xt)
        else:
            net = self.net

            def run() -> Any:
                with torch.inference_mode():
                    return net(xt)

        return lambda: run().numpy()

    def trainer(self, batch: int) -> Any:
        return _TorchTrainer(self, batch)


def build_torch_net(model: LeNet5) -> Any:
    """A torch.nn.Module computing ``model.forward`` with ``model``'s parameters."""
    import torch
    import torch.nn.functional as F

    opts = model.options
    sub_scale = 4.0 if opts["subsample"] == "sum" else 1.0  # avg_pool2d * 4 = the 2x2 sum
    mask = np.zeros((16, 6, 5, 5), np.float32)
    kc = c3_pairs()
    mask[kc[:, 0], kc[:, 1]] = 1.0

    class LeNet5Torch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 6, 5)
            self.s2_coef = torch.nn.Parameter(torch.zeros(6))
            self.s2_bias = torch.nn.Parameter(torch.zeros(6))
            self.c3 = torch.nn.Conv2d(6, 16, 5)
            self.register_buffer("c3_mask", torch.from_numpy(mask))
            self.s4_coef = torch.nn.Parameter(torch.zeros(16))
            self.s4_bias = torch.nn.Parameter(torch.zeros(16))
            self.c5 = torch.nn.Conv2d(16, 120, 5)
            self.f6 = torch.nn.Linear(120, 84)
            centres = torch.from_numpy(model._centres().astype(np.float32))
            if opts["rbf"] == "trainable":
                self.rbf_c = torch.nn.Parameter(centres.clone())
            else:
                self.register_buffer("rbf_c", centres.clone())

        @staticmethod
        def f(a: Any) -> Any:  # the squashing function 1.7159 tanh(2a/3)
            return 1.7159 * torch.tanh(a * (2.0 / 3.0))

        def subsample(self, a: Any, coef: Any, bias: Any) -> Any:
            s = F.avg_pool2d(a, 2) * sub_scale
            return s * coef.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)

        def forward(self, x: Any) -> Any:
            f = self.f
            a = f(self.c1(x))
            a = f(self.subsample(a, self.s2_coef, self.s2_bias))
            # the mask keeps the 36 unconnected kernels at zero under training; the stored
            # weight is already masked, so inference skips the multiply
            w3 = self.c3.weight * self.c3_mask if torch.is_grad_enabled() else self.c3.weight
            a = f(F.conv2d(a, w3, self.c3.bias))
            a = f(self.subsample(a, self.s4_coef, self.s4_bias))
            a = f(self.c5(a)).flatten(1)
            a = f(self.f6(a))
            return ((a.unsqueeze(1) - self.rbf_c.unsqueeze(0)) ** 2).sum(-1)

    net = LeNet5Torch()
    load_torch_params(net, model.params)
    return net


def torch_named_params(net: Any) -> dict[str, Any]:
    """lenet_fast parameter name -> the torch tensor holding it (C3: the dense (16,6,5,5))."""
    import torch

    d = {
        "c1.w": net.c1.weight,
        "c1.b": net.c1.bias,
        "s2.coef": net.s2_coef,
        "s2.bias": net.s2_bias,
        "c3.w": net.c3.weight,
        "c3.b": net.c3.bias,
        "s4.coef": net.s4_coef,
        "s4.bias": net.s4_bias,
        "c5.w": net.c5.weight,
        "c5.b": net.c5.bias,
        "f6.w": net.f6.weight,
        "f6.b": net.f6.bias,
    }
    if isinstance(net.rbf_c, torch.nn.Parameter):
        d[RBF_PARAM] = net.rbf_c
    return d


def dense_c3(packed: np.ndarray) -> np.ndarray:
    w = np.zeros((16, 6, 5, 5), np.float32)
    kc = c3_pairs()
    w[kc[:, 0], kc[:, 1]] = packed
    return w


def load_torch_params(net: Any, params: dict[str, np.ndarray]) -> None:
    import torch

    with torch.no_grad():
        for k, t in torch_named_params(net).items():
            v = dense_c3(params[k]) if k == "c3.w" else params[k]
            t.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).reshape(t.shape))


def torch_params_numpy(net: Any) -> dict[str, np.ndarray]:
    out = {}
    for k, t in torch_named_params(net).items():
        a = t.detach().numpy().copy()
        if k == "c3.w":
            kc = c3_pairs()
            a = np.ascontiguousarray(a[kc[:, 0], kc[:, 1]])
        out[k] = a.reshape(PARAM_SHAPES.get(k, a.shape))
    return out


def torch_loss_fn(model: LeNet5) -> Callable[[Any, Any], Any]:
    """The model's loss (LeNet5.loss_gradient) in torch: mean over the batch, times loss_scale."""
    import torch

    opts = model.options
    scale = float(opts["loss_scale"])
    neg_j = torch.tensor(-float(opts["map_j"]))

    def loss(y: Any, labels: Any) -> Any:
        yc = y.gather(1, labels.view(-1, 1)).view(-1)
        if opts["loss"] == "mse":  # Eq. 8
            return scale * yc.mean()
        # Eq. 9: y_c + log(e^-j + sum_i e^-y_i)
        return scale * (yc + torch.logaddexp(torch.logsumexp(-y, dim=1), neg_j)).mean()

    return loss


class _TorchTrainer:
    """One SGD step on a batch (torch.optim.SGD, foreach) or, at batch 1, the per-pattern
    SDLM update p -= eps * grad over a block of patterns, in PyTorch."""

    def __init__(self, impl: TorchImpl, batch: int) -> None:
        torch = impl.torch
        self.torch, self.impl, self.batch = torch, impl, batch
        self.net = build_torch_net(impl.model)
        self.tparams = torch_named_params(self.net)
        self.plist = list(self.tparams.values())
        loss_of = torch_loss_fn(impl.model)
        net = self.net

        def loss_fn(x: Any, labels: Any) -> Any:
            return loss_of(net(x), labels)

        self.loss_fn = torch.compile(loss_fn, dynamic=False) if impl.compile else loss_fn
        self.opt = torch.optim.SGD(self.plist, lr=SGD_LR, foreach=True)
        steps = {k: dense_c3(v) if k == "c3.w" else v for k, v in impl.steps.items()}
        self.eps = [
            torch.from_numpy(np.ascontiguousarray(steps[k], np.float32)).reshape(t.shape)
            for k, t in self.tparams.items()
        ]

    def load(self, params: dict[str, np.ndarray]) -> None:
        load_torch_params(self.net, params)

    def params(self) -> dict[str, np.ndarray]:
        return torch_params_numpy(self.net)

    def gradients(self, x: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
        for q in self.plist:
            q.grad = None
        self.loss_fn(
            self.torch.from_numpy(x), self.torch.from_numpy(labels.astype(np.int64))
        ).backward()
        grads = {k: t.grad.numpy().copy() for k, t in self.tparams.items()}
        for q in self.plist:
            q.grad = None
        kc = c3_pairs()
        grads["c3.w"] = np.ascontiguousarray(grads["c3.w"][kc[:, 0], kc[:, 1]])
        return {k: v.reshape(PARAM_SHAPES.get(k, v.shape)) for k, v in grads.items()}

    def data(self, x: np.ndarray, labels: np.ndarray) -> int:
        torch, loss_fn, plist, eps, opt = self.torch, self.loss_fn, self.plist, self.eps, self.opt
        xt, lt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
        if self.batch == 1:
            patterns = [(xt[i : i + 1], lt[i : i + 1]) for i in range(x.shape[0])]
            foreach = hasattr(torch, "_foreach_addcmul_")

            def run() -> None:
                for xi, li in patterns:
                    for q in plist:
                        q.grad = None
                    loss_fn(xi, li).backward()
                    with torch.no_grad():
                        grads = [q.grad for q in plist]
                        if foreach:
                            torch._foreach_addcmul_(plist, grads, eps, value=-1.0)
                        else:
                            for q, g, e in zip(plist, grads, eps):
                                q.addcmul_(g, e, value=-1.0)
        else:

            def run() -> None:
                opt.zero_grad(set_to_none=True)
                loss_fn(xt, lt).backward()
                opt.step()

        self.run = run
        return x.shape[0]


class OrtImpl(Impl):
    """ONNX Runtime (CPU execution provider) on the network exported from PyTorch
    (torch.onnx.export), or built with the onnx helper API when torch cannot export it."""

    key = "onnxruntime"

    def __init__(self, model: LeNet5, graph: str = "auto") -> None:
        import onnx  # noqa: F401 - raises ImportError: "not installed"
        import onnxruntime as ort

        self.ort = ort
        self.version = f"onnxruntime {ort.__version__}"
        self.path = Path(tempfile.mkdtemp(prefix="lenet_fast_bench_")) / "lenet5.onnx"
        why_not_torch = ""
        if graph in ("auto", "torch"):
            try:
                export_torch_onnx(model, self.path)
                self.source = "torch.onnx.export (TorchScript exporter, dynamo=False)"
            except Exception as e:
                if graph == "torch":
                    raise
                why_not_torch = (
                    f" (torch.onnx.export unavailable: {type(e).__name__}: "
                    f"{str(e).splitlines()[0][:120] if str(e) else ''})"
                )
        if graph == "helper" or why_not_torch:
            build_onnx_graph(model, self.path)
            self.source = "the onnx helper API" + why_not_torch
        self.sessions: dict[int, Any] = {}
        self.threads = 1
        self.note = f"InferenceSession, CPUExecutionProvider, graph from {self.source}"

    def supports(self, case: Case) -> str | None:
        return "inference only" if case.task == "train" else None

    def set_threads(self, n: int) -> None:
        self.threads = n

    def session(self, n: int) -> Any:
        if n not in self.sessions:
            so = self.ort.SessionOptions()
            so.intra_op_num_threads = n
            so.inter_op_num_threads = 1
            so.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sessions[n] = self.ort.InferenceSession(
                str(self.path), so, providers=["CPUExecutionProvider"]
            )
        return self.sessions[n]

    def infer(self, x: np.ndarray) -> Callable[[], Any]:
        s = self.session(self.threads)
        name = s.get_inputs()[0].name
        feed = {name: x}
        return lambda: s.run(None, feed)[0]

    def close(self) -> None:
        self.sessions.clear()
        try:
            self.path.unlink()
            self.path.parent.rmdir()
        except OSError:
            pass


def export_torch_onnx(model: LeNet5, path: Path) -> None:
    import torch

    net = build_torch_net(model).eval()
    x = torch.zeros(2, 1, 32, 32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
            opset_version=17,
        )


def build_onnx_graph(model: LeNet5, path: Path) -> None:
    """The same network as build_torch_net, written with onnx.helper (opset 17)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    p, opts = model.params, model.options
    sub_scale = 4.0 if opts["subsample"] == "sum" else 1.0
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, a: Any) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name))
        return name

    def squash(a: str, out: str) -> str:
        nodes.append(helper.make_node("Mul", [a, const(out + "_s", 2.0 / 3.0)], [out + "_m"]))
        nodes.append(helper.make_node("Tanh", [out + "_m"], [out + "_t"]))
        nodes.append(helper.make_node("Mul", [out + "_t", const(out + "_a", 1.7159)], [out]))
        return out

    def conv(a: str, w: np.ndarray, b: np.ndarray, out: str) -> str:
        nodes.append(
            helper.make_node("Conv", [a, const(out + "_w", w), const(out + "_b", b)], [out + "_c"])
        )
        return squash(out + "_c", out)

    def subsample(a: str, coef: np.ndarray, bias: np.ndarray, out: str) -> str:
        c = len(coef)
        nodes.append(
            helper.make_node("AveragePool", [a], [out + "_p"], kernel_shape=[2, 2], strides=[2, 2])
        )
        nodes.append(
            helper.make_node(
                "Mul",
                [out + "_p", const(out + "_k", (sub_scale * coef).reshape(1, c, 1, 1))],
                [out + "_q"],
            )
        )
        nodes.append(
            helper.make_node(
                "Add", [out + "_q", const(out + "_d", bias.reshape(1, c, 1, 1))], [out + "_r"]
            )
        )
        return squash(out + "_r", out)

    a = conv("x", p["c1.w"], p["c1.b"], "c1")
    a = subsample(a, p["s2.coef"], p["s2.bias"], "s2")
    a = conv(a, dense_c3(p["c3.w"]), p["c3.b"], "c3")
    a = subsample(a, p["s4.coef"], p["s4.bias"], "s4")
    a = conv(a, p["c5.w"], p["c5.b"], "c5")
    nodes.append(helper.make_node("Flatten", [a], ["h5"], axis=1))
    nodes.append(
        helper.make_node(
            "Gemm", ["h5", const("f6_w", p["f6.w"]), const("f6_b", p["f6.b"])], ["f6_l"], transB=1
        )
    )
    a = squash("f6_l", "f6")
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "ax2"))
    nodes.append(helper.make_node("Unsqueeze", [a, "ax1"], ["h6u"]))  # (N,1,84)
    nodes.append(helper.make_node("Sub", ["h6u", const("rbf_c", model._centres()[None])], ["rd"]))
    nodes.append(helper.make_node("Mul", ["rd", "rd"], ["rd2"]))
    nodes.append(helper.make_node("ReduceSum", ["rd2", "ax2"], ["y"], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "lenet5",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


# ------------------------------------------------------------------------------ facts


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:  # noqa: BLE001
        return None


def machine_facts(
    args: argparse.Namespace, blas: BlasThreads, data_source: str, model: LeNet5
) -> dict:
    info = lenet_fast.info()
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    cpu_flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    cpu_flags = " ".join(x for x in ("avx2", "fma", "avx512f") if x in have)
                    break
    except OSError:
        pass
    return {
        "cpu": info.get("cpu"),
        "cpu_flags": cpu_flags,
        "machine": info.get("machine"),
        "cores": os.cpu_count(),
        "isa": info.get("isa"),
        "available_isas": info.get("available_isas"),
        "openmp": info.get("openmp"),
        "compiler": info.get("compiler"),
        "lenet_fast_version": info.get("version"),
        "git_commit": _git("rev-parse", "--short", "HEAD") or "unknown",
        "git_tree_modified": bool(dirty) if dirty is not None else None,
        "python_version": platform.python_version(),
        "numpy_version": np.__version__,
        "torch_version": _version("torch"),
        "onnxruntime_version": _version("onnxruntime"),
        "onnx_version": _version("onnx"),
        "lenet_fast_info": info,
        "load_average_1min_at_start": _load(),
        "blas_threads": blas.how,
        "thread_environment": thread_env(),
        "data": data_source,
        "model": args.model or f"LeNet5(seed={args.seed}) at initialisation",
        "model_options": dict(model.options),
        "peak_gmacs_per_core": args.peak_gmacs,
        "date": _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------ report


def _rate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _ms(s: float) -> str:
    ms = s * 1e3
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def summary_table(cases: list[Case], impls: list[str], rows: dict, status: dict) -> list[str]:
    head = (
        "| implementation | "
        + " | ".join(
            f"{'infer' if c.task == 'infer' else 'train'} b={c.batch}, {c.threads} thr"
            for c in cases
        )
        + " |"
    )
    out = [head, "|---|" + "---:|" * len(cases)]
    for key in impls:
        cells = []
        for c in cases:
            r = rows.get((key, c.key))
            cells.append(
                _rate(r["images_per_s"])
                if r and r.get("images_per_s")
                else (r or {}).get("why", status.get(key, "-"))
            )
        out.append(f"| {LABELS[key]} | " + " | ".join(cells) + " |")
    if any((c.task, c.batch, c.threads) in TARGETS for c in cases):
        out.append(
            "| *target for lenet_fast (issue 4)* | "
            + " | ".join(_rate(TARGETS.get((c.task, c.batch, c.threads))) for c in cases)
            + " |"
        )
    return out


def detail_table(cases: list[Case], impls: list[str], rows: dict) -> list[str]:
    out = [
        (
            "| case | implementation | median images/s | min-max images/s | median ms/step "
            "| % of FMA peak | lenet_fast / this |"
        ),
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        for key in impls:
            r = rows.get((key, c.key))
            if not r or r.get("images_per_s") is None:
                continue
            ratio = "-" if key == "lenet_fast" or r["ratio"] is None else f"{r['ratio']:.2f}x"
            out.append(
                f"| {c.label} | {LABELS[key]} | {_rate(r['images_per_s'])} | "
                f"{_rate(r['images_per_s_min'])}-{_rate(r['images_per_s_max'])} | "
                f"{_ms(r['s_per_step'])} | {100 * r['peak_fraction']:.1f}% | {ratio} |"
            )
    return out


# ------------------------------------------------------------------------------ main


def run(args: argparse.Namespace) -> int:
    """The suite: each implementation validated and timed in a worker process of its own,
    one after the other (``--in-process``: all in this process); then the report."""
    if args.worker:
        return run_worker(args)
    t_start = time.perf_counter()
    if args.isa:
        lenet_fast.set_isa(args.isa)
    blas = BlasThreads()
    model, x_all, lab_all, data_source = build_inputs(args)
    facts = machine_facts(args, blas, data_source, model)

    parts: list[dict] = []
    if args.in_process:
        parts.append(measure_impls(args, args.peers, model, x_all, lab_all, blas))
    else:
        # lenet_fast first: if it (or the reference) disagrees, nothing else need run
        with tempfile.TemporaryDirectory(prefix="lenet_fast_suite_") as tmp:
            for key in args.peers:
                if skip_reason(args, key):
                    part = new_part()
                    part["status"][key] = skip_reason(args, key)
                else:
                    out = Path(tmp) / f"{key}.json"
                    part = run_worker_process(worker_command(args, key, out), key, out)
                if part["crashed"] and key in ("lenet_fast", "reference"):
                    part["fatal"] = (
                        f"error: {LABELS[key]}'s process failed, nothing is reported: "
                        f"{part['crashed']}"
                    )
                parts.append(part)
                if part["fatal"]:
                    break
    for part in parts:
        if part["fatal"]:
            print(f"\n{part['fatal']}", file=sys.stderr)
            return 1
    report(args, facts, merge_parts(parts, facts), time.perf_counter() - t_start)
    return 0


# The environment variables that decide the thread pools; a worker records what it saw.
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "GOMP_SPINCOUNT",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "LENET_FAST_ISA",
)


def thread_env() -> dict[str, str | None]:
    return {v: os.environ.get(v) for v in THREAD_ENV}


def build_inputs(args: argparse.Namespace) -> tuple[LeNet5, np.ndarray, np.ndarray, str]:
    """The model and the patterns, the same in every process (seeded, or read from files)."""
    model = LeNet5.load(args.model) if args.model else LeNet5(seed=args.seed)
    n_data = max(
        [c.batch for c in args.cases] + list(args.block.values()) + [VALIDATE_PATTERNS, 64]
    )
    x_all, lab_all, data_source = load_inputs(args, n_data)
    return model, x_all, lab_all, data_source


def skip_reason(args: argparse.Namespace, key: str) -> str | None:
    return "skipped (--quick)" if key == "torch.compile" and args.quick else None


def new_part() -> dict:
    """What one process contributes to the results (JSON-ready: rows is a list). ``fatal``:
    why the run stops with exit status 1, nothing reported (lenet_fast or the reference
    disagreed with the float64 reference, or its process failed); ``crashed``: why a worker
    process gave no results."""
    return {
        "validation": [],
        "rows": [],
        "status": {},
        "notes": [],
        "impls": {},
        "fatal": None,
        "crashed": None,
        "process": None,
    }


def worker_command(args: argparse.Namespace, key: str, out: Path) -> list[str]:
    """This script, with this run's arguments (so --isa, --model, --data, --quick, --repeats
    ... are the same), measuring only ``key`` and writing its part to ``out``. The child
    inherits this process's environment (OMP_NUM_THREADS and the rest) and directory."""
    script = str(Path(__file__).resolve())
    return [sys.executable, script, *args.argv, "--worker", key, "--worker-out", str(out)]


def run_worker_process(cmd: list[str], key: str, out: Path) -> dict:
    """Run one worker to its end and return its part. A worker that exits nonzero, dies of a
    signal or writes no results gives a part with status "failed" and ``crashed`` = why
    (with the last line of its stderr). Its output goes to our stderr: stdout is the report's."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace", check=False
    )
    sys.stderr.write(proc.stdout + proc.stderr)
    sys.stderr.flush()
    ran = {"exit_status": proc.returncode, "run_time_s": round(time.perf_counter() - t0, 3)}
    why = ""
    if proc.returncode == 0:
        try:
            part = json.loads(out.read_text(encoding="utf-8"))
            part["process"] = {**(part.get("process") or {}), **ran}
            return part
        except (OSError, ValueError) as e:
            why = f"its process exited without results ({type(e).__name__})"
    elif proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        why = f"its process was killed by {name}"
    else:
        why = f"its process exited with status {proc.returncode}"
    last = [s.strip() for s in proc.stderr.splitlines() if s.strip()]
    if last:
        why += f": {last[-1][:300]}"
    part = new_part()
    part["status"][key] = "failed"
    part["notes"].append(f"{LABELS[key]}: failed: {why}; not timed")
    part["crashed"] = why
    part["process"] = ran
    return part


def run_worker(args: argparse.Namespace) -> int:
    """``--worker KEY``: validate and time KEY alone in this process; write its part to
    ``--worker-out`` (exit 0 whenever the part is written, a disagreement included)."""
    env = thread_env()
    if args.isa:
        lenet_fast.set_isa(args.isa)
    if args.worker != "lenet_fast":
        # a peer's process uses lenet_fast only to compute the SDLM steps: on one thread, so
        # that no OpenMP team of lenet_fast's exists (and spins) while the peer is timed
        lenet_fast.set_num_threads(1)
    blas = BlasThreads()
    model, x_all, lab_all, _ = build_inputs(args)
    part = measure_impls(args, [args.worker], model, x_all, lab_all, blas)
    part["process"] = {
        "pid": os.getpid(),
        "thread_environment": env,
        "isa": lenet_fast.get_isa(),
        "peer_libraries_loaded": [m for m in ("torch", "onnxruntime") if m in sys.modules],
        "os_threads_at_end": _os_threads(),
    }
    Path(args.worker_out).write_text(json.dumps(part, default=str) + "\n", encoding="utf-8")
    return 0


def _os_threads() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def measure_impls(
    args: argparse.Namespace,
    keys: list[str],
    model: LeNet5,
    x_all: np.ndarray,
    lab_all: np.ndarray,
    blas: BlasThreads,
) -> dict:
    """Validate the implementations ``keys`` (lenet_fast first, if among them), all of them
    before any is timed, then time them one at a time, in this process. Returns their part
    (``new_part``); a lenet_fast or reference disagreement stops it with ``fatal`` set."""
    cases: list[Case] = args.cases
    part = new_part()
    steps = sdlm_steps(model, x_all[:64], lab_all[:64])
    start = {k: v.copy() for k, v in model.params.items()}
    truth = Truth(model)

    # ---- the implementations ("not installed" / "failed: ..." when a peer cannot run)
    impls: dict[str, Impl] = {}
    status: dict[str, str] = part["status"]
    notes: list[str] = part["notes"]
    for key in keys:
        if skip_reason(args, key):
            status[key] = skip_reason(args, key)
            continue
        if key == "lenet_fast":
            impls[key] = LenetFastImpl(model, steps)
            continue
        try:
            if key == "reference":
                impls[key] = ReferenceImpl(model, steps, blas)
            elif key in ("torch", "torch.compile"):
                impls[key] = TorchImpl(model, steps, compile=key == "torch.compile")
            elif key == "onnxruntime":
                impls[key] = OrtImpl(model, args.onnx_graph)
        except ImportError as e:
            status[key] = "not installed"
            notes.append(
                f'{LABELS[key]}: not installed ({e}); `pip install ".[bench]"` installs it'
            )
        except Exception as e:  # noqa: BLE001
            status[key] = "failed"
            notes.append(f"{LABELS[key]}: failed to set up: {type(e).__name__}: {e}")
    for key, impl in impls.items():
        status.setdefault(key, impl.version)
        part["impls"][key] = {"version": impl.version, "note": impl.note}

    def data_for(case: Case, key: str, validate: bool) -> tuple[np.ndarray, np.ndarray]:
        n = (
            case.batch
            if case.task == "infer" or case.batch > 1
            else (VALIDATE_PATTERNS if validate else args.block.get(key, 8))
        )
        return x_all[:n], lab_all[:n]

    # ---- 1. validate everything against the float64 reference
    validation: list[dict] = part["validation"]
    trainers: dict[tuple[str, int], Any] = {}
    truth_cache: dict[tuple, Any] = {}
    broken: dict[tuple[str, str], str] = {}  # (impl, case) -> why it is not timed

    def validate(key: str, impl: Impl, c: Case) -> None:
        impl.set_threads(c.threads)
        x, lab = data_for(c, key, validate=True)
        what = f"{LABELS[key]}, {c.label}"
        if c.task == "infer":
            tk = ("infer", x.shape[0])
            if tk not in truth_cache:
                truth_cache[tk] = truth.forward(x)
            worst = check_forward(what, impl.infer(x)(), truth_cache[tk])
            validation.append(
                {
                    "impl": key,
                    "case": c.key,
                    "kind": "output",
                    "checked": "penalties (N,10)",
                    "worst_err_over_tol": worst,
                }
            )
            return
        tk = ("train", c.batch, x.shape[0])
        if tk not in truth_cache:
            truth_cache[tk] = (
                truth.gradients(x[: c.batch], lab[: c.batch]),
                truth.sdlm_delta(x, lab, steps)
                if c.batch == 1
                else truth.sgd_delta(x, lab, SGD_LR),
            )
        want_g, want_d = truth_cache[tk]
        if (key, c.batch) not in trainers:
            trainers[(key, c.batch)] = impl.trainer(c.batch)
        tr = trainers[(key, c.batch)]
        tr.load(start)
        # (a) the gradients of the batch-mean loss, computed by the code the step runs
        worst = check_gradients(what, tr.gradients(x[: c.batch], lab[: c.batch]), want_g)
        validation.append(
            {
                "impl": key,
                "case": c.key,
                "kind": "gradients",
                "checked": f"gradients of the loss on {c.batch} pattern(s)",
                "worst_err_over_tol": worst,
            }
        )
        # (b) the timed step itself: the parameters' change from the same start
        tr.data(x, lab)
        tr.run()
        worst = check_update(
            what, start, tr.params(), want_d, steps=x.shape[0] if c.batch == 1 else 1
        )
        validation.append(
            {
                "impl": key,
                "case": c.key,
                "kind": "update",
                "checked": (
                    f"parameter change after {x.shape[0]} per-pattern SDLM steps"
                    if c.batch == 1
                    else f"parameter change after one SGD step (lr {SGD_LR:g})"
                ),
                "worst_err_over_tol": worst,
            }
        )

    for key, impl in impls.items():
        for c in cases:
            if impl.supports(c) is not None:
                continue
            try:
                validate(key, impl, c)
            except ValidationError as e:
                if key in ("lenet_fast", "reference"):
                    part["fatal"] = f"VALIDATION FAILED, nothing is reported: {e}"
                    return part
                broken[(key, c.key)] = f"failed validation: {e}"
            except Exception as e:  # a peer that breaks is reported, not fatal
                if key in ("lenet_fast", "reference"):
                    raise
                broken[(key, c.key)] = f"failed: {type(e).__name__}: {_first_line(e)}"
                if os.environ.get("LENET_FAST_BENCH_DEBUG"):
                    traceback.print_exc()
        if key == "lenet_fast" and any(c.task == "train" and c.batch == 1 for c in cases):
            try:
                validation.append(check_fused_vs_loop(model, steps, x_all, lab_all))
            except ValidationError as e:
                part["fatal"] = f"VALIDATION FAILED, nothing is reported: {e}"
                return part

    # ---- 2. time, one implementation at a time (in one process the others' thread pools
    # still exist, and torch's and ONNX Runtime's slow lenet_fast's: hence the workers)
    rows: dict[tuple[str, str], dict] = {}
    for key, impl in impls.items():
        for c in cases:
            why = impl.supports(c)
            if why is not None or (key, c.key) in broken:
                rows[(key, c.key)] = {
                    "impl": key,
                    "case": c.key,
                    "why": "-" if why is not None else "failed",
                    "reason": why or broken[(key, c.key)],
                }
                continue
            try:
                impl.set_threads(c.threads)
                x, lab = data_for(c, key, validate=False)
                if c.task == "infer":
                    fn, images = impl.infer(x), x.shape[0]
                else:
                    tr = trainers[(key, c.batch)]
                    tr.load(start)
                    images = tr.data(x, lab)
                    fn = tr.run
                repeats = min(args.repeats, 3) if key == "reference" else args.repeats
                warm = 0.0 if key == "reference" else args.timing["warmup_s"]
                gc.collect()
                m = measure(fn, repeats, args.timing["min_run_s"], warm)
            except Exception as e:
                if key in ("lenet_fast", "reference"):
                    raise
                broken[(key, c.key)] = f"failed while timed: {type(e).__name__}: {_first_line(e)}"
                rows[(key, c.key)] = {
                    "impl": key,
                    "case": c.key,
                    "why": "failed",
                    "reason": broken[(key, c.key)],
                }
                continue
            ips = images / m["median_s"]
            rows[(key, c.key)] = {
                "impl": key,
                "case": c.key,
                "task": c.task,
                "batch": c.batch,
                "threads": c.threads,
                "images_per_call": images,
                **m,
                "images_per_s": ips,
                "images_per_s_min": images / m["max_s"],
                "images_per_s_max": images / m["min_s"],
                "s_per_step": m["median_s"] * c.batch / images,
                "macs_per_image": MACS[c.task],
                "peak_fraction": ips * MACS[c.task] / (args.peak_gmacs * 1e9 * c.threads),
            }
        impl.set_threads(1)
        impl.close()
    for (key, ck), why in broken.items():
        notes.append(f"{LABELS[key]}, {ck}: {why}; not timed")
    for key, impl in impls.items():
        if all((key, c.key) in broken for c in cases if impl.supports(c) is None):
            status[key] = "failed"
    part["rows"] = list(rows.values())
    return part


def process_mode(args: argparse.Namespace) -> str:
    if args.in_process:
        return "all implementations timed in one process (--in-process)"
    return "each implementation timed in its own process"


def merge_parts(parts: list[dict], facts: dict) -> dict:
    """The parts of the processes as one result, with the ratios lenet_fast / peer, and a
    note if a worker saw another thread environment or ISA than this process."""
    rows = {(r["impl"], r["case"]): r for p in parts for r in p["rows"]}
    for (_, ck), r in rows.items():
        base = rows.get(("lenet_fast", ck), {}).get("images_per_s")
        r["ratio"] = base / r["images_per_s"] if base and r.get("images_per_s") else None
    res = {
        "validation": [v for p in parts for v in p["validation"]],
        "rows": rows,
        "status": {k: v for p in parts for k, v in p["status"].items()},
        "notes": [n for p in parts for n in p["notes"]],
        "impls": {k: v for p in parts for k, v in p["impls"].items()},
        "processes": {k: p["process"] for p in parts for k in p["status"] if p["process"]},
    }
    for key, proc in res["processes"].items():
        env = proc.get("thread_environment")
        if env is not None and env != facts["thread_environment"]:
            res["notes"].append(
                f"{LABELS[key]}'s process saw the thread environment {env}, "
                f"not {facts['thread_environment']}"
            )
        if proc.get("isa") not in (None, facts["isa"]):
            res["notes"].append(f"{LABELS[key]}'s process ran lenet_fast on ISA {proc['isa']}")
    return res


def report(args: argparse.Namespace, facts: dict, res: dict, elapsed: float) -> None:
    """Print the markdown report; with --json, write the JSON too."""
    cases: list[Case] = args.cases
    validation, rows, status = res["validation"], res["rows"], res["status"]
    impls, notes = res["impls"], res["notes"]
    order = [k for k in PEERS if k in args.peers]
    commit = facts["git_commit"] + (
        " (working tree modified)" if facts["git_tree_modified"] else ""
    )
    worst_of = {}
    for v in validation:
        if (
            v["kind"] not in worst_of
            or v["worst_err_over_tol"] > worst_of[v["kind"]]["worst_err_over_tol"]
        ):
            worst_of[v["kind"]] = v
    worst_text = "; ".join(
        f"{what} {worst_of[k]['worst_err_over_tol']:.2g} ({LABELS[worst_of[k]['impl']]}, {worst_of[k]['case']})"
        for k, what in (
            ("output", "outputs"),
            ("gradients", "gradients"),
            ("update", "parameter updates"),
        )
        if k in worst_of
    )
    lines = [
        "# lenet_fast benchmark suite: LeNet-5 inference and training",
        "",
        (
            f"- CPU: {facts['cpu']} ({facts['machine']}, {facts['cores']} logical cores; "
            f"{facts['cpu_flags'] or 'no AVX2'}); FMA peak assumed {args.peak_gmacs:g} G "
            "multiply-adds/s per core"
        ),
        (
            f"- lenet_fast {facts['lenet_fast_version']}, ISA {facts['isa']} (available: "
            f"{', '.join(facts['available_isas'])}), {facts['compiler']}, OpenMP {facts['openmp']}; "
            f"git commit {commit}"
        ),
        f"- Python {facts['python_version']}, numpy {facts['numpy_version']} (BLAS threads: "
        f"{facts['blas_threads']})"
        + "".join(f", {LABELS[k]}: {status.get(k, 'not run')}" for k in order[1:]),
        f"- model: {facts['model']}, options {facts['model_options']}; input: {facts['data']}",
        f"- method: every implementation validated against lenet_fast.reference in float64 first; "
        f"then warm-up and {args.repeats} timed runs (the reference: {min(args.repeats, 3)}) of "
        f">= {args.timing['min_run_s'] * 1e3:g} ms; median, min-max over the runs"
        + f"; {process_mode(args)}"
        + (" [--quick]" if args.quick else ""),
        f"- date: {facts['date']}",
        "",
        f"Validation: {len(validation)} checks passed"
        + (
            " (the fused SDLM pass equals the Python loop bit for bit)"
            if any("bitwise" in v["checked"] for v in validation)
            else ""
        )
        + f"; worst |err| / tolerance: {worst_text}.",
        "",
        "## Median images/s",
        "",
        *summary_table(cases, order, rows, status),
        "",
        "## Details",
        "",
        *detail_table(cases, order, rows),
        "",
        (
            f"Training step: at batch 1 the per-pattern SDLM update (forward, backward, "
            f"p -= eps*grad), at batch b one SGD step (lr {SGD_LR:g}) on the batch-mean loss "
            f"({facts['model_options']['loss']}). % of FMA peak = images/s x {MACS['infer']:,} (inference) "
            f"or {MACS['train']:,} (training) multiply-adds / ({args.peak_gmacs:g}e9 x threads). "
            "'lenet_fast / this' > 1: lenet_fast is faster."
        ),
    ]
    load = facts["load_average_1min_at_start"]
    if load is not None and load > 0.5:
        notes.append(
            f"the machine was busy: load average {load:g} at the start (other processes "
            "running); timings, multi-threaded ones above all, are unreliable"
        )
    lines += [
        "",
        "Implementations:",
        *(
            f"- {LABELS[k]} ({impls[k]['version']}): {impls[k]['note']}"
            for k in order
            if k in impls
        ),
    ]
    if notes:
        lines += ["", "Notes:", *(f"- {n}" for n in notes)]
    lines += ["", f"Total run time {elapsed:.1f} s."]
    print("\n".join(lines))

    if args.json:
        result = {
            "facts": facts,
            "settings": {
                "quick": args.quick,
                "repeats": args.repeats,
                "cases": [c.key for c in cases],
                "peers": args.peers,
                "process_mode": process_mode(args),
                **args.timing,
                "patterns_per_call_batch1": args.block,
                "sgd_lr": SGD_LR,
                "sdlm_eta": SDLM_ETA,
                "sdlm_mu": SDLM_MU,
                "forward_tol": FORWARD_TOL,
                "grad_tol": GRAD_TOL,
                "update_tol": UPDATE_TOL,
                "macs_per_image": MACS,
            },
            "peers": {
                k: {
                    "status": status.get(k, "not run"),
                    "note": impls[k]["note"] if k in impls else None,
                    "process": res["processes"].get(k),
                }
                for k in order
            },
            "notes": notes,
            "validation": validation,
            "results": [rows[(k, c.key)] for c in cases for k in order if (k, c.key) in rows],
            "targets": {f"{t}:{b}:{n}": v for (t, b, n), v in TARGETS.items()},
            "load_average_1min_at_end": _load(),
            "run_time_s": elapsed,
        }
        Path(args.json).write_text(
            json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8"
        )


def check_fused_vs_loop(
    model: LeNet5, steps: dict[str, np.ndarray], x: np.ndarray, labels: np.ndarray
) -> dict:
    """The fused C++ pass against the Python loop of the same kernels (public API) on a few
    patterns: the same parameters (bit for bit in practice; within 1e-6 required)."""
    from lenet_fast.fused import sdlm_pass

    n = VALIDATE_PATTERNS
    fused, loop = model.copy(), model.copy()
    sdlm_pass(fused, x, labels, np.arange(n), steps)
    for i in range(n):
        _, g, _ = loop.gradients(x[i : i + 1], labels[i : i + 1])
        for k in loop.params:
            loop.params[k] -= steps[k] * g[k]
    worst = 0.0
    for k in loop.params:
        a, b = fused.params[k].astype(np.float64), loop.params[k].astype(np.float64)
        scale = max(float(np.abs(b).max()), 1e-30)
        err = float(np.abs(a - b).max())
        if not err <= 1e-6 * scale:
            raise ValidationError(
                f"lenet_fast.fused.sdlm_pass disagrees with the Python loop on "
                f"{n} patterns: {k} max |err| {err:.3g} > 1e-6 x {scale:.3g}"
            )
        worst = max(worst, err / (1e-6 * scale))
    bitwise = all(np.array_equal(fused.params[k], loop.params[k]) for k in loop.params)
    return {
        "impl": "lenet_fast",
        "case": "train:1 fused vs loop",
        "kind": "fused",
        "checked": f"fused sdlm_pass vs Python loop of model.gradients, {n} patterns"
        + (" (bitwise equal)" if bitwise else ""),
        "worst_err_over_tol": worst,
    }


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
