#!/usr/bin/env python
"""Patterns/s of one SDLM pass: the Python per-pattern loop vs the fused C++ pass.

Validate first, then time (STYLE.md habit 12):

1. Both run a short pass (``--check`` patterns) from the same model and steps; the
   parameters, loss and error count must agree (rtol 1e-5; in practice they are equal bit
   for bit), else exit status 1 before anything is timed.
2. Each is then timed on ``--patterns`` MNIST training patterns (``$LENET_FAST_DATA``),
   ``--repeats`` times from the same starting model; the median (and min-max) is reported.

Usage::

    LENET_FAST_DATA=/path/to/mnist python bench/bench_sdlm_pass.py            # 5,000 patterns, 3 runs
    python bench/bench_sdlm_pass.py --patterns 2000 --isa scalar --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import lenet_fast
from lenet_fast import LeNet5, load_mnist, preprocess
from lenet_fast.train import _sdlm_pass, paper_eta, sdlm_mu


def run(model: LeNet5, x, labels, order, steps, fused: bool) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    loss, errors = _sdlm_pass(model, x, labels, order, steps, 0, None, fused=fused)
    return time.perf_counter() - t0, loss, errors


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--patterns", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check", type=int, default=300, help="patterns of the validation pass")
    p.add_argument("--isa", default="avx2" if "avx2" in lenet_fast.available_isas() else "scalar")
    p.add_argument("--threads", type=int, default=1, help="lenet_fast.set_num_threads")
    p.add_argument("--loss", default="mse", choices=("mse", "map"))
    args = p.parse_args(argv)
    lenet_fast.set_isa(args.isa)
    lenet_fast.set_num_threads(args.threads)

    images, labels, _, _ = load_mnist()
    n = args.patterns
    x = preprocess(images[:n])
    lab = labels[:n].astype(np.intp)
    order = np.random.default_rng(0).permutation(n)
    model = LeNet5(seed=0, loss=args.loss)
    h = model.hessian_diagonal(x[:500], lab[:500])
    steps = {k: (paper_eta(1) / (sdlm_mu(1) + v)).astype(np.float32) for k, v in h.items()}  # pass 1

    # 1. validate
    a, b = model.copy(), model.copy()
    _, la, ea = run(a, x, lab, order[: args.check], steps, fused=False)
    _, lb, eb = run(b, x, lab, order[: args.check], steps, fused=True)
    bitwise = all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    ok = ea == eb and np.isclose(la, lb, rtol=1e-9) and all(
        np.allclose(a.params[k], b.params[k], rtol=1e-5, atol=1e-7) for k in a.params)
    print(f"validation on {args.check} patterns: errors {ea} vs {eb}, loss {la:.6g} vs {lb:.6g}, "
          f"parameters {'bitwise equal' if bitwise else 'close' if ok else 'DIFFERENT'}")
    if not ok:
        print("the fused pass disagrees with the Python loop: not timing it", file=sys.stderr)
        return 1

    # 2. time
    info = lenet_fast.info()
    print(f"{n:,} MNIST patterns, ISA {args.isa}, {args.threads} thread(s), loss {args.loss}, "
          f"{info['cpu']}, lenet_fast {info['version']}, median of {args.repeats}")
    rates = {}
    for fused in (False, True):
        r = [n / run(model.copy(), x, lab, order, steps, fused)[0] for _ in range(args.repeats)]
        rates[fused] = statistics.median(r)
        name = "fused C++ pass" if fused else "Python loop"
        print(f"  {name:15s} {rates[fused]:9,.0f} patterns/s  (min-max {min(r):,.0f}-{max(r):,.0f}, "
              f"{1e6 / rates[fused]:.1f} us/pattern)")
    print(f"  speedup {rates[True] / rates[False]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
