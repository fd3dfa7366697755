"""The input forms LeNet5 takes, and its confidence: Eq. 9's posterior, the margin and the
rejection rules, against computations made here from the penalties."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import moved_model, synthetic_digits
from lenet_fast import LeNet5, preprocess
from lenet_fast.train import reject_curve


@pytest.fixture(scope="module")
def model() -> LeNet5:
    return moved_model({})


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return synthetic_digits(40, seed=1)[0]


def test_every_digit_shape_gives_the_penalties_of_n_28_28_bytes(model, digits):
    want = model.forward(digits)
    n = len(digits)
    assert np.array_equal(model.forward(digits.reshape(n, 784)), want)
    assert np.array_equal(model.forward(digits.reshape(n, 1, 28, 28)), want)
    assert np.array_equal(model.forward(digits[3]), want[3:4])
    assert np.array_equal(model.forward(preprocess(digits)), want)
    assert np.array_equal(model.forward(preprocess(digits).astype(np.float64)), want)
    assert np.array_equal(model.forward(digits.astype(np.int64)), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 255.0])
def test_floating_point_pixels_in_a_stated_range(model, digits, dtype, scale):
    want = model.forward(digits)
    x = (digits.astype(np.float64) * (scale / 255)).astype(dtype)
    got = model.forward(x, pixel_max=scale) if scale != 1.0 else model.forward(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
    flat = model.predict(x.reshape(len(x), 784), pixel_max=scale)
    assert np.array_equal(flat, want.argmin(axis=1))


def test_the_range_of_floats_can_be_stated_once_on_the_model(digits):
    m = moved_model({})
    m.pixel_max = 255.0
    np.testing.assert_allclose(m.forward(digits.astype(np.float32)), m.forward(digits), atol=1e-3)


def test_out_of_range_floats_say_how_to_state_the_range(model, digits):
    with pytest.raises(
        ValueError, match=r"^x: pixel values in \[0, 255\], outside \[0, 1\].*pixel_max"
    ):
        model.forward(digits.astype(np.float32))
    with pytest.raises(ValueError, match="^x: pixel values"):
        model.forward(-digits.astype(np.float32) / 255)
    with pytest.raises(ValueError, match="^x: pixel values"):
        model.forward(digits.astype(np.int64) * 2)  # bytes above 255
    with pytest.raises(ValueError, match="^x: NaN"):
        model.forward(np.full((1, 28, 28), np.nan))


def test_bad_shapes_and_types_name_x(model, digits):
    with pytest.raises(ValueError, match=r"^x: .*got shape \(784,\).*reshape\(1, 784\)"):
        model.forward(digits[0].reshape(784))
    with pytest.raises(ValueError, match=r"^x: expected digits shaped"):
        model.forward(np.zeros((2, 30, 30), np.uint8))
    with pytest.raises(ValueError, match=r"^x: expected digits shaped"):
        model.forward(np.zeros((2, 1, 32, 32), np.uint8))  # 32x32 bytes are not an input
    with pytest.raises(TypeError, match="^x: expected uint8 or floating-point"):
        model.forward(np.zeros((2, 28, 28), bool))
    with pytest.raises(TypeError, match="^x: expected a numpy array"):
        model.forward(digits.tolist())
    with pytest.raises(ValueError, match="^pixel_max: .*preprocessed"):
        model.forward(preprocess(digits), pixel_max=1.0)
    with pytest.raises(ValueError, match="^pixel_max"):
        model.forward(digits.astype(np.float32), pixel_max=0)


def test_no_input_gives_empty_results(model):
    x = np.zeros((0, 28, 28), np.uint8)
    assert model.forward(x).shape == (0, 10)
    assert model.predict(x, reject=3.0).shape == (0,)
    assert model.predict_proba(x, rubbish=True).shape == (0, 11)
    assert model.margin(x).shape == (0,)


def test_forward_does_not_depend_on_the_batch_size(model, digits):
    assert np.array_equal(model.forward(digits, batch_size=7), model.forward(digits))


def test_posterior_is_eq9_computed_from_the_penalties(model, digits):
    y = model.forward(digits).astype(np.float64)
    j = model.options["map_j"]
    z = np.exp(-j) + np.exp(-y).sum(axis=1, keepdims=True)  # direct, no shift: y is small here
    p = model.predict_proba(digits)
    np.testing.assert_allclose(p, np.exp(-y) / z, rtol=1e-12)
    p11 = model.predict_proba(digits, rubbish=True)
    np.testing.assert_allclose(p11[:, 10], np.exp(-j) / z[:, 0], rtol=1e-12)
    np.testing.assert_allclose(p11.sum(axis=1), 1.0, rtol=1e-12)
    assert np.all(p.sum(axis=1) < 1)


def test_posterior_survives_huge_penalties(model):
    y = np.array([[800.0, 801.0] + [900.0] * 8], np.float32)
    from lenet_fast.model import _rubbish_posterior

    p = _rubbish_posterior(y, 5.0)
    assert np.all(np.isfinite(p)) and p[0, 10] == pytest.approx(1.0)
    q = _rubbish_posterior(y, 1000.0)
    assert q[0, 0] == pytest.approx(1 / (1 + np.exp(-1.0)))


def test_decision_function_and_margin(model, digits):
    y = model.forward(digits)
    assert np.array_equal(model.decision_function(digits), -y)
    s = np.sort(y, axis=1)
    assert np.array_equal(model.margin(digits), s[:, 1] - s[:, 0])


def test_reject_with_a_margin_threshold(model, digits):
    m = model.margin(digits)
    t = float(np.median(m))
    pred = model.predict(digits, reject=t)
    assert np.array_equal(pred < 0, m < t)
    assert np.array_equal(pred[m >= t], model.predict(digits)[m >= t])
    assert np.array_equal(model.predict(digits, reject="off"), model.predict(digits))
    c = model.classify(digits, reject=t)
    assert np.array_equal(c["digit"], pred) and np.array_equal(c["rejected"], m < t)


def test_reject_auto_needs_thresholds_and_calibration_sets_them(digits):
    m = moved_model({})
    with pytest.raises(ValueError, match="^reject: 'auto' uses the thresholds"):
        m.predict(digits, reject="auto")
    tm, tp = m.calibrate_reject(digits, fraction=0.1)
    y = m.forward(digits)
    assert np.mean(m.margin(digits) < tm) == pytest.approx(0.1, abs=1 / len(digits))
    assert np.mean(y.min(axis=1) > tp) == pytest.approx(0.1, abs=1 / len(digits))
    pred = m.predict(digits, reject="auto")
    assert np.array_equal(pred < 0, (m.margin(digits) < tm) | (y.min(axis=1) > tp))


@pytest.mark.parametrize("bad", ["maybe", -1.0, float("nan"), True, [1.0]])
def test_bad_reject_names_reject(model, digits, bad):
    with pytest.raises((TypeError, ValueError), match="^reject: expected"):
        model.predict(digits, reject=bad)


def test_reject_curve_against_counting():
    rng = np.random.default_rng(0)
    scores = rng.random(500)
    wrong = rng.random(500) < 0.4 * (1 - scores)  # low scores are wrong more often
    curve = reject_curve(scores, wrong)
    order = np.argsort(scores)
    for k in (0, 1, 50, 250, 499, 500):
        rest = np.ones(500, bool)
        rest[order[:k]] = False
        want = wrong[rest].mean() if rest.any() else 0.0
        assert curve["error"][k] == pytest.approx(want)
        assert curve["reject"][k] == k / 500
    k = round(curve["reject_for_target"] * 500)
    assert curve["error"][k] <= 0.005 and (k == 0 or curve["error"][k - 1] > 0.005)
