"""Threads: the kernels release the GIL, give the same bits from 8 Python threads at once as
one at a time, and the same bits whatever the number of threads inside one call."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import rand, ticks_during

import lenet_fast
from lenet_fast import kernels as K
from lenet_fast import tables


def workload(seed: int):
    """Every kernel, forward and backward, on LeNet shapes: a list of (name, fn, args)."""
    rng = np.random.default_rng(seed)
    n = 16
    t = np.array(tables.C3_TABLE)
    x1, w1, b1 = rand(rng, n, 1, 32, 32), rand(rng, 6, 1, 5, 5), rand(rng, 6)
    x3, w3, b3 = rand(rng, n, 6, 14, 14), rand(rng, 60, 5, 5), rand(rng, 16)
    x5, w5, b5 = rand(rng, n, 16, 5, 5), rand(rng, 120, 16, 5, 5), rand(rng, 120)
    xs, cs, bs = rand(rng, n, 6, 28, 28), rand(rng, 6), rand(rng, 6)
    xf, wf, bf = rand(rng, n, 120), rand(rng, 84, 120), rand(rng, 84)
    xr = rand(rng, n, 84)
    return [
        ("conv2d_forward", K.conv2d_forward, (x1, w1, b1)),
        ("conv2d_backward", K.conv2d_backward, (x1, w1, rand(rng, n, 6, 28, 28))),
        ("c5_forward", K.conv2d_forward, (x5, w5, b5)),
        ("c5_backward", K.conv2d_backward, (x5, w5, rand(rng, n, 120, 1, 1))),
        ("sparse_forward", K.sparse_conv2d_forward, (x3, w3, b3, t)),
        ("sparse_backward", K.sparse_conv2d_backward, (x3, w3, rand(rng, n, 16, 10, 10), t)),
        ("subsample_forward", K.subsample_forward, (xs, cs, bs)),
        ("subsample_backward", K.subsample_backward, (xs, cs, rand(rng, n, 6, 14, 14))),
        ("linear_forward", K.linear_forward, (xf, wf, bf)),
        ("linear_backward", K.linear_backward, (xf, wf, rand(rng, n, 84))),
        ("squash_forward", K.squash_forward, (xs,)),
        ("squash_backward", K.squash_backward, (xs, xs)),
        ("rbf_forward", K.rbf_forward, (xr, tables.RBF_CODES)),
        ("rbf_backward", K.rbf_backward, (xr, tables.RBF_CODES, rand(rng, n, 10))),
    ]


def as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


def assert_same_bits(a, b, what):
    for u, v in zip(as_list(a), as_list(b)):
        assert u.tobytes() == v.tobytes(), f"{what}: results differ"


def test_eight_threads_at_once_match_one_at_a_time(isa):
    work = workload(1)
    expected = {name: fn(*args) for name, fn, args in work}
    barrier = threading.Barrier(8)

    def run(tid: int):
        barrier.wait()
        got = []
        for rep in range(5):
            for name, fn, args in work[(tid + rep) % len(work):] + work[: (tid + rep) % len(work)]:
                got.append((name, fn(*args)))
        return got

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    for got in results:
        for name, out in got:
            assert_same_bits(out, expected[name], name)


@pytest.mark.skipif(not lenet_fast.info()["openmp"], reason="this build has no OpenMP threads")
def test_result_does_not_depend_on_thread_count(isa):
    before = lenet_fast.get_num_threads()
    try:
        lenet_fast.set_num_threads(1)
        one = {name: fn(*args) for name, fn, args in workload(2)}
        lenet_fast.set_num_threads(2)
        two = {name: fn(*args) for name, fn, args in workload(2)}
        lenet_fast.set_num_threads(3)  # more threads than cores: still the same bits
        three = {name: fn(*args) for name, fn, args in workload(2)}
    finally:
        lenet_fast.set_num_threads(before)
    for name in one:
        assert_same_bits(one[name], two[name], f"{name} 1 vs 2 threads")
        assert_same_bits(one[name], three[name], f"{name} 1 vs 3 threads")


def test_kernels_release_the_gil():
    """A pure-Python thread keeps running while another thread is inside a long kernel call."""
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, 512, 6, 14, 14), rand(rng, 60, 5, 5), rand(rng, 16)
    t = np.array(tables.C3_TABLE)
    K.sparse_conv2d_forward(x, w, b, t)  # warm up
    t0 = time.perf_counter()
    K.sparse_conv2d_forward(x, w, b, t)
    one_call = time.perf_counter() - t0
    calls = max(3, int(0.3 / max(one_call, 1e-4)))
    before = lenet_fast.get_num_threads()
    lenet_fast.set_num_threads(1)
    try:
        during = ticks_during(lambda: [K.sparse_conv2d_forward(x, w, b, t) for _ in range(calls)])
    finally:
        lenet_fast.set_num_threads(before)
    # With the GIL held for the whole call the spinner would advance only at the few
    # switch points between calls (a handful of ticks per call).
    assert during > 100 * calls, f"spinner advanced {during} times over {calls} kernel calls"


def test_set_num_threads_checks_its_argument():
    with pytest.raises(ValueError, match="n: expected a thread count >= 1, got 0"):
        lenet_fast.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        lenet_fast.set_num_threads(2.0)
    before = lenet_fast.get_num_threads()
    lenet_fast.set_num_threads(1)
    assert lenet_fast.get_num_threads() == 1
    lenet_fast.set_num_threads(before)
