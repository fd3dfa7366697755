"""No leaks: 100,000 kernel calls (and 10,000 refused ones) and 1,000 model save/load
cycles leave the resident memory of the process flat, within a bound far below what
leaking one output (or one model) per call would add."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from lenet_fast import kernels as K
from lenet_fast import tables
from lenet_fast.model import LeNet5

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
pytestmark = [
    pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm"),
    # AddressSanitizer keeps freed memory in quarantine (up to 256 MB): RSS says nothing there
    pytest.mark.skipif(
        "libasan" in os.environ.get("LD_PRELOAD", ""), reason="RSS is meaningless under ASan"
    ),
]


def rss() -> int:
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def small_calls():
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)
    t = np.array(tables.C3_TABLE)
    return [
        (K.conv2d_forward, (f(2, 1, 8, 8), f(3, 1, 5, 5), f(3))),
        (K.conv2d_backward, (f(2, 1, 8, 8), f(3, 1, 5, 5), f(2, 3, 4, 4))),
        (K.sparse_conv2d_forward, (f(1, 6, 6, 6), f(60, 5, 5), f(16), t)),
        (K.sparse_conv2d_backward, (f(1, 6, 6, 6), f(60, 5, 5), f(1, 16, 2, 2), t)),
        (K.subsample_forward, (f(2, 3, 4, 4), f(3), f(3))),
        (K.subsample_backward, (f(2, 3, 4, 4), f(3), f(2, 3, 2, 2))),
        (K.linear_forward, (f(2, 12), f(7, 12), f(7))),
        (K.linear_backward, (f(2, 12), f(7, 12), f(2, 7))),
        (K.squash_forward, (f(3, 17),)),
        (K.squash_backward, (f(3, 17), f(3, 17))),
        (K.rbf_forward, (f(2, 84), tables.RBF_CODES)),
        (K.rbf_backward, (f(2, 84), tables.RBF_CODES, f(2, 10))),
    ]


def run(calls, times):
    for i in range(times):
        fn, args = calls[i % len(calls)]
        fn(*args)


def test_100k_kernel_calls_leave_rss_flat():
    calls = small_calls()
    run(calls, 20_000)  # warm up: allocator pools, OpenMP threads, caches
    before = rss()
    run(calls, 100_000)
    grown = rss() - before
    # leaking only the smallest output (68 floats) per call would add > 27 MB
    assert grown < 4 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 100,000 kernel calls"


def test_refused_calls_leave_rss_flat():
    """The error paths (exceptions built in C++) free what they took."""
    x, w, b = (
        np.zeros((2, 1, 8, 8), np.float32),
        np.zeros((3, 1, 5, 5), np.float32),
        np.zeros(3, np.float32),
    )
    bad = [
        (K.conv2d_forward, (x.astype(np.float64), w, b), TypeError),
        (K.conv2d_forward, (x, w, np.zeros(4, np.float32)), ValueError),
        (K.conv2d_forward, (x[..., ::-1], w, b), ValueError),
        (K.linear_forward, ([[1.0]], w, b), TypeError),
    ]

    def go(times):
        for i in range(times):
            fn, args, err = bad[i % len(bad)]
            try:
                fn(*args)
            except err:
                pass
            else:
                raise AssertionError("accepted")

    go(5_000)
    before = rss()
    go(20_000)
    grown = rss() - before
    assert grown < 4 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 20,000 refused calls"


@pytest.mark.slow
def test_1000_save_load_cycles_leave_rss_flat(tmp_path):
    model = LeNet5(seed=1)
    path = tmp_path / "m.npz"
    x = np.zeros((1, 28, 28), np.uint8)

    def cycle(times):
        for _ in range(times):
            model.save(path)
            back = LeNet5.load(path)
            back.forward(x)

    cycle(100)
    before = rss()
    cycle(1_000)
    grown = rss() - before
    # a model is 240 KB of parameters: leaking one per cycle would add 240 MB
    assert grown < 8 << 20, f"RSS grew by {grown / 2**20:.1f} MiB over 1,000 save/load cycles"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
