"""The suite's measuring mode: the implementations alternate in rounds.

Every implementation is warmed up once per case; then, in each of R rounds, for each case,
every implementation runs one round of back-to-back calls for >= ``round_s`` seconds, one
after the other, the first of them rotating from round to round, with a short pause
between turns (``PAUSE_S``: the spinning threads of an OpenMP or ONNX Runtime pool that
just ran go to sleep before the next implementation starts). A change of load on the
machine therefore touches every implementation alike, and each round gives one
measurement of each, side by side: the per-round ratios lenet_fast / peer come from two
measurements taken moments apart.

A *player* is one implementation that can be timed: in its own worker process
(:class:`harness.worker.WorkerProcess`) or in this process (:class:`harness.suite.Run`
through :class:`LocalPlayer`). This module drives the rounds and turns their samples into
the rows and ratios of the result.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from lenet_fast.layout import MACS_PER_IMAGE

from .impls import LABELS
from .tables import case_parts

#: seconds between two turns, so that the thread pool of the implementation that just ran
#: stops spinning before the next one is timed
PAUSE_S = 0.03
#: the NumPy reference (seconds per call at the large batches) takes part in this many
#: rounds only
REFERENCE_ROUNDS = 2
#: the peers of "lenet_fast / fastest peer" (the NumPy reference is no contender)
FASTEST_OF = ("onnxruntime", "litert", "openvino", "torch", "torch.compile")


class PlayerDied(Exception):
    """A worker process ended (or stopped answering); the message says how, ``key`` whose
    it was (set when :func:`play` gives up on a fatal one)."""

    def __init__(self, why: str, key: str | None = None) -> None:
        super().__init__(why)
        self.key = key


class Player(Protocol):
    """``warm(case)``: the case's warm-up, None or why it failed; ``time(case, seconds)``:
    one round, ``{"s_per_call", "calls", "images"}`` or why it failed. Either raises
    :class:`PlayerDied` when the process behind it is gone."""

    def warm(self, case: str) -> str | None: ...

    def time(self, case: str, seconds: float) -> dict[str, Any] | str: ...


@dataclass
class Series:
    """One implementation's rounds in one case: seconds per call, calls and start (seconds
    from the first warm-up) of each round it was timed in (1-based round numbers), and why
    it stopped, if it did."""

    images: int | None = None
    samples_s: list[float] = field(default_factory=list)
    round_numbers: list[int] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    started_s: list[float] = field(default_factory=list)
    stopped: str | None = None


@dataclass
class Outcome:
    series: dict[tuple[str, str], Series]
    #: key -> (why its process died, the round it died in; 0: the warm-up)
    deaths: dict[str, tuple[str, int]]


def turn_order(keys: list[str], r: int) -> list[str]:
    """Round r's order (0-based): ``keys`` rotated by r, so no one always goes first."""
    if not keys:
        return []
    k = r % len(keys)
    return keys[k:] + keys[:k]


def play(
    players: dict[str, Player],
    plan: dict[str, list[str]],
    cases: list[str],
    rounds: int,
    round_s: float,
    max_rounds: dict[str, int] | None = None,
    pause_s: float = PAUSE_S,
    fatal: tuple[str, ...] = (),
) -> Outcome:
    """Warm up, then ``rounds`` rounds over ``cases``. ``plan[key]``: the cases ``key``
    times (validated, supported); ``max_rounds[key]``: the rounds it takes part in, if
    fewer. A player that dies is timed no more (its earlier rounds stay); one of ``fatal``
    raises :class:`PlayerDied` instead."""
    max_rounds = max_rounds or {}
    series = {(k, c): Series() for k, cs in plan.items() for c in cs}
    alive = {k: p for k, p in players.items() if plan.get(k)}
    deaths: dict[str, tuple[str, int]] = {}
    t0 = time.perf_counter()

    def died(key: str, why: str, r: int) -> None:
        if key in fatal:
            raise PlayerDied(why, key)
        deaths[key] = (why, r)
        alive.pop(key, None)
        for c in plan[key]:
            s = series[(key, c)]
            if s.stopped is None:
                s.stopped = (
                    f"its process died in round {r}: {why}"
                    if r
                    else f"its process died in the warm-up: {why}"
                )

    for c in cases:
        for k in list(alive):
            if c not in plan[k] or k not in alive:
                continue
            try:
                why = alive[k].warm(c)
            except PlayerDied as e:
                died(k, str(e), 0)
                continue
            if why is not None:
                series[(k, c)].stopped = why
            time.sleep(pause_s)

    order = list(alive)
    for r in range(rounds):
        for c in cases:
            for k in turn_order(order, r):
                if k not in alive or c not in plan[k] or r >= max_rounds.get(k, rounds):
                    continue
                s = series[(k, c)]
                if s.stopped is not None:
                    continue
                started = time.perf_counter() - t0
                try:
                    got = alive[k].time(c, round_s)
                except PlayerDied as e:
                    died(k, str(e), r + 1)
                    continue
                if isinstance(got, str):
                    s.stopped = f"{got} (round {r + 1})"
                    continue
                s.images = int(got["images"])
                s.samples_s.append(float(got["s_per_call"]))
                s.calls.append(int(got["calls"]))
                s.round_numbers.append(r + 1)
                s.started_s.append(round(started, 4))
                time.sleep(pause_s)
    return Outcome(series, deaths)


def timed_row(key: str, case: str, s: Series, peak_gmacs: float) -> dict[str, Any]:
    """The result row of one implementation and case: medians over its rounds."""
    task, batch, threads = case_parts(case)
    if not s.samples_s or s.images is None:
        return {"impl": key, "case": case, "why": "failed", "reason": s.stopped or "not timed"}
    med = statistics.median(s.samples_s)
    ips = s.images / med
    macs = MACS_PER_IMAGE[task]
    row: dict[str, Any] = {
        "impl": key,
        "case": case,
        "task": task,
        "batch": batch,
        "threads": threads,
        "images_per_call": s.images,
        "median_s": med,
        "min_s": min(s.samples_s),
        "max_s": max(s.samples_s),
        "runs": len(s.samples_s),
        "samples_s": s.samples_s,
        "round_numbers": s.round_numbers,
        "calls_per_round": s.calls,
        "round_started_s": s.started_s,
        "images_per_s": ips,
        "images_per_s_min": s.images / max(s.samples_s),
        "images_per_s_max": s.images / min(s.samples_s),
        "s_per_step": med * batch / s.images,
        "macs_per_image": macs,
        "peak_fraction": ips * macs / (peak_gmacs * 1e9 * threads),
    }
    if s.stopped:
        row["stopped"] = s.stopped
    return row


def per_round_ips(row: dict[str, Any]) -> dict[int, float]:
    """Round number -> images/s of a timed row."""
    n = row["images_per_call"]
    return {r: n / t for r, t in zip(row["round_numbers"], row["samples_s"])}


def add_ratios(rows: dict[tuple[str, str], dict[str, Any]], cases: list[str]) -> dict[str, Any]:
    """Give every timed row its ratios lenet_fast / this: ``ratio`` of the medians, and
    ``ratio_rounds`` (each round's, from that round's two measurements) with their median
    ``ratio_per_round_median``. Returns, per case, lenet_fast / the fastest peer of
    :data:`FASTEST_OF` in each round and its median (None without a peer)."""
    summary: dict[str, Any] = {}
    for c in cases:
        base = rows.get(("lenet_fast", c)) or {}
        base_r = per_round_ips(base) if base.get("images_per_s") else {}
        for (_, ck), row in rows.items():
            if ck != c or not row.get("images_per_s"):
                continue
            row["ratio"] = base["images_per_s"] / row["images_per_s"] if base_r else None
            mine = per_round_ips(row)
            both = [r for r in row["round_numbers"] if r in base_r]
            row["ratio_round_numbers"] = both
            row["ratio_rounds"] = [base_r[r] / mine[r] for r in both]
            row["ratio_per_round_median"] = statistics.median(row["ratio_rounds"]) if both else None
        best: list[tuple[int, str, float]] = []  # (round, fastest peer, lenet_fast / it)
        for r in sorted(base_r):
            peers = [
                (per_round_ips(row)[r], key)
                for (key, ck), row in rows.items()
                if ck == c and key in FASTEST_OF and r in row.get("round_numbers", ())
            ]
            if peers:
                ips, key = max(peers)
                best.append((r, key, base_r[r] / ips))
        summary[c] = (
            {
                "fastest_peer": Counter(k for _, k, _ in best).most_common(1)[0][0],
                "ratio_per_round_median": statistics.median(x for _, _, x in best),
                "ratio_rounds": [x for _, _, x in best],
                "round_numbers": [r for r, _, _ in best],
                "fastest_peer_by_round": [k for _, k, _ in best],
                "peers_considered": [
                    k for k in FASTEST_OF if rows.get((k, c), {}).get("images_per_s")
                ],
            }
            if best
            else None
        )
    return summary


def collect(res: dict[str, Any], outcome: Outcome, cases: list[str], peak: dict[str, Any]) -> None:
    """Put the rounds' measurements into ``res`` (:func:`harness.worker.merge_parts`'s):
    a row per implementation and case timed, the ratios, lenet_fast / the fastest peer per
    case (``versus_fastest_peer``), the FMA peak used, and a note and status for every
    implementation that stopped early."""
    rows = res["rows"]
    for (key, case), s in outcome.series.items():
        rows[(key, case)] = timed_row(key, case, s, peak["gmacs_per_core"])
        if s.stopped and not (key in outcome.deaths and s.stopped.startswith("its process")):
            done = f"timed in {len(s.samples_s)} round(s)" if s.samples_s else "not timed"
            res["notes"].append(f"{LABELS[key]}, {case}: {s.stopped}; {done}")
    for key, (why, r) in outcome.deaths.items():
        timed = sorted(
            {n for (k, _), s in outcome.series.items() if k == key for n in s.round_numbers}
        )
        res["status"][key] = f"failed in round {r}" if r else "failed"
        res["notes"].append(
            f"{LABELS[key]}: failed: {why}; "
            + (f"timed in rounds {timed[0]}-{timed[-1]} only" if timed else "not timed")
        )
    # a peer that ran in no case it supports (each failed validation or its timing) failed
    for key in res["plan"]:
        mine = [r for (k, _), r in rows.items() if k == key]
        ran = any(r.get("images_per_s") for r in mine)
        if not ran and any(r.get("why") != "-" for r in mine):
            res["status"].setdefault(key, "failed")
            if not res["status"][key].startswith("failed"):
                res["status"][key] = "failed"
    res["versus_fastest_peer"] = add_ratios(rows, cases)
    res["fma_peak"] = peak
