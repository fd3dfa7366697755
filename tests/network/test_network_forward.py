"""The fused C++ forward (_core.network_forward, behind LeNet5.forward and predict with the
fast backend) against the layer-by-layer kernel calls of LeNet5._forward (the same
micro-kernels in the same order on each image: the same bits), against the NumPy reference
backend, across thread counts, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import moved_model
from lenet_fast import _core, tables
from lenet_fast.layout import PARAM_SHAPES
from lenet_fast.model import LeNet5

CONFIGS = [
    {"subsample": "mean"},
    {"subsample": "sum"},
    {"subsample": "mean", "rbf": "trainable"},
]


def cid(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items())


def inputs(n: int, seed: int = 0) -> np.ndarray:
    """Preprocessed-like input (N,1,32,32) in [-0.1, 1.175], a few pixels far outside."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.1, 1.175, (n, 1, 32, 32)).astype(np.float32)
    if n:
        x.reshape(-1)[::97] *= 4.0
    return x


model = moved_model


def call(m: LeNet5, x: np.ndarray) -> np.ndarray:
    return _core.network_forward(
        {k: m.params[k] for k in PARAM_SHAPES},
        m.centres,
        x,
        tables.C3_TABLE,
        m.options["subsample"],
    )


@pytest.mark.parametrize("config", CONFIGS, ids=cid)
# 5, 8, 12, 64: blocks of 8 images, and a last block of 5 (C1 .. S4 in lanes, KernelTable::convs8)
# and of 4 (image by image)
@pytest.mark.parametrize("n", [0, 1, 3, 5, 8, 12, 13, 64])
def test_same_bits_as_the_layer_by_layer_kernels(isa, config, n):
    m, x = model(config), inputs(n)
    want = m._forward(x)[0]
    got = m.forward(x)
    assert got.dtype == np.float32 and got.shape == (n, 10)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(call(m, x), want)
    if n:
        np.testing.assert_array_equal(m.predict(x, batch_size=2), want.argmin(axis=1))


@pytest.mark.parametrize("config", CONFIGS, ids=cid)
def test_matches_the_reference_backend(isa, config):
    m, x = model(config), inputs(16, seed=1)
    ref = m.copy()
    ref.backend = "reference"
    want = ref.astype(np.float64).forward(x.astype(np.float64))
    got = m.forward(x)
    # float32 through seven layers against float64: the per-kernel tolerances, compounded
    scale = max(1.0, float(np.abs(want).max()))
    assert float(np.abs(got - want).max()) <= 2e-5 * scale


def test_uint8_digits_and_predict(isa):
    m = model({"subsample": "mean"})
    digits = np.random.default_rng(5).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    x = m.prepare(digits)
    np.testing.assert_array_equal(m.forward(digits), m._forward(x)[0])
    np.testing.assert_array_equal(m.predict(digits), m._forward(x)[0].argmin(axis=1))


def test_nan_propagates():
    m, x = model({"subsample": "mean"}), inputs(3)
    x[1, 0, 5, 5] = np.nan
    y = m.forward(x)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    np.testing.assert_array_equal(y, m._forward(x)[0])


def test_argument_errors():
    m, x = model({"subsample": "mean"}), inputs(2)
    p = {k: m.params[k] for k in PARAM_SHAPES}
    c, t = m.centres, tables.C3_TABLE
    with pytest.raises(ValueError, match="x: expected \\(N,1,32,32\\)"):
        _core.network_forward(p, c, np.zeros((2, 1, 28, 28), np.float32), t, "mean")
    with pytest.raises(TypeError, match="x: expected"):
        _core.network_forward(p, c, x.astype(np.float64), t, "mean")
    with pytest.raises(TypeError, match="x: expected a numpy.ndarray"):
        _core.network_forward(p, c, x.tolist(), t, "mean")
    with pytest.raises(ValueError, match="x: expected a C-contiguous"):
        _core.network_forward(p, c, np.zeros((2, 1, 32, 64), np.float32)[..., ::2], t, "mean")
    with pytest.raises(ValueError, match="subsample: expected 'sum' or 'mean'"):
        _core.network_forward(p, c, x, t, "max")
    with pytest.raises(ValueError, match="centres: expected \\(10,84\\)"):
        _core.network_forward(p, c[:9], x, t, "mean")
    with pytest.raises(ValueError, match="missing 'f6.b'"):
        _core.network_forward({k: v for k, v in p.items() if k != "f6.b"}, c, x, t, "mean")
    with pytest.raises(ValueError, match="unexpected key 'rbf.c'"):
        _core.network_forward({**p, "rbf.c": c}, c, x, t, "mean")
    with pytest.raises(TypeError, match="params: expected a dict"):
        _core.network_forward(list(p.values()), c, x, t, "mean")
    with pytest.raises(ValueError, match="c5.w'\\]: expected \\(120,16,5,5\\)"):
        _core.network_forward({**p, "c5.w": p["c5.w"][:60]}, c, x, t, "mean")
    with pytest.raises(TypeError, match="f6.w'\\]: expected"):
        _core.network_forward({**p, "f6.w": p["f6.w"].astype(np.float64)}, c, x, t, "mean")
    with pytest.raises(ValueError, match="table: expected"):
        _core.network_forward(p, c, x, t[:, :8], "mean")
    # a table with another number of connections needs c3.w of that many kernels
    t2 = t.copy()
    t2[0, 0] = not t2[0, 0]
    with pytest.raises(ValueError, match="c3.w'\\]: expected"):
        _core.network_forward(p, c, x, t2, "mean")
    # the model casts floating-point preprocessed input; the C++ takes float32 only (above)
    np.testing.assert_array_equal(m.forward(x.astype(np.float64)), m.forward(x))
