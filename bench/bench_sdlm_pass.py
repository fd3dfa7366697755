#!/usr/bin/env python
"""Patterns/s of one SDLM pass: the Python per-pattern loop against the fused C++ pass.

Validate first, then time:

1. Both run a short pass (``--check`` patterns) from the same model and steps; the
   parameters, loss and error count must agree (rtol 1e-5; in practice they are equal bit
   for bit), else exit status 1 before anything is timed.
2. Each is then timed on ``--patterns`` MNIST training patterns (``$LENET_FAST_DATA``),
   ``--repeats`` times from the same starting model, the two alternating; the median (and
   min-max) is reported, and written to ``--json`` (default bench/results/sdlm_pass.json).

Usage::

    LENET_FAST_DATA=/path/to/mnist python bench/bench_sdlm_pass.py   # 5,000 patterns, 3 runs
    python bench/bench_sdlm_pass.py --patterns 2000 --isa scalar --threads 2
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

import numpy as np

import lenet_fast
from harness.facts import header_lines, machine_facts
from harness.output import SCHEMA, default_json, rate, write_json
from harness.timing import measure_once_each
from lenet_fast import LeNet5, load_mnist, preprocess
from lenet_fast.train import paper_eta, sdlm_mu, sdlm_pass, sdlm_steps

KINDS = {"loop": False, "fused": True}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--patterns", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check", type=int, default=300, help="patterns of the validation pass")
    p.add_argument("--isa", default="avx2" if "avx2" in lenet_fast.available_isas() else "scalar")
    p.add_argument("--threads", type=int, default=1, help="lenet_fast.set_num_threads")
    p.add_argument("--loss", default="mse", choices=("mse", "map"))
    p.add_argument(
        "--json",
        metavar="PATH",
        default=default_json("sdlm_pass"),
        help="where the results go (default %(default)s)",
    )
    args = p.parse_args(argv)
    lenet_fast.set_isa(args.isa)
    lenet_fast.set_num_threads(args.threads)

    images, labels, _, _ = load_mnist()
    n = args.patterns
    x = preprocess(images[:n])
    lab = labels[:n].astype(np.intp)
    order = np.random.default_rng(0).permutation(n)
    model = LeNet5(seed=0, loss=args.loss)
    steps = sdlm_steps(model.hessian_diagonal(x[:500], lab[:500]), paper_eta(1), sdlm_mu(1))

    # 1. validate
    a, b = model.copy(), model.copy()
    la, ea = sdlm_pass(a, x, lab, order[: args.check], steps, fused=False)
    lb, eb = sdlm_pass(b, x, lab, order[: args.check], steps, fused=True)
    bitwise = all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    ok = (
        ea == eb
        and np.isclose(la, lb, rtol=1e-9)
        and all(np.allclose(a.params[k], b.params[k], rtol=1e-5, atol=1e-7) for k in a.params)
    )
    verdict = "bitwise equal" if bitwise else "close" if ok else "DIFFERENT"
    print(
        f"validation on {args.check} patterns: errors {ea} vs {eb}, loss sum {la:.6g} vs "
        f"{lb:.6g}, parameters {verdict}"
    )
    if not ok:
        print("the fused pass disagrees with the Python loop: not timing it", file=sys.stderr)
        return 1

    # 2. time, alternating loop and fused pass, each from a fresh copy of the model
    facts = machine_facts(threads=args.threads)
    copies = {k: [model.copy() for _ in range(args.repeats)] for k in KINDS}

    def one(kind: str) -> Callable[[], object]:
        return lambda: sdlm_pass(copies[kind].pop(), x, lab, order, steps, fused=KINDS[kind])

    times = measure_once_each({k: one(k) for k in KINDS}, args.repeats)
    print("\n".join(header_lines(facts)))
    print(
        f"- {n:,} MNIST patterns, ISA {args.isa}, {args.threads} thread(s), loss {args.loss}, "
        f"median of {args.repeats}, loop and fused pass alternating"
    )
    rows = []
    for kind, m in times.items():
        ips = n / m["median_s"]
        rows.append(
            {
                "pass": kind,
                "patterns": n,
                **m,
                "patterns_per_s": ips,
                "patterns_per_s_min": n / m["max_s"],
                "patterns_per_s_max": n / m["min_s"],
            }
        )
        name = "fused C++ pass" if KINDS[kind] else "Python loop"
        print(
            f"  {name:15s} {rate(ips):>9} patterns/s  (min-max {rate(n / m['max_s'])}-"
            f"{rate(n / m['min_s'])}, {1e6 / ips:.1f} us/pattern)"
        )
    speedup = times["loop"]["median_s"] / times["fused"]["median_s"]
    print(f"  speedup {speedup:.2f}x")
    write_json(
        args.json,
        {
            "schema": SCHEMA,
            "script": "bench/bench_sdlm_pass.py",
            "facts": facts,
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "validation": {"patterns": args.check, "bitwise_equal": bitwise},
            "results": rows,
            "speedup": speedup,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
