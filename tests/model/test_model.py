"""The LeNet5 model: the paper's parameter counts and initialisation, its full backward
against central differences, the Hessian diagonal against hand-derived formulas, the C++
backend against the reference, and the checkpoint file format."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from lenet_fast import LeNet5, layout, tables
from lenet_fast.layout import PARAM_SHAPES, RBF_PARAM
from lenet_fast.train import apply_update, sdlm_steps

A, S = 1.7159, 2.0 / 3.0


def inputs(n, seed=0, dtype=np.float32):
    """Preprocessed-looking input in [-0.1, 1.175], (n,1,32,32)."""
    rng = np.random.default_rng(seed)
    return (-0.1 + 1.275 * rng.random((n, 1, 32, 32))).astype(dtype)


def test_parameter_counts_are_the_layouts():
    """The model counts what it holds; tests/network/test_layout.py holds the layout's counts
    to the paper's."""
    m = LeNet5()
    assert m.num_parameters() == layout.count_parameters()
    assert sum(a.size for a in m.params.values()) == 60000
    t = LeNet5(rbf="trainable")
    assert t.num_parameters() == layout.count_parameters(trainable_centres=True)
    assert sum(a.size for a in t.params.values()) == 60840


@pytest.mark.parametrize("subsample", ["sum", "mean"])
def test_initialisation_ranges_follow_appendix_a(subsample):
    m = LeNet5(seed=3, subsample=subsample)
    fan = {"c1": 25, "s2": 4, "s4": 4, "c5": 400, "f6": 120}
    for name, a in m.params.items():
        assert a.dtype == np.float32 and a.shape == PARAM_SHAPES[name]
        layer = name.split(".")[0]
        if layer == "c3":
            continue
        bound = 2.4 / fan[layer]
        if name.endswith(".coef") and subsample == "mean":
            bound *= 4  # the coefficient of the mean is 4x that of the sum
        assert np.abs(a).max() <= bound
        if a.size >= 100:  # fills its range (a uniform draw of >= 100 values)
            assert np.abs(a).max() > 0.9 * bound
    # C3: per-map fan-in 75, 100 or 150; kernels packed by output map
    per_map = 25 * np.asarray(tables.C3_TABLE).sum(axis=0)
    assert sorted(set(per_map.tolist())) == [75, 100, 150]
    w = m.params["c3.w"]
    t0 = 0
    for k, f in enumerate(per_map):
        nk = f // 25
        assert np.abs(w[t0 : t0 + nk]).max() <= 2.4 / f
        assert np.abs(m.params["c3.b"][k]) <= 2.4 / f
        t0 += nk
    # same seed, same weights; another seed, other weights
    assert all(
        np.array_equal(a, LeNet5(seed=3, subsample=subsample).params[k])
        for k, a in m.params.items()
    )
    assert not np.array_equal(m.params["c5.w"], LeNet5(seed=4, subsample=subsample).params["c5.w"])


def test_forward_predict_and_input_forms():
    m = LeNet5()
    x = inputs(5)
    y = m.forward(x)
    assert y.shape == (5, 10) and y.dtype == np.float32 and np.all(y >= 0)
    np.testing.assert_array_equal(m.predict(x), y.argmin(axis=1))
    digits = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    from lenet_fast.mnist import preprocess

    np.testing.assert_array_equal(m.forward(digits), m.forward(preprocess(digits)))
    assert m.predict(digits[0]).shape == (1,)
    # more input forms: tests/model/test_inputs.py
    np.testing.assert_array_equal(m.forward(x.astype(np.float64)), y)
    with pytest.raises(TypeError, match="^x: expected"):
        m.forward(x.tolist())
    with pytest.raises(ValueError, match="^x: expected digits shaped"):
        m.forward(x[:, 0])


def test_forward_matches_the_reference_backend():
    x = inputs(6)
    fast, ref = LeNet5(seed=2), LeNet5(seed=2, backend="reference")
    np.testing.assert_allclose(fast.forward(x), ref.forward(x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(dict(loss="mse"), id="mse", marks=pytest.mark.slow),
        pytest.param(dict(loss="map"), id="map"),
        pytest.param(dict(subsample="mean"), id="mean-subsampling", marks=pytest.mark.slow),
        pytest.param(
            dict(rbf="trainable", loss="map", map_j=3.0), id="trainable-rbf", marks=pytest.mark.slow
        ),
    ],
)
def test_full_backward_against_central_differences(options):
    """Every parameter's gradient of the loss, in float64 on the reference backend, against
    central differences of the loss (a sample of entries of every parameter array)."""
    m = LeNet5(seed=1, backend="reference", **options).astype(np.float64)
    rng = np.random.default_rng(0)
    x = inputs(3, seed=5, dtype=np.float64)
    labels = np.array([3, 7, 0])
    loss, grads, _ = m.gradients(x, labels)
    assert set(grads) == set(m.params)
    step = 1e-6
    for name, p in m.params.items():
        flat = p.reshape(-1)
        for i in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            old = flat[i]
            flat[i] = old + step
            up = m.gradients(x, labels)[0]
            flat[i] = old - step
            down = m.gradients(x, labels)[0]
            flat[i] = old
            numeric = (up - down) / (2 * step)
            analytic = grads[name].reshape(-1)[i]
            assert abs(numeric - analytic) <= 1e-6 + 1e-5 * abs(numeric), (
                name,
                i,
                numeric,
                analytic,
            )


def test_hessian_diagonal_last_layers_by_hand():
    """F6 and C5 entries of the Gauss-Newton diagonal, computed independently in NumPy
    from the paper's rules: d2E/da^2 = f'(a)^2 sum_k w_k^2 d2E/da_k^2, d2E/dw^2 = d2E/da^2 x^2,
    with d2E/dx^2 = 2 at the RBF (mse loss)."""
    m = LeNet5(seed=4, backend="reference", loss="mse", loss_scale=1.0).astype(np.float64)
    x = inputs(4, seed=2, dtype=np.float64)
    labels = np.array([1, 2, 3, 4])
    h = m.hessian_diagonal(x, labels)
    assert all(np.all(v >= 0) for v in h.values())
    _, (x0, h1, h2, h3, h4, h5, h6) = m._forward(x)
    fp = lambda y: (S / A) * (A * A - y * y)
    ha6 = fp(h6) ** 2 * 2.0  # (N,84)
    np.testing.assert_allclose(
        h["f6.w"], (ha6[:, :, None] * h5[:, None, :] ** 2).mean(axis=0), rtol=1e-10
    )
    np.testing.assert_allclose(h["f6.b"], ha6.mean(axis=0), rtol=1e-10)
    ha5 = fp(h5) ** 2 * (ha6 @ m.params["f6.w"] ** 2)  # (N,120)
    np.testing.assert_allclose(h["c5.b"], ha5.mean(axis=0), rtol=1e-10)
    x5 = h4.reshape(4, 400)
    np.testing.assert_allclose(
        h["c5.w"].reshape(120, 400),
        (ha5[:, :, None] * x5[:, None, :] ** 2).mean(axis=0),
        rtol=1e-10,
    )


def test_cpp_backend_matches_reference_after_one_sdlm_step():
    """Gradients, Hessian diagonal and one SDLM update, parameter by parameter: the C++
    backend against the NumPy reference, both in float32 storage."""
    fast, ref = LeNet5(seed=7), LeNet5(seed=7, backend="reference")
    x = inputs(8, seed=3)
    labels = np.arange(8) % 10
    hf, hr = fast.hessian_diagonal(x, labels), ref.hessian_diagonal(x, labels)
    for name in hf:
        np.testing.assert_allclose(
            hf[name], hr[name], rtol=1e-4, atol=1e-6 * np.abs(hr[name]).max(), err_msg=name
        )
    for m, hd in ((fast, hf), (ref, hr)):
        _, g, _ = m.gradients(x[:1], labels[:1])
        apply_update(m.params, sdlm_steps(hd, 5e-4, 0.02), g)
    for name in fast.params:
        np.testing.assert_allclose(
            fast.params[name], ref.params[name], rtol=1e-5, atol=1e-6, err_msg=name
        )


def test_map_loss_value_and_gradient():
    m = LeNet5(loss="map", map_j=5.0, loss_scale=1.0)
    y = np.array([[1.0, 50.0, 3.0, 80, 80, 80, 80, 80, 80, 80]], np.float32)
    loss, g = m.loss_gradient(y, np.array([2]))
    z = np.exp(-5.0) + np.exp(-y.astype(np.float64)).sum()
    assert loss == pytest.approx(3.0 + np.log(z), rel=1e-6)
    p = np.exp(-y[0].astype(np.float64)) / z
    want = -p
    want[2] += 1
    np.testing.assert_allclose(g[0], want, rtol=1e-5, atol=1e-7)
    # the max-shift keeps huge penalties finite
    loss2, g2 = m.loss_gradient(np.full((1, 10), 1e4, np.float32), np.array([0]))
    assert np.isfinite(loss2) and np.all(np.isfinite(g2))
    # loss_scale multiplies both
    m3 = LeNet5(loss="map", map_j=5.0, loss_scale=0.5)
    loss3, g3 = m3.loss_gradient(y, np.array([2]))
    assert loss3 == pytest.approx(0.5 * loss, rel=1e-6)
    np.testing.assert_allclose(g3, 0.5 * g, rtol=1e-6)


def test_options_are_checked():
    for kw, msg in [
        (dict(loss="l2"), "loss: expected one of 'mse', 'map'"),
        (dict(rbf="learned"), "rbf: expected"),
        (dict(subsample="max"), "subsample: expected"),
        (dict(backend="gpu"), "backend: expected"),
        (dict(map_j=0), "map_j: expected"),
        (dict(codes=np.ones((10, 83))), "codes: expected"),
    ]:
        with pytest.raises(ValueError, match=msg):
            LeNet5(**kw)
    with pytest.raises(TypeError, match="seed: expected an int"):
        LeNet5(seed=1.5)
    m = LeNet5()
    with pytest.raises(ValueError, match=r"labels: expected digits 0..9"):
        m.gradients(inputs(2), np.array([1, 10]))
    with pytest.raises(ValueError, match=r"labels: expected integers of shape \(2,\)"):
        m.gradients(inputs(2), np.array([1]))


def test_mean_subsampling_is_the_same_function_as_sum():
    """'mean' with coefficient 4c computes what 'sum' computes with c."""
    s, mn = LeNet5(seed=5, subsample="sum"), LeNet5(seed=5, subsample="mean")
    mn.params = {k: v.copy() for k, v in s.params.items()}
    mn.params["s2.coef"] = 4 * s.params["s2.coef"]
    mn.params["s4.coef"] = 4 * s.params["s4.coef"]
    x = inputs(3)
    np.testing.assert_allclose(mn.forward(x), s.forward(x), rtol=1e-6)


# ---------------------------------------------------------------------- files


def test_save_load_round_trip(tmp_path):
    m = LeNet5(seed=9, loss="map", map_j=4.0, rbf="trainable")
    m.params[RBF_PARAM] += 0.5
    path = m.save(
        tmp_path / "m.npz", history=[{"pass": 1, "test_error": 0.5}], train_state={"pass": 1}
    )
    back = LeNet5.load(path)
    assert back.options == m.options
    assert back.history == [{"pass": 1, "test_error": 0.5}] and back.train_state == {"pass": 1}
    for k in m.params:
        np.testing.assert_array_equal(back.params[k], m.params[k])
    x = inputs(2)
    np.testing.assert_array_equal(back.forward(x), m.forward(x))
    # the file is a plain zip of .npy arrays: no pickle anywhere
    with zipfile.ZipFile(path) as z:
        assert all(n.endswith(".npy") for n in z.namelist())
    assert list(tmp_path.iterdir()) == [path]  # no temporary left


def test_damaged_and_foreign_files_are_rejected(tmp_path):
    path = LeNet5().save(tmp_path / "m.npz")
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="trunc.npz: not a readable lenet_fast model file"):
        LeNet5.load(tmp_path / "trunc.npz")
    # flip one bit in the middle of the C5 weights' bytes
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x10
    (tmp_path / "flip.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="flip.npz"):
        LeNet5.load(tmp_path / "flip.npz")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a lenet_fast model file"):
        LeNet5.load(tmp_path / "foreign.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="not a readable lenet_fast model file"):
        LeNet5.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError, match="no such model file"):
        LeNet5.load(tmp_path / "missing.npz")


def test_other_format_version_is_rejected(tmp_path, monkeypatch):
    import lenet_fast.checkpoint as mod

    monkeypatch.setattr(mod, "FORMAT_VERSION", 99)
    path = LeNet5().save(tmp_path / "future.npz")
    monkeypatch.setattr(mod, "FORMAT_VERSION", 2)
    with pytest.raises(
        ValueError, match="format version 99; this lenet_fast reads versions 1 to 2"
    ):
        LeNet5.load(path)


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    first = LeNet5(seed=1)
    first.save(path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="simulated"):
        LeNet5(seed=2).save(path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]
    np.testing.assert_array_equal(LeNet5.load(path).params["c1.w"], first.params["c1.w"])


def test_centres_are_the_codes_or_the_trained_parameter():
    fixed = LeNet5(seed=0)
    np.testing.assert_array_equal(fixed.centres, tables.RBF_CODES)
    assert fixed.centres.dtype == np.float32 and fixed.centres is not fixed.codes
    trained = LeNet5(seed=0, rbf="trainable")
    assert trained.centres is trained.params[RBF_PARAM]
    with pytest.raises(AttributeError):
        fixed.centres = tables.RBF_CODES  # type: ignore[misc]
