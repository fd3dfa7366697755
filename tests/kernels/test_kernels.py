"""The C++ kernels against the NumPy reference, forward and backward, on every ISA.

Shapes: LeNet-5's own layers, and shapes at the SIMD tile edges (widths and channel counts
1, 7, 8, 9, 15, 16, 17; H != W; batch 1, 3, 64; rows wider than one 32-column block),
with the tolerances of conftest.TOL. The reference runs in float64 on the same float32
inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_close, rand
from lenet_fast import kernels as K
from lenet_fast import reference as R
from lenet_fast import tables

EDGES = (1, 7, 8, 9, 15, 16, 17)


def f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


# (N, C, H, W, K, R, S): LeNet's C1, C5 (a 1x1 output), then SIMD edges.
CONV_CASES = [
    (3, 1, 32, 32, 6, 5, 5),  # C1
    (64, 1, 32, 32, 6, 5, 5),  # C1, batch 64
    (3, 16, 5, 5, 120, 5, 5),  # C5: the kernel covers the input
    (64, 16, 5, 5, 120, 5, 5),
    (1, 6, 14, 14, 16, 5, 5),  # C3 shape, dense
    *[(3, 2, 6, wo + 4, 3, 5, 5) for wo in EDGES],  # output widths at the edges, H != W
    *[
        (1, c, 9, 8, c2, 5, 5)
        for c, c2 in [(1, 17), (7, 9), (8, 8), (9, 7), (15, 1), (16, 16), (17, 15)]
    ],
    (2, 3, 7, 37, 2, 5, 5),  # Wo = 33: one full 32-column block and a 1-column tail
    (2, 2, 8, 44, 3, 5, 5),  # Wo = 40: a block and one full vector
    (2, 3, 6, 62, 2, 5, 5),  # Wo = 58: a block, three vectors and a tail
    (3, 2, 9, 11, 4, 3, 2),  # other kernel sizes
    (3, 2, 7, 12, 4, 1, 1),
    (2, 3, 10, 21, 2, 2, 7),
    (2, 3, 4, 6, 5, 4, 6),  # a kernel covering the whole input, not 5x5
    (1, 1, 1, 1, 1, 1, 1),
]


@pytest.mark.parametrize("shape", CONV_CASES, ids=lambda s: "x".join(map(str, s)))
def test_conv2d(isa, shape):
    n, c, h, w_, k, r, s = shape
    rng = np.random.default_rng(sum(shape))
    x, w, b = rand(rng, n, c, h, w_), rand(rng, k, c, r, s), rand(rng, k)
    dy = rand(rng, n, k, h - r + 1, w_ - s + 1)
    assert_close("conv2d_forward", K.conv2d_forward(x, w, b), R.conv2d_forward(*f64(x, w, b)))
    for name, got, want in zip(
        ("dx", "dw", "db"), K.conv2d_backward(x, w, dy), R.conv2d_backward(*f64(x, w, dy))
    ):
        assert_close("conv2d_backward", got, want, name)


def random_table(rng, c, k, p=0.5):
    t = rng.random((c, k)) < p
    return t


SPARSE_CASES = [
    # (N, H, W, R, S, table)
    (3, 14, 14, 5, 5, "c3"),  # LeNet's C3 with Table I
    (64, 14, 14, 5, 5, "c3"),
    (1, 14, 14, 5, 5, "c3"),
    *[(3, 6, wo + 4, 5, 5, ("random", 7, 9, wo)) for wo in EDGES],
    (2, 9, 40, 5, 5, ("random", 16, 17, 0)),  # Wo = 36
    (2, 6, 8, 3, 2, ("random", 8, 15, 1)),
    (2, 6, 8, 5, 5, ("empty_rows_and_cols", 5, 6, 0)),
]


def make_table(rng, spec):
    if spec == "c3":
        return np.array(tables.C3_TABLE)
    kind, c, k, seed = spec
    t = np.random.default_rng(seed).random((c, k)) < 0.5
    if kind == "empty_rows_and_cols":
        t[1, :] = False  # an input map that feeds nothing
        t[:, 2] = False  # an output map that reads nothing: bias only
        t[0, 0] = True
    return t


@pytest.mark.parametrize(
    "case",
    SPARSE_CASES,
    ids=lambda s: (
        f"{s[0]}x{s[1]}x{s[2]}-{s[3]}x{s[4]}-{s[5] if isinstance(s[5], str) else s[5][0] + str(s[5][1:])}"
    ),
)
def test_sparse_conv2d(isa, case):
    n, h, w_, r, s, spec = case
    rng = np.random.default_rng(n * 100 + w_)
    table = make_table(rng, spec)
    c, k = table.shape
    t = int(table.sum())
    x, w, b = rand(rng, n, c, h, w_), rand(rng, t, r, s), rand(rng, k)
    dy = rand(rng, n, k, h - r + 1, w_ - s + 1)
    assert_close(
        "sparse_conv2d_forward",
        K.sparse_conv2d_forward(x, w, b, table),
        R.sparse_conv2d_forward(*f64(x, w, b), table),
    )
    got = K.sparse_conv2d_backward(x, w, dy, table)
    want = R.sparse_conv2d_backward(*f64(x, w, dy), table)
    for name, g, e in zip(("dx", "dw", "db"), got, want):
        assert_close("sparse_conv2d_backward", g, e, name)


SUBSAMPLE_CASES = [
    (3, 6, 28, 28),  # S2
    (3, 16, 10, 10),  # S4
    (64, 6, 28, 28),
    *[(3, c, 4, 2 * wo) for c, wo in zip(EDGES, EDGES)],  # output widths at the edges
    (2, 3, 6, 2 * 33),
    (1, 1, 2, 2),
    (2, 5, 12, 2),
]


@pytest.mark.parametrize("shape", SUBSAMPLE_CASES, ids=lambda s: "x".join(map(str, s)))
def test_subsample(isa, shape):
    rng = np.random.default_rng(sum(shape))
    n, c, h, w_ = shape
    x, coef, bias = rand(rng, *shape), rand(rng, c), rand(rng, c)
    dy = rand(rng, n, c, h // 2, w_ // 2)
    assert_close(
        "subsample_forward",
        K.subsample_forward(x, coef, bias),
        R.subsample_forward(*f64(x, coef, bias)),
    )
    for name, got, want in zip(
        ("dx", "dcoef", "dbias"),
        K.subsample_backward(x, coef, dy),
        R.subsample_backward(*f64(x, coef, dy)),
    ):
        assert_close("subsample_backward", got, want, name)


LINEAR_CASES = [
    (3, 120, 84),  # F6
    (64, 120, 84),
    (3, 400, 120),  # C5 as a full connection
    *[(3, i, o) for i, o in zip(EDGES, reversed(EDGES))],
    (1, 1, 1),
    (5, 33, 5),
]


@pytest.mark.parametrize("shape", LINEAR_CASES, ids=lambda s: "x".join(map(str, s)))
def test_linear(isa, shape):
    n, i, o = shape
    rng = np.random.default_rng(sum(shape))
    x, w, b, dy = rand(rng, n, i), rand(rng, o, i), rand(rng, o), rand(rng, n, o)
    assert_close("linear_forward", K.linear_forward(x, w, b), R.linear_forward(*f64(x, w, b)))
    for name, got, want in zip(
        ("dx", "dw", "db"), K.linear_backward(x, w, dy), R.linear_backward(*f64(x, w, dy))
    ):
        assert_close("linear_backward", got, want, name)


@pytest.mark.parametrize(
    "shape", [(0,), (1,), (7,), (8,), (9,), (15,), (16,), (17,), (3, 6, 28, 28), (5000,), ()]
)
def test_squash(isa, shape):
    rng = np.random.default_rng(len(shape))
    a = np.asarray(rand(rng, *shape, scale=6.0))
    y = K.squash_forward(a)
    assert_close("squash_forward", y, R.squash_forward(a.astype(np.float64)))
    dy = np.asarray(rand(rng, *shape))
    assert_close("squash_backward", K.squash_backward(y, dy), R.squash_backward(*f64(y, dy)))


def test_squash_whole_range(isa):
    """Every part of the AVX2 rational tanh: tiny, mid, clamped, and the paper's f(+-1) = +-1."""
    a = np.concatenate(
        [
            np.linspace(-30, 30, 200_001),
            np.geomspace(1e-30, 1e-2, 1000),
            -np.geomspace(1e-30, 1e-2, 1000),
            [0.0, -0.0, 1.0, -1.0, 11.85, 11.86, 3e38, -3e38],
        ]
    ).astype(np.float32)
    y = K.squash_forward(a)
    assert_close("squash_forward", y, R.squash_forward(a.astype(np.float64)))
    assert abs(y[-8 + 2] - 1.0) < 1e-4 and abs(y[-8 + 3] + 1.0) < 1e-4
    assert np.all(np.abs(y) <= R.SQUASH_A), "|f(a)| must never exceed A"
    # non-decreasing, up to the few-ulp wiggles of a rational approximation near +-A
    assert np.all(np.diff(y[:200_001]) >= -8 * np.spacing(np.float32(R.SQUASH_A))), (
        "f must not decrease"
    )


@pytest.mark.parametrize(
    "shape",
    [(3, 10, 84), (64, 10, 84), *[(3, m, j) for m, j in zip(EDGES, EDGES)], (2, 17, 33)],
    ids=lambda s: "x".join(map(str, s)),
)
def test_rbf(isa, shape):
    n, m, j = shape
    rng = np.random.default_rng(sum(shape))
    x = rand(rng, n, j)
    c = np.array(tables.RBF_CODES) if (m, j) == (10, 84) else rand(rng, m, j)
    dy = rand(rng, n, m)
    assert_close("rbf_forward", K.rbf_forward(x, c), R.rbf_forward(*f64(x, c)))
    for name, got, want in zip(
        ("dx", "dc"), K.rbf_backward(x, c, dy), R.rbf_backward(*f64(x, c, dy))
    ):
        assert_close("rbf_backward", got, want, name)


def test_lenet_forward_pass_matches_reference(isa):
    """The whole LeNet-5 forward pass chained from the kernels, against the reference chain."""
    rng = np.random.default_rng(5)
    n = 7
    u = lambda fan_in, *shape: rand(rng, *shape, scale=2.4 / fan_in)
    p = dict(
        c1w=u(25, 6, 1, 5, 5),
        c1b=u(25, 6),
        s2c=u(4, 6),
        s2b=u(4, 6),
        c3w=u(75, 60, 5, 5),
        c3b=u(75, 16),
        s4c=u(4, 16),
        s4b=u(4, 16),
        c5w=u(400, 120, 16, 5, 5),
        c5b=u(400, 120),
        f6w=u(120, 84, 120),
        f6b=u(120, 84),
    )
    x = rand(rng, n, 1, 32, 32)

    def forward(mod, cast):
        q = {k: cast(v) for k, v in p.items()}
        h = mod.squash_forward(mod.conv2d_forward(cast(x), q["c1w"], q["c1b"]))
        h = mod.squash_forward(mod.subsample_forward(h, q["s2c"], q["s2b"]))
        h = mod.squash_forward(mod.sparse_conv2d_forward(h, q["c3w"], q["c3b"], tables.C3_TABLE))
        h = mod.squash_forward(mod.subsample_forward(h, q["s4c"], q["s4b"]))
        h = mod.squash_forward(mod.conv2d_forward(h, q["c5w"], q["c5b"])).reshape(n, 120)
        h = mod.squash_forward(mod.linear_forward(h, q["f6w"], q["f6b"]))
        return mod.rbf_forward(h, cast(tables.RBF_CODES))

    got = forward(K, lambda a: a)
    want = forward(R, lambda a: a.astype(np.float64))
    assert_close("rbf_forward", got, want)
    assert got.shape == (n, 10)


@pytest.mark.filterwarnings(
    "ignore:invalid value encountered:RuntimeWarning"
)  # NumPy's, on purpose
@pytest.mark.parametrize("kernel", ["conv", "sparse", "subsample", "linear", "squash", "rbf"])
def test_nan_and_inf_propagate_as_the_maths_says(isa, kernel):
    """NaN/inf inputs give NaN/inf exactly where the float64 reference does (a SIMD tail
    that read a neighbouring row, or a clamp that swallowed NaN, would show here)."""
    rng = np.random.default_rng(11)

    def poison(a, k=3):
        a = a.copy()
        flat = a.reshape(-1)
        idx = rng.choice(flat.size, size=k, replace=False)
        flat[idx[0]] = np.nan
        flat[idx[1:2]] = np.inf
        flat[idx[2:]] = -np.inf
        return a

    if kernel == "conv":
        x, w, b = poison(rand(rng, 2, 2, 9, 13)), rand(rng, 3, 2, 5, 5), rand(rng, 3)
        dy = rand(rng, 2, 3, 5, 9)
        assert_close("conv2d_forward", K.conv2d_forward(x, w, b), R.conv2d_forward(*f64(x, w, b)))
        for g, e in zip(K.conv2d_backward(x, w, dy), R.conv2d_backward(*f64(x, w, dy))):
            assert_close("conv2d_backward", g, e)
    elif kernel == "sparse":
        t = np.array(tables.C3_TABLE)
        x, w, b = poison(rand(rng, 2, 6, 14, 14)), rand(rng, 60, 5, 5), rand(rng, 16)
        dy = poison(rand(rng, 2, 16, 10, 10), 1)
        assert_close(
            "sparse_conv2d_forward",
            K.sparse_conv2d_forward(x, w, b, t),
            R.sparse_conv2d_forward(*f64(x, w, b), t),
        )
        for g, e in zip(
            K.sparse_conv2d_backward(x, w, dy, t), R.sparse_conv2d_backward(*f64(x, w, dy), t)
        ):
            assert_close("sparse_conv2d_backward", g, e)
    elif kernel == "subsample":
        x, c, b = poison(rand(rng, 2, 3, 6, 34)), rand(rng, 3), rand(rng, 3)
        dy = rand(rng, 2, 3, 3, 17)
        assert_close(
            "subsample_forward", K.subsample_forward(x, c, b), R.subsample_forward(*f64(x, c, b))
        )
        for g, e in zip(K.subsample_backward(x, c, dy), R.subsample_backward(*f64(x, c, dy))):
            assert_close("subsample_backward", g, e)
    elif kernel == "linear":
        x, w, b = poison(rand(rng, 3, 17)), rand(rng, 9, 17), rand(rng, 9)
        dy = rand(rng, 3, 9)
        assert_close("linear_forward", K.linear_forward(x, w, b), R.linear_forward(*f64(x, w, b)))
        for g, e in zip(K.linear_backward(x, w, dy), R.linear_backward(*f64(x, w, dy))):
            assert_close("linear_backward", g, e)
    elif kernel == "squash":
        a = poison(rand(rng, 37), 4)
        assert_close("squash_forward", K.squash_forward(a), R.squash_forward(a.astype(np.float64)))
        y, dy = poison(rand(rng, 37)), rand(rng, 37)
        assert_close("squash_backward", K.squash_backward(y, dy), R.squash_backward(*f64(y, dy)))
    else:
        x, c, dy = poison(rand(rng, 3, 17)), rand(rng, 9, 17), rand(rng, 3, 9)
        assert_close("rbf_forward", K.rbf_forward(x, c), R.rbf_forward(*f64(x, c)))
        for g, e in zip(K.rbf_backward(x, c, dy), R.rbf_backward(*f64(x, c, dy))):
            assert_close("rbf_backward", g, e)


def test_empty_batch(isa):
    """N = 0 is a valid batch: empty outputs, zero parameter gradients."""
    x = np.zeros((0, 6, 14, 14), np.float32)
    w, b = np.ones((16, 6, 5, 5), np.float32), np.ones(16, np.float32)
    assert K.conv2d_forward(x, w, b).shape == (0, 16, 10, 10)
    dx, dw, db = K.conv2d_backward(x, w, np.zeros((0, 16, 10, 10), np.float32))
    assert dx.shape == x.shape and not dw.any() and not db.any()
    tw = np.ones((60, 5, 5), np.float32)
    assert K.sparse_conv2d_forward(x, tw, b, tables.C3_TABLE).shape == (0, 16, 10, 10)
    dx, dw, db = K.sparse_conv2d_backward(
        x, tw, np.zeros((0, 16, 10, 10), np.float32), tables.C3_TABLE
    )
    assert dx.shape == x.shape and not dw.any() and not db.any()
    c6 = np.ones(6, np.float32)
    assert K.subsample_forward(x, c6, c6).shape == (0, 6, 7, 7)
    dx, dc, dbias = K.subsample_backward(x, c6, np.zeros((0, 6, 7, 7), np.float32))
    assert dx.shape == x.shape and not dc.any() and not dbias.any()
    x2 = np.zeros((0, 120), np.float32)
    assert K.linear_forward(x2, np.ones((84, 120), np.float32), np.ones(84, np.float32)).shape == (
        0,
        84,
    )
    dx, dw, db = K.linear_backward(
        x2, np.ones((84, 120), np.float32), np.zeros((0, 84), np.float32)
    )
    assert dx.shape == (0, 120) and not dw.any() and not db.any()
    x3 = np.zeros((0, 84), np.float32)
    assert K.rbf_forward(x3, tables.RBF_CODES).shape == (0, 10)
    dx, dc = K.rbf_backward(x3, tables.RBF_CODES, np.zeros((0, 10), np.float32))
    assert dx.shape == (0, 84) and not dc.any()


def test_outputs_are_new_arrays_and_inputs_untouched(isa):
    rng = np.random.default_rng(2)
    x, w, b = rand(rng, 2, 1, 32, 32), rand(rng, 6, 1, 5, 5), rand(rng, 6)
    keep = [a.copy() for a in (x, w, b)]
    y1 = K.conv2d_forward(x, w, b)
    y2 = K.conv2d_forward(x, w, b)
    assert not np.shares_memory(y1, y2) and not np.shares_memory(y1, x)
    np.testing.assert_array_equal(y1, y2)
    for a, k in zip((x, w, b), keep):
        np.testing.assert_array_equal(a, k)
