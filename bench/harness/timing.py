"""How every benchmark times a call: warm up, then repeated runs of back-to-back calls, the
median (and min, max) time per call over the runs; and the two steps of the suite's rounds
(:mod:`harness.rounds`): a warm-up, then one round of calls for a given time."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable


def calls_per_run(fn: Callable[[], Any], min_run_s: float, warmup_s: float) -> int:
    """Call ``fn`` once (page faults, lazy set-up), then for >= ``warmup_s`` seconds and at
    least twice; return how many back-to-back calls last >= ``min_run_s``."""
    clock = time.perf_counter
    fn()
    calls, t0 = 0, clock()
    while True:
        fn()
        calls += 1
        elapsed = clock() - t0
        if elapsed >= warmup_s and calls >= 2:
            break
    return max(1, math.ceil(min_run_s / max(elapsed / calls, 1e-9)))


def summary(samples: list[float], n_calls: int) -> dict[str, Any]:
    """Seconds per call over the runs: median, min, max, and the raw samples."""
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "calls_per_run": n_calls,
        "runs": len(samples),
        "samples_s": samples,
    }


def measure(
    fn: Callable[[], Any], repeats: int, min_run_s: float, warmup_s: float
) -> dict[str, Any]:
    """Warm up, then time ``repeats`` runs of back-to-back calls, each >= ``min_run_s``.
    Returns seconds per call (see :func:`summary`)."""
    n_calls = calls_per_run(fn, min_run_s, warmup_s)
    clock = time.perf_counter
    samples = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(n_calls):
            fn()
        samples.append((clock() - t0) / n_calls)
    return summary(samples, n_calls)


def measure_alternating(
    fns: dict[str, Callable[[], Any]], repeats: int, min_run_s: float, warmup_s: float
) -> dict[str, dict[str, Any]]:
    """Time several callables in alternating order (A B A B ...), so that a change of load
    on the machine during the measurement touches each of them alike."""
    n_calls = {k: calls_per_run(f, min_run_s, warmup_s) for k, f in fns.items()}
    samples: dict[str, list[float]] = {k: [] for k in fns}
    clock = time.perf_counter
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = clock()
            for _ in range(n_calls[k]):
                f()
            samples[k].append((clock() - t0) / n_calls[k])
    return {k: summary(samples[k], n_calls[k]) for k in fns}


def measure_once_each(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, Any]]:
    """Time long calls (a training pass, say) ``repeats`` times each, alternating, no warm-up
    beyond what the caller did."""
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f()
            samples[k].append(time.perf_counter() - t0)
    return {k: summary(samples[k], 1) for k in fns}


def warm_up(fn: Callable[[], Any], seconds: float) -> None:
    """Call ``fn`` once (page faults, lazy set-up), then for >= ``seconds`` (at least twice
    when ``seconds`` > 0)."""
    fn()
    if seconds <= 0:
        return
    calls, t0 = 0, time.perf_counter()
    while calls < 2 or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1


def run_for(fn: Callable[[], Any], seconds: float) -> tuple[int, float]:
    """One round: back-to-back calls of ``fn`` until >= ``seconds`` have passed (at least
    one call). Returns the number of calls and the seconds they took."""
    clock = time.perf_counter
    calls, t0 = 0, clock()
    while True:
        fn()
        calls += 1
        elapsed = clock() - t0
        if elapsed >= seconds:
            return calls, elapsed
