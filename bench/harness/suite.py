"""What bench_suite.py measures: the cases, the inputs, validating every implementation
against the float64 reference, timing it, and the report and JSON of the run."""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from lenet_fast import LeNet5, available_isas, get_isa, load_mnist, preprocess, set_isa
from lenet_fast.layout import MACS_PER_IMAGE
from lenet_fast.train import paper_eta, sdlm_mu, sdlm_steps

from . import impls as registry
from .facts import header_lines, load_average
from .impls import LABELS, Impl, Setup, Trainer
from .output import SCHEMA
from .rounds import FASTEST_OF, PAUSE_S, REFERENCE_ROUNDS
from .tables import case_label, suite_detail, suite_summary
from .threads import BlasThreads
from .timing import run_for, warm_up
from .validation import (
    FORWARD_TOL,
    GRAD_TOL,
    UPDATE_TOL,
    Truth,
    ValidationError,
    check_forward,
    check_fused_vs_loop,
    check_gradients,
    check_update,
)
from .worker import new_part

#: The FMA peak's measurement: tries x seconds each (--quick: QUICK_PEAK_TRIES)
PEAK_TRIES = (5, 0.1)
QUICK_PEAK_TRIES = (3, 0.02)
DEFAULT_CASES = "infer:1:1,infer:32:1,infer:256:1,infer:256:2,train:1:1,train:32:1,train:256:2"
QUICK_CASES = "infer:1:1,infer:8:1,infer:16:2,train:1:1,train:8:1,train:16:2"
#: lenet_fast's speed targets by case: at least `fastest` times the fastest peer, `torch`
#: times PyTorch eager (medians of the per-round ratios) and the fraction `peak` of the FMA
#: peak of the machine of the run.
TARGETS: dict[str, dict[str, float]] = {
    "infer:1:1": {"fastest": 2.0},
    "infer:32:1": {"fastest": 2.0, "peak": 0.6},
    "infer:256:1": {"fastest": 2.0, "peak": 0.6},
    "infer:256:2": {"fastest": 2.0},
    "train:1:1": {"torch": 25.0, "peak": 0.35},
    "train:32:1": {"torch": 5.0, "peak": 0.4},
}
SGD_LR = 0.005  # the rate of the batch SGD step (lenet_fast.train's default)
SDLM_ETA, SDLM_MU = paper_eta(1), sdlm_mu(1)  # the SDLM steps of pass 1: eta / (mu + h_kk)
VALIDATE_PATTERNS = 4  # per-pattern (batch 1) training: patterns of the validation run
HESSIAN_PATTERNS = 64
#: Implementations whose disagreement stops the run (exit 1) rather than being reported.
FATAL = ("lenet_fast", "reference")

Arrays = dict[str, npt.NDArray[Any]]


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
        return case_label(self.key)


def parse_cases(spec: str) -> list[Case]:
    """``task:batch:threads,...`` -> cases (ValueError if malformed)."""
    cases = []
    for item in spec.split(","):
        task, b, t = item.strip().split(":")
        if task not in ("infer", "train") or int(b) < 1 or int(t) < 1:
            raise ValueError(item)
        cases.append(Case(task, int(b), int(t)))
    if not cases:
        raise ValueError(spec)
    return list(dict.fromkeys(cases))


def load_inputs(data: str | None, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any], str]:
    """n preprocessed float32 (n,1,32,32) patterns and their labels, and where they came from:
    the first n MNIST training digits (``data``, else ``$LENET_FAST_DATA`` or the cache),
    or, when MNIST is not found and ``data`` was not given, seeded synthetic digits."""
    try:
        images, labels, _, _ = load_mnist(data)
        idx = np.arange(n) % images.shape[0]
        return preprocess(images[idx]), labels[idx].astype(np.intp), "MNIST training digits"
    except Exception as e:
        if data:
            print(f"error: --data {data}: cannot read MNIST there: {e}", file=sys.stderr)
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


def build_inputs(
    args: argparse.Namespace,
) -> tuple[LeNet5, npt.NDArray[np.float32], npt.NDArray[Any], str]:
    """The model and the patterns, the same in every process (seeded, or read from files)."""
    model = LeNet5.load(args.model) if args.model else LeNet5(seed=args.seed)
    n = max(
        [c.batch for c in args.cases]
        + list(args.block.values())
        + [VALIDATE_PATTERNS, HESSIAN_PATTERNS]
    )
    x, labels, source = load_inputs(args.data, n)
    return model, x, labels, source


def skip_reason(args: argparse.Namespace, key: str) -> str | None:
    return "skipped (--quick)" if key == "torch.compile" and args.quick else None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


class Run:
    """One process's share of the suite: set up and validate the implementations ``keys``,
    all before any is timed (:meth:`prepare`), then time their calls one round at a time as
    :mod:`harness.rounds` asks (:meth:`warm`, :meth:`time_round`). ``part`` collects what
    the process contributes (:func:`harness.worker.new_part`); a lenet_fast or reference
    disagreement sets ``part["fatal"]`` and stops it."""

    def __init__(
        self,
        args: argparse.Namespace,
        model: LeNet5,
        x: npt.NDArray[np.float32],
        labels: npt.NDArray[Any],
        blas: BlasThreads,
    ) -> None:
        self.args, self.model, self.x, self.labels = args, model, x, labels
        self.cases: list[Case] = args.cases
        self.part = new_part()
        h = model.hessian_diagonal(x[:HESSIAN_PATTERNS], labels[:HESSIAN_PATTERNS])
        self.steps = sdlm_steps(h, SDLM_ETA, SDLM_MU)
        self.start = {k: v.copy() for k, v in model.params.items()}
        self.truth = Truth(model)
        self.setup = Setup(model, self.steps, SGD_LR, {"blas": blas, "onnx_graph": args.onnx_graph})
        self.trainers: dict[tuple[str, int], Trainer] = {}
        self.truth_cache: dict[tuple[Any, ...], Any] = {}
        self.broken: dict[tuple[str, str], str] = {}  # (impl, case) -> why it is not timed
        self.made: dict[str, Impl] = {}
        # (impl, case) -> the timed call, the images per call, the case's threads
        self.calls: dict[tuple[str, str], tuple[Callable[[], Any], int, int]] = {}

    # ---- the implementations ("not installed" / "failed: ..." when a peer cannot run)
    def make(self, keys: list[str]) -> dict[str, Impl]:
        status, notes = self.part["status"], self.part["notes"]
        made: dict[str, Impl] = {}
        for key in keys:
            if skip_reason(self.args, key):
                status[key] = skip_reason(self.args, key)
                continue
            cls = registry.get(key)
            why = cls.available()
            if why is not None:
                status[key] = "not installed"
                notes.append(f'{LABELS[key]}: {why}; `pip install ".[bench]"` installs it')
                continue
            impl = cls()
            try:
                impl.prepare(self.setup)
            except Exception as e:
                if key in FATAL:
                    raise
                status[key] = "failed"
                notes.append(f"{LABELS[key]}: failed to set up: {type(e).__name__}: {e}")
                continue
            made[key] = impl
            status.setdefault(key, impl.version)
            self.part["impls"][key] = {"version": impl.version, "note": impl.note}
        return made

    def data(
        self, case: Case, key: str, validate: bool
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[Any]]:
        if case.task == "infer" or case.batch > 1:
            n = case.batch
        else:
            n = VALIDATE_PATTERNS if validate else self.args.block.get(key, 8)
        return self.x[:n], self.labels[:n]

    def trainer(self, key: str, impl: Impl, batch: int) -> Trainer:
        if (key, batch) not in self.trainers:
            self.trainers[(key, batch)] = impl.trainer(batch)
        return self.trainers[(key, batch)]

    def _check(self, key: str, c: Case, kind: str, checked: str, worst: float) -> None:
        self.part["validation"].append(
            {
                "impl": key,
                "case": c.key,
                "kind": kind,
                "checked": checked,
                "worst_err_over_tol": worst,
            }
        )

    def validate(self, key: str, impl: Impl, c: Case) -> None:
        """Check one case of one implementation against the float64 reference."""
        impl.set_threads(c.threads)
        x, lab = self.data(c, key, validate=True)
        what = f"{LABELS[key]}, {c.label}"
        cache = self.truth_cache
        if c.task == "infer":
            tk: tuple[Any, ...] = ("infer", x.shape[0])
            if tk not in cache:
                cache[tk] = self.truth.forward(x)
            worst = check_forward(what, impl.infer(x)(), cache[tk])
            self._check(key, c, "output", "penalties (N,10)", worst)
            return
        tk = ("train", c.batch, x.shape[0])
        if tk not in cache:
            cache[tk] = (
                self.truth.gradients(x[: c.batch], lab[: c.batch]),
                self.truth.sdlm_delta(x, lab, self.steps)
                if c.batch == 1
                else self.truth.sgd_delta(x, lab, SGD_LR),
            )
        want_g, want_d = cache[tk]
        tr = self.trainer(key, impl, c.batch)
        tr.load(self.start)
        # (a) the gradients of the batch-mean loss, computed by the code the step runs
        worst = check_gradients(what, tr.gradients(x[: c.batch], lab[: c.batch]), want_g)
        self._check(key, c, "gradients", f"gradients of the loss on {c.batch} pattern(s)", worst)
        # (b) the timed step itself: the parameters' change from the same start
        tr.bind(x, lab)
        tr.run()
        n = x.shape[0] if c.batch == 1 else 1
        worst = check_update(what, self.start, tr.params(), want_d, steps=n)
        self._check(
            key,
            c,
            "update",
            (
                f"parameter change after {x.shape[0]} per-pattern SDLM steps"
                if c.batch == 1
                else f"parameter change after one SGD step (lr {SGD_LR:g})"
            ),
            worst,
        )

    def validate_all(self, key: str, impl: Impl) -> bool:
        """Validate every case of ``key``; False if the run must stop (``fatal`` set)."""
        for c in self.cases:
            if impl.supports(c.task) is not None:
                continue
            try:
                self.validate(key, impl, c)
            except ValidationError as e:
                if key in FATAL:
                    self.part["fatal"] = f"VALIDATION FAILED, nothing is reported: {e}"
                    return False
                self.broken[(key, c.key)] = f"failed validation: {e}"
            except Exception as e:  # a peer that breaks is reported, not fatal
                if key in FATAL:
                    raise
                self.broken[(key, c.key)] = f"failed: {type(e).__name__}: {_first_line(e)}"
                if os.environ.get("LENET_FAST_BENCH_DEBUG"):
                    traceback.print_exc()
        if key == "lenet_fast" and any(c.task == "train" and c.batch == 1 for c in self.cases):
            try:
                self.part["validation"].append(
                    check_fused_vs_loop(
                        self.model, self.steps, self.x, self.labels, VALIDATE_PATTERNS
                    )
                )
            except ValidationError as e:
                self.part["fatal"] = f"VALIDATION FAILED, nothing is reported: {e}"
                return False
        return True

    # ---- after validation: the rounds (harness.rounds) time the calls one round at a time
    def prepare(self, keys: list[str]) -> dict[str, Any]:
        """Set up and validate ``keys``, all before any is timed. ``part["plan"][key]``: the
        cases ``key`` will be timed in; a row with ``why`` for each case it will not be
        (unsupported, or failed validation). Stops at a lenet_fast or reference
        disagreement (``part["fatal"]``)."""
        self.made = self.make(keys)
        for key, impl in self.made.items():
            if not self.validate_all(key, impl):
                return self.part
        plan: dict[str, list[str]] = {}
        for key, impl in self.made.items():
            plan[key] = []
            for c in self.cases:
                why = impl.supports(c.task)
                if why is not None or (key, c.key) in self.broken:
                    self.part["rows"].append(
                        {
                            "impl": key,
                            "case": c.key,
                            "why": "-" if why else "failed",
                            "reason": why or self.broken[(key, c.key)],
                        }
                    )
                else:
                    plan[key].append(c.key)
        for (key, ck), why in self.broken.items():
            self.part["notes"].append(f"{LABELS[key]}, {ck}: {why}; not timed")
        self.part["plan"] = plan
        # the objects of the set-up (torch's alone are ~10^5) are left out of every later
        # collection: the one before each round then costs microseconds, not a tenth of a
        # second
        gc.collect()
        gc.freeze()
        return self.part

    def _call(self, key: str, c: Case) -> tuple[Callable[[], Any], int]:
        """The timed call of ``key`` in case ``c``, and the images one call processes."""
        impl = self.made[key]
        impl.set_threads(c.threads)
        x, lab = self.data(c, key, validate=False)
        if c.task == "infer":
            return impl.infer(x), x.shape[0]
        tr = self.trainers[(key, c.batch)]
        tr.load(self.start)
        images = tr.bind(x, lab)
        return tr.run, images

    def _failed(self, key: str, e: Exception) -> str:
        if key in FATAL:
            raise e
        if os.environ.get("LENET_FAST_BENCH_DEBUG"):
            traceback.print_exc()
        return f"failed while timed: {type(e).__name__}: {_first_line(e)}"

    def warm(self, key: str, case: str) -> str | None:
        """Build the timed call of ``key`` in ``case`` and warm it up (the reference: one
        call). None, or why it failed (a peer; lenet_fast's or the reference's error is
        raised)."""
        c = next(c for c in self.cases if c.key == case)
        try:
            fn, images = self._call(key, c)
            warm_up(fn, 0.0 if key == "reference" else self.args.timing["warmup_s"])
        except Exception as e:
            return self._failed(key, e)
        self.calls[(key, case)] = (fn, images, c.threads)
        return None

    def time_round(self, key: str, case: str, seconds: float) -> dict[str, Any] | str:
        """One round: back-to-back calls for >= ``seconds``; the seconds per call."""
        fn, images, threads = self.calls[(key, case)]
        self.made[key].set_threads(threads)  # the cases alternate, so their thread counts do
        gc.collect()
        gc.disable()  # no collection in the middle of a round
        try:
            calls, elapsed = run_for(fn, seconds)
        except Exception as e:
            return self._failed(key, e)
        finally:
            gc.enable()
        return {"s_per_call": elapsed / calls, "calls": calls, "images": images}

    def close(self) -> None:
        for impl in self.made.values():
            impl.set_threads(1)
            impl.close()


class LocalPlayer:
    """One implementation of a :class:`Run` in this process, as a player of the rounds
    (``--in-process``)."""

    def __init__(self, run: Run, key: str) -> None:
        self.run, self.key = run, key

    def warm(self, case: str) -> str | None:
        return self.run.warm(self.key, case)

    def time(self, case: str, seconds: float) -> dict[str, Any] | str:
        return self.run.time_round(self.key, case, seconds)


def measure_peak(args: argparse.Namespace) -> dict[str, Any]:
    """The fp32 FMA peak per core that "% of FMA peak" divides by: ``--peak-gmacs``, or
    measured here (``lenet_fast._core.fma_peak``, the median of a few short tries) with the
    best ISA of this CPU and build, on one thread. The suite measures it first, before any
    worker process exists, so nothing else of the suite runs meanwhile."""
    if args.peak_gmacs is not None:
        return {"gmacs_per_core": args.peak_gmacs, "how": "given (--peak-gmacs)"}
    from lenet_fast import _core

    tries, seconds = QUICK_PEAK_TRIES if args.quick else PEAK_TRIES
    isa, before = available_isas()[-1], get_isa()
    set_isa(isa)
    try:
        got = [_core.fma_peak(seconds) / 1e9 for _ in range(tries)]
    finally:
        set_isa(before)
    vector = "8-lane FMA" if isa == "avx2" else "scalar multiply+add, no vector ISA"
    return {
        "gmacs_per_core": statistics.median(got),
        "how": (
            f"measured: lenet_fast._core.fma_peak on {isa} ({vector}), one thread, median of "
            f"{tries} tries of {seconds:g} s"
        ),
        "isa": isa,
        "tries_gmacs": got,
    }


def process_mode(args: argparse.Namespace) -> str:
    if args.in_process:
        return "all implementations timed in one process (--in-process)"
    return "each implementation timed in its own process, all kept alive for the rounds"


def result_json(
    args: argparse.Namespace,
    facts: dict[str, Any],
    res: dict[str, Any],
    elapsed: float,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The JSON of a suite run (see bench/README.md for its fields)."""
    order = [k for k in registry.KEYS if k in args.peers]
    rows, impls = res["rows"], res["impls"]
    notes = list(res["notes"])
    load = facts["load_average_1min_at_start"]
    if load is not None and load > 0.5:
        notes.append(
            f"the machine was busy: load average {load:g} at the start (other processes "
            "running); timings, multi-threaded ones above all, are unreliable"
        )
    return {
        "schema": SCHEMA,
        "script": "bench/bench_suite.py",
        "facts": facts,
        "settings": {
            "quick": args.quick,
            "rounds": args.rounds,
            "round_s": args.round_s,
            "pause_s": PAUSE_S,
            "reference_rounds": min(REFERENCE_ROUNDS, args.rounds),
            "cases": [c.key for c in args.cases],
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
            "macs_per_image": dict(MACS_PER_IMAGE),
            "peak_gmacs_per_core": res["fma_peak"]["gmacs_per_core"],
            "fma_peak": res["fma_peak"],
            "fastest_of": list(FASTEST_OF),
            **extra,
        },
        "peers": {
            k: {
                "status": res["status"].get(k, "not run"),
                "version": impls[k]["version"] if k in impls else None,
                "note": impls[k]["note"] if k in impls else None,
                "process": res["processes"].get(k),
            }
            for k in order
        },
        "notes": notes,
        "validation": res["validation"],
        "results": [rows[(k, c.key)] for c in args.cases for k in order if (k, c.key) in rows],
        "versus_fastest_peer": res["versus_fastest_peer"],
        "targets": TARGETS,
        "load_average_1min_at_end": load_average(),
        "run_time_s": elapsed,
    }


def report_lines(result: dict[str, Any]) -> list[str]:
    """The markdown report of a suite run, from its JSON."""
    facts, s, peers = result["facts"], result["settings"], result["peers"]
    validation = result["validation"]
    worst_of: dict[str, dict[str, Any]] = {}
    for v in validation:
        seen = worst_of.get(v["kind"])
        if seen is None or v["worst_err_over_tol"] > seen["worst_err_over_tol"]:
            worst_of[v["kind"]] = v
    worst_text = "; ".join(
        f"{what} {worst_of[k]['worst_err_over_tol']:.2g} "
        f"({LABELS[worst_of[k]['impl']]}, {worst_of[k]['case']})"
        for k, what in (
            ("output", "outputs"),
            ("gradients", "gradients"),
            ("update", "parameter updates"),
        )
        if k in worst_of
    )
    bitwise = any("bitwise" in v["checked"] for v in validation)
    lines = [
        "# lenet_fast benchmark suite: LeNet-5 inference and training",
        "",
        *header_lines(facts),
        "- peers: "
        + ", ".join(f"{LABELS[k]}: {p['status']}" for k, p in peers.items() if k != "lenet_fast")
        + f"; NumPy BLAS threads: {s['blas_threads']}",
        f"- FMA peak: {s['peak_gmacs_per_core']:.1f} G multiply-adds/s per core, "
        f"{s['fma_peak']['how']}",
        f"- model: {s['model']}, options {s['model_options']}; input: {s['data']}",
        f"- method: every implementation validated against lenet_fast.reference in float64 "
        f"first; then a warm-up of >= {s['warmup_s']:g} s per implementation and case (the "
        f"reference: one call), then {s['rounds']} rounds: in each, for each case, every "
        f"implementation runs back-to-back calls for >= {s['round_s']:g} s in turn, the first "
        f"of them rotating from round to round, {s['pause_s'] * 1e3:g} ms apart (the NumPy "
        f"reference, slow, in the first {s['reference_rounds']} rounds only); median and "
        f"min-max over the rounds, and the median of the per-round ratios; "
        f"{s['process_mode']}" + (" [--quick]" if s["quick"] else ""),
        "",
        f"Validation: {len(validation)} checks passed"
        + (" (the fused SDLM pass equals the Python loop bit for bit)" if bitwise else "")
        + f"; worst |err| / tolerance: {worst_text}.",
        "",
        "## Median images/s",
        "",
        *suite_summary(result),
        "",
        "## Details",
        "",
        *suite_detail(result),
        "",
        (
            f"Training step: at batch 1 the per-pattern SDLM update (forward, backward, "
            f"p -= eps*grad), at batch b one SGD step (lr {s['sgd_lr']:g}) on the batch-mean "
            f"loss ({s['model_options']['loss']}). % of FMA peak = images/s x "
            f"{s['macs_per_image']['infer']:,} (inference) or {s['macs_per_image']['train']:,} "
            f"(training) multiply-adds / ({s['peak_gmacs_per_core']:.1f}e9 x threads). "
            "'lenet_fast / this' > 1: lenet_fast is faster; 'of medians' divides the two "
            "medians, 'per round' is the median of each round's ratio of the two measurements "
            "taken in that round; 'lenet_fast / fastest peer' takes in each round the fastest "
            f"of {', '.join(LABELS[k] for k in s['fastest_of'])} (not the NumPy reference)."
        ),
        "",
        "Implementations:",
        *(f"- {LABELS[k]} ({p['version']}): {p['note']}" for k, p in peers.items() if p["note"]),
    ]
    if result["notes"]:
        lines += ["", "Notes:", *(f"- {n}" for n in result["notes"])]
    lines += ["", f"Total run time {result['run_time_s']:.1f} s."]
    return lines
