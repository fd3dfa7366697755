"""The fused C++ forward and backward (_core.network_gradients, behind LeNet5.gradients with
the fast backend, so behind SGD training and the Python SDLM loop) against the NumPy
reference backend (float64 inside), against the fused forward, across thread counts, from
several Python threads, and its argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import moved_model
from lenet_fast import _core, tables
from lenet_fast.layout import PARAM_SHAPES, RBF_PARAM
from lenet_fast.model import LeNet5

CONFIGS = [
    {"subsample": "mean"},
    {"subsample": "sum", "loss": "mse"},
    {"subsample": "mean", "rbf": "trainable", "map_j": 2.0},
]


def cid(c: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in c.items())


def inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed-like input (N,1,32,32) in [-0.1, 1.175] and random labels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.1, 1.175, (n, 1, 32, 32)).astype(np.float32)
    return x, rng.integers(0, 10, n)


model = moved_model


def call(m: LeNet5, x: np.ndarray, labels, **change):
    args = {
        "params": {k: m.params[k] for k in PARAM_SHAPES},
        "centres": m.centres,
        "x": x,
        "labels": labels,
        "table": tables.C3_TABLE,
        "loss": m.options["loss"],
        "loss_scale": m.options["loss_scale"],
        "map_j": m.options["map_j"],
        "subsample": m.options["subsample"],
        "train_centres": RBF_PARAM in m.params,
    }
    args.update(change)
    return _core.network_gradients(**args)


@pytest.mark.parametrize("config", CONFIGS, ids=cid)
@pytest.mark.parametrize("n", [1, 3, 8, 9, 37])
def test_matches_the_reference_backend(isa, config, n):
    # n spans one partial block, whole blocks and a tail block of 8 images
    m = model(config)
    x, lab = inputs(n, seed=n)
    ref = m.copy()
    ref.backend = "reference"
    ref = ref.astype(np.float64)
    want_loss, want, want_y = ref.gradients(x.astype(np.float64), lab)
    loss, got, y = m.gradients(x, lab)
    assert sorted(got) == sorted(want)
    for name, w in want.items():
        g = got[name]
        assert g.dtype == np.float32 and g.shape == w.shape, name
        # float32 through seven layers and back against float64: the per-kernel
        # tolerances, compounded, relative to the largest gradient of the array
        scale = float(np.abs(w).max())
        assert float(np.abs(g - w).max()) <= 2e-5 * scale, name
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(y, want_y, rtol=0, atol=2e-5 * float(np.abs(want_y).max()))


@pytest.mark.parametrize("config", CONFIGS, ids=cid)
def test_penalties_and_errors_are_the_fused_forwards(isa, config):
    m = model(config)
    x, lab = inputs(21, seed=4)
    loss_sum, errors, _, y = call(m, x, lab)
    np.testing.assert_array_equal(y, m.forward(x))
    assert errors == int((y.argmin(axis=1) != lab).sum())
    assert loss_sum / 21 == pytest.approx(m.loss_gradient(y, lab)[0], rel=1e-12)


def test_one_pattern_matches_the_layer_by_layer_kernels(isa):
    # batch 1: the per-layer kernels (LeNet5._forward / _backward) sum in other orders, so
    # the bits differ; the values agree to float32 rounding
    m = model({"subsample": "mean"})
    x, lab = inputs(1, seed=7)
    _, got, _ = m.gradients(x, lab)
    y, cache = m._forward(x)
    want = m._backward(cache, m.loss_gradient(y, lab)[1])
    for name, w in want.items():
        np.testing.assert_allclose(
            got[name], w, rtol=0, atol=1e-5 * float(np.abs(w).max()), err_msg=name
        )


def test_nan_input_gives_nan_gradients_where_the_reference_does():
    m = model({"subsample": "mean"})
    x, lab = inputs(3)
    x[1, 0, 9, 9] = np.nan
    loss, g, y = m.gradients(x, lab)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    assert np.isnan(loss)
    ref = m.copy()
    ref.backend = "reference"
    _, want, _ = ref.gradients(x, lab)
    for name in want:
        np.testing.assert_array_equal(np.isnan(g[name]), np.isnan(want[name]), err_msg=name)


def test_argument_errors():
    m = model({"subsample": "mean"})
    x, lab = inputs(2)
    with pytest.raises(ValueError, match="x: gradients of the mean loss need at least one"):
        call(m, x[:0], lab[:0])
    with pytest.raises(ValueError, match="x: expected \\(N,1,32,32\\)"):
        call(m, np.zeros((2, 1, 28, 28), np.float32), lab)
    with pytest.raises(TypeError, match="x: expected"):
        call(m, x.astype(np.float64), lab)
    with pytest.raises(ValueError, match="labels: expected values in 0..9"):
        call(m, x, np.array([3, 10]))
    with pytest.raises(ValueError, match="labels: expected \\(2,\\) integers"):
        call(m, x, np.array([3]))
    with pytest.raises(TypeError, match="labels: expected"):
        call(m, x, np.array([3.0, 1.0]))
    with pytest.raises(ValueError, match="loss: expected 'mse' or 'map'"):
        call(m, x, lab, loss="nll")
    with pytest.raises(ValueError, match="subsample: expected 'sum' or 'mean'"):
        call(m, x, lab, subsample="max")
    with pytest.raises(ValueError, match="loss_scale: expected a finite number > 0"):
        call(m, x, lab, loss_scale=float("nan"))
    with pytest.raises(ValueError, match="map_j: expected a finite number > 0"):
        call(m, x, lab, map_j=0.0)
    with pytest.raises(ValueError, match="centres: expected \\(10,84\\)"):
        call(m, x, lab, centres=m.centres[:9])
    p = {k: m.params[k] for k in PARAM_SHAPES if k != "f6.b"}
    with pytest.raises(ValueError, match="missing 'f6.b'"):
        call(m, x, lab, params=p)
    with pytest.raises(ValueError, match="table: expected"):
        call(m, x, lab, table=tables.C3_TABLE[:5])
    # the model's own checks come first, with the model's words
    with pytest.raises(ValueError, match="labels: expected digits 0..9"):
        m.gradients(x, np.array([0, 11]))
    with pytest.raises(ValueError, match="x: gradients of the mean loss need at least one"):
        m.gradients(x[:0], lab[:0])
