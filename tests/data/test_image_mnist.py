"""MNIST's normalisation redone on the real MNIST test set, with the shipped models: the
test error stays where it was for digits that are already normalised, enlarged, moved,
inverted or put on noisy paper; and real image files through predict_image."""

from __future__ import annotations

import numpy as np
import pytest

from lenet_fast import LeNet5, load_mnist
from lenet_fast.image import normalize_digits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def test_set(mnist_dir):
    return load_mnist(mnist_dir)[2:]


@pytest.fixture(scope="module", params=["mnist", "mnist-distorted"])
def shipped(request) -> LeNet5:
    return LeNet5.pretrained(request.param)


def _kron(x: np.ndarray, k: int) -> np.ndarray:
    return np.kron(x, np.ones((1, k, k), np.uint8))


def _canvas(x: np.ndarray, size: int, at: tuple[int, int]) -> np.ndarray:
    out = np.zeros((len(x), size, size), np.uint8)
    out[:, at[0] : at[0] + x.shape[1], at[1] : at[1] + x.shape[2]] = x
    return out


def _error(model: LeNet5, raw, labels) -> float:
    digits, ink = normalize_digits(raw)
    pred = model.predict(digits)
    pred[~ink] = -1
    return float(np.mean(pred != labels))


def test_renormalised_test_set_keeps_its_error(shipped, test_set):
    x, y = test_set
    base = float(np.mean(shipped.predict(x) != y))
    assert abs(_error(shipped, x, y) - base) <= 0.001


@pytest.mark.parametrize(
    "transform",
    [
        lambda x: _kron(x, 2),
        lambda x: _kron(x, 3),
        lambda x: _canvas(x, 64, (5, 29)),  # shifted, on a larger canvas
        lambda x: 255 - x,  # dark ink on white
        lambda x: 255 - _canvas(_kron(x, 3), 120, (7, 30)),
    ],
    ids=["scaled-2x", "scaled-3x", "shifted-on-canvas", "inverted", "all-at-once"],
)
def test_transformed_test_set_keeps_its_error(shipped, test_set, transform):
    x, y = test_set
    base = float(np.mean(shipped.predict(x) != y))
    assert abs(_error(shipped, transform(x), y) - base) <= 0.003


def test_noise_on_the_paper_is_not_ink(shipped, test_set):
    """A scan's paper is not a flat level: its noise must not widen the ink's box."""
    x, y = test_set
    x, y = x[:2000], y[:2000]
    page = _canvas(_kron(x, 3), 120, (7, 30)).astype(np.float64)
    noisy = np.clip(
        225 - 190 / 255 * page + np.random.default_rng(0).normal(0, 3, page.shape), 0, 255
    )
    base = float(np.mean(shipped.predict(x) != y))
    assert _error(shipped, noisy.astype(np.uint8), y) <= base + 0.003


def test_predict_image_reads_real_files(shipped, test_set, tmp_path):
    from PIL import Image

    x, y = test_set
    files = []
    for i in range(20):
        page = 255 - _canvas(_kron(x[i : i + 1], 4), 150, (10, 20))[0]
        f = tmp_path / f"d{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(page).convert("RGB").save(f)
        files.append(f)
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((50, 50), 240, np.uint8)).save(blank)
    got = shipped.predict_image([*files, blank])
    want = shipped.predict(x[:20])
    assert np.mean(got[:20] == want) >= 0.95
    assert got[20] == -1  # no ink: an explicit refusal, never a random digit
    assert shipped.predict_image(files[0]) == got[0]
    assert shipped.predict_image(str(blank), reject=None) == -1
