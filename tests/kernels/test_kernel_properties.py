"""Property tests (hypothesis) of every kernel against the float64 NumPy reference, on every
ISA: random shapes (SIMD tile edges: widths around 8 and 16, size-1 dimensions, N = 0),
random values (ordinary, very large, very small, denormal, zero), and NaN/inf placed in the
input, which must come out where the float64 reference puts them (``conftest.assert_close``
checks NaN, +inf and -inf positions exactly, and the finite values under ``TOL``).

Deterministic and bounded for CI: ``derandomize=True`` and a fixed ``max_examples``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from conftest import TOL, assert_close

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from lenet_fast import kernels, reference  # noqa: E402

F32 = np.float32
EXAMPLES = 150
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)

# widths that straddle SIMD tiles (8 floats per AVX2 register, 16 per two)
DIM = st.sampled_from([1, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 24, 31, 33])
SMALL = st.integers(1, 4)
BATCH = st.sampled_from([0, 1, 1, 2, 3])

# value regimes; "big" stays finite after the kernel's sums (overflow would be a different
# property: the reference's float64 would not overflow where float32 does)
REGIMES = {
    "normal": lambda rng, shape: rng.uniform(-1, 1, shape),
    "big": lambda rng, shape: rng.uniform(-1, 1, shape) * 1e15,
    "small": lambda rng, shape: rng.uniform(-1, 1, shape) * 1e-18,
    "denormal": lambda rng, shape: rng.uniform(-1, 1, shape) * 1e-40,
    "zero": lambda rng, shape: np.zeros(shape),
    "mixed": lambda rng, shape: rng.uniform(-1, 1, shape) * 10.0 ** rng.integers(-40, 15, shape),
    "ints": lambda rng, shape: rng.integers(-3, 4, shape).astype(np.float64),
}


def values(rng, shape, regime, special: bool):
    a = np.asarray(REGIMES[regime](rng, shape), dtype=F32)
    if special and a.size:
        k = int(rng.integers(1, min(4, a.size) + 1))
        idx = rng.choice(a.size, size=k, replace=False)
        a.reshape(-1)[idx] = rng.choice(np.array([np.nan, np.inf, -np.inf], F32), size=k)
    return np.ascontiguousarray(a)


@st.composite
def case(draw, fn):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    regime = draw(st.sampled_from(sorted(REGIMES)))
    special = draw(st.sampled_from([False, False, True]))  # NaN/inf in the first input
    n = draw(BATCH)
    if fn.startswith("conv2d") or fn.startswith("sparse"):
        c, k = draw(SMALL), draw(SMALL)
        h, w = draw(DIM), draw(DIM)
        r, s = draw(st.integers(1, min(h, 6))), draw(st.integers(1, min(w, 6)))
        x = values(rng, (n, c, h, w), regime, special)
        if fn.startswith("sparse"):
            t = rng.random((c, k)) < 0.6
            wt = values(rng, (int(t.sum()), r, s), "normal", False)
            other = (
                values(rng, (n, k, h - r + 1, w - s + 1), "normal", False)
                if fn.endswith("backward")
                else values(rng, (k,), "normal", False)
            )
            return (x, wt, other, t)
        wt = values(rng, (k, c, r, s), "normal", False)
        other = (
            values(rng, (n, k, h - r + 1, w - s + 1), "normal", False)
            if fn.endswith("backward")
            else values(rng, (k,), "normal", False)
        )
        return (x, wt, other)
    if fn.startswith("subsample"):
        c = draw(SMALL)
        h, w = 2 * draw(st.integers(1, 17)), 2 * draw(st.integers(1, 17))
        x = values(rng, (n, c, h, w), regime, special)
        coef = values(rng, (c,), "normal", False)
        other = (
            values(rng, (n, c, h // 2, w // 2), "normal", False)
            if fn.endswith("backward")
            else values(rng, (c,), "normal", False)
        )
        return (x, coef, other)
    if fn.startswith("linear") or fn.startswith("rbf"):
        i, o = draw(DIM), draw(DIM)
        x = values(rng, (n, i), regime, special)
        wt = values(rng, (o, i), "normal", False)
        if fn == "rbf_forward":
            return (x, wt)
        if fn.endswith("backward"):
            return (x, wt, values(rng, (n, o), "normal", False))
        return (x, wt, values(rng, (o,), "normal", False))
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(DIM) for _ in range(ndim))
    a = values(rng, shape, regime, special)
    if fn == "squash_forward":
        return (a,)
    y = np.asarray(reference.squash_forward(values(rng, shape, "normal", False)), F32)
    if special and a.size:
        y.reshape(-1)[0] = a.reshape(-1)[0]
    return (y, a)


BILINEAR = ("conv2d", "sparse_conv2d", "linear", "subsample")


def abs_terms(fn, args):
    """The arguments whose reference output is the sum of |terms| of ``fn``'s sums: |inputs|
    for the bilinear kernels; for rbf_backward, whose terms are dy (x - c), |x|, -|c|, |dy|
    (so x - c becomes |x| + |c|). None for the kernels that are not sums of products."""
    if fn == "rbf_backward":
        x, c, dy = args
        return [np.abs(x), -np.abs(c), np.abs(dy)]
    if fn.startswith(BILINEAR):
        return [np.abs(a) if isinstance(a, np.ndarray) and a.dtype != bool else a for a in args]
    return None


def check(fn, args):
    """assert_close, with one refinement for the kernels whose outputs are sums of products
    (convolutions, linear, subsampling, the RBF's gradients): a sum that cancels (|sum| much smaller than the sum
    of |terms|, which big random values over a few thousand terms produce) is judged against
    the sum of |terms| / 10 (the reference on |inputs|), not against |sum| alone. A wrong
    term or a missed one is off by a whole term, ~ sum / (number of terms), far outside
    TOL * sum / 10 for any size a kernel sees here."""
    got = getattr(kernels, fn)(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # inf - inf, 0 * inf in the reference
        want = getattr(reference, fn)(*args)
        absargs = abs_terms(fn, args)
        bound = getattr(reference, fn)(*absargs) if absargs is not None else None
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    bound = (
        (bound if isinstance(bound, tuple) else (bound,))
        if bound is not None
        else (None,) * len(want)
    )
    shapes = [getattr(a, "shape", a) for a in args]
    for i, (g, w, b) in enumerate(zip(got, want, bound)):
        w = np.asarray(w, np.float64)
        if b is not None and w.size and np.isfinite(w).any():
            b = np.abs(np.asarray(b, np.float64))
            fin = np.isfinite(w) & np.isfinite(b)
            cond = 0.1 * float(b[fin].max()) if fin.any() else 0.0
            peak = float(np.abs(w[np.isfinite(w)]).max())
            if cond > max(1.0, peak):
                # same NaN/inf checks, finite values under TOL * cond
                assert_close(
                    fn, g, np.where(np.isfinite(w), g, w), f"output {i} NaN/inf, shapes {shapes}"
                )
                err = float(np.abs(g[fin].astype(np.float64) - w[fin]).max())
                assert err <= TOL[fn] * cond, (
                    f"{fn} output {i}: error {err:.3g} > {TOL[fn]} * {cond:.3g}, shapes {shapes}"
                )
                continue
        assert_close(fn, g, w, f"output {i}, shapes {shapes}")


def _make(fn):
    @SETTINGS
    @given(args=case(fn))
    def test(isa, args):
        check(fn, args)

    test.__name__ = f"test_{fn}_matches_the_reference"
    test.__doc__ = f"{fn}: C++ against the float64 reference on random shapes and values."
    return test


# the float32 layer kernels; normalize_digit(s) (uint8 digits): tests/data/test_image_normalize.py
for _fn in [k for k in kernels.__all__ if not k.startswith("normalize_")]:
    globals()[f"test_{_fn}_matches_the_reference"] = _make(_fn)
del _fn


# ----------------------------------------------------------------------------- the model

from lenet_fast.model import LeNet5  # noqa: E402


@settings(
    max_examples=12,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    seed=st.integers(0, 1000),
    n=st.integers(1, 4),
    options=st.sampled_from([{}, {"loss": "mse"}, {"subsample": "sum"}, {"rbf": "trainable"}]),
    regime=st.sampled_from(["digits", "normal", "zero", "nan"]),
)
def test_model_forward_and_gradients_match_the_reference_backend(isa, seed, n, options, regime):
    """LeNet5 forward and every parameter gradient, C++ kernels against the NumPy backend."""
    rng = np.random.default_rng(seed)
    fast = LeNet5(seed=seed, **options)
    ref = fast.copy()
    ref.backend = "reference"
    if regime == "digits":
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    else:
        x = values(rng, (n, 1, 32, 32), {"nan": "normal"}.get(regime, regime), False)
        if regime == "nan":  # one NaN pixel: it reaches every output through C1..F6
            x[int(rng.integers(n)), 0, int(rng.integers(32)), int(rng.integers(32))] = np.nan
    labels = rng.integers(0, 10, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        loss_f, g_f, y_f = fast.gradients(x, labels)
        loss_r, g_r, y_r = ref.gradients(x, labels)
    if regime == "nan":  # NaN in, NaN out: never an unrelated finite number
        assert np.isnan(y_f).any() and np.isnan(loss_f)
        assert all(np.isnan(g).any() for g in g_f.values())
        np.testing.assert_array_equal(np.isnan(y_f), np.isnan(y_r))
        return
    scale = max(1.0, float(np.abs(y_r).max()))
    np.testing.assert_allclose(y_f, y_r, rtol=0, atol=1e-5 * scale)
    assert abs(loss_f - loss_r) <= 1e-5 * max(1.0, abs(loss_r))
    for k in g_r:
        gs = max(1e-3, float(np.abs(g_r[k]).max()))
        np.testing.assert_allclose(g_f[k], g_r[k], rtol=0, atol=1e-4 * gs, err_msg=k)
