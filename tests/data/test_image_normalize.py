"""lenet_fast.image: a raw digit into MNIST's format (paper III-A, QMNIST's reconstruction).

The C++ kernel against its NumPy twin (the same bytes, no tolerance), then properties on
the real MNIST test digits (``$LENET_FAST_DATA``): a digit comes back as it is, and scaled,
padded, inverted or float copies of it come back close to it.
"""

from __future__ import annotations

import numpy as np
import pytest

import lenet_fast
from lenet_fast import image, kernels, reference
from lenet_fast.image import NoInkError


@pytest.fixture(scope="module")
def test_digits(mnist_dir):
    return lenet_fast.load_mnist(mnist_dir)[2]


def random_image(rng: np.random.Generator, h: int, w: int, dtype, dark_on_light: bool):
    """A few random strokes (blobs of random grey) on a noisy background."""
    full = {np.uint8: 255.0, np.uint16: 65535.0}.get(dtype, 1.0)
    ink = np.zeros((h, w))
    for _ in range(int(rng.integers(1, 4))):
        r0, c0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        r1, c1 = int(rng.integers(r0, h)) + 1, int(rng.integers(c0, w)) + 1
        ink[r0:r1, c0:c1] = np.maximum(ink[r0:r1, c0:c1], rng.random((r1 - r0, c1 - c0)))
    if rng.random() < 0.5:
        ink *= rng.random((h, w)) < 0.7  # holes
    bg = 0.1 * rng.random() * (rng.random((h, w)) < 0.3)  # some background noise
    x = np.clip(bg + ink * (1 - bg), 0, 1)
    if dark_on_light:
        x = 1 - x
    if dtype in (np.uint8, np.uint16):
        return np.round(x * full).astype(dtype)
    return x.astype(dtype)


def both(img, invert="auto", pixel_max=None):
    """(fast, reference) results: arrays, or the NoInkError message."""
    out = []
    for mod in (kernels, reference):
        try:
            out.append(mod.normalize_digit(img, invert, pixel_max=pixel_max))
        except NoInkError as e:
            out.append(str(e))
    return out


SIZES = [(1, 1), (1, 7), (7, 1), (2, 2), (3, 5), (9, 9), (19, 21), (20, 20), (28, 28), (33, 17)]
SIZES += [(40, 41), (64, 64), (77, 130), (128, 128), (300, 200)]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64])
def test_fast_matches_the_reference_exactly(dtype):
    rng = np.random.default_rng(8)
    n = 0
    for h, w in SIZES:
        for _ in range(6):
            img = random_image(rng, h, w, dtype, bool(rng.random() < 0.5))
            invert = ["auto", True, False][int(rng.integers(3))]
            fast, ref = both(img, invert)
            if isinstance(ref, str):
                assert fast == ref, (h, w, invert)
                continue
            n += 1
            assert fast.dtype == np.uint8 and fast.shape == (28, 28)
            np.testing.assert_array_equal(fast, ref, err_msg=f"{dtype} {h}x{w} invert={invert}")
    assert n > 50


def test_every_digit_of_mnist_matches_the_reference(test_digits):
    sample = test_digits[::10]
    fast, ink = image.normalize_digits(sample)
    ref, ink_r = image.normalize_digits(sample, backend="reference")
    assert ink.all() and ink_r.all()
    np.testing.assert_array_equal(fast, ref)


def test_a_blank_image_has_no_ink():
    for img in (
        np.zeros((1, 1), np.uint8),
        np.full((5, 3), 200, np.uint8),
        np.zeros((30, 30), np.float32),
        np.ones((30, 30)),
    ):
        for backend in ("fast", "reference"):
            with pytest.raises(NoInkError, match=r"^img: no ink"):
                image.normalize_digit(img, backend=backend)
    assert issubclass(NoInkError, ValueError)
    # one grey level above the background is ink, half of one is not
    img = np.zeros((10, 10), np.float64)
    img[5, 5] = 0.9 * image.INK_THRESHOLD
    with pytest.raises(NoInkError):
        image.normalize_digit(img)
    img[5, 5] = 1 / 255
    d = image.normalize_digit(img)
    assert d.max() == 255 and d.sum() > 0


def test_one_ink_pixel_and_thin_strokes():
    img = np.zeros((9, 9), np.uint8)
    img[4, 4] = 255
    d = image.normalize_digit(img)
    np.testing.assert_array_equal(d, reference.normalize_digit(img))
    # a 1x1 dot in a 10x10 crop doubled to 20x20: a 2x2 block of 255 whose centre of mass,
    # 15.0 with pixel centres at i + 0.5, is pixel 14's lower right corner
    assert d.sum() == 4 * 255 and d[14:16, 14:16].min() == 255
    # a thin vertical "1" is not stretched: it stays narrow
    one = np.zeros((60, 60), np.uint8)
    one[5:55, 29:32] = 255
    d = image.normalize_digit(one)
    cols = np.flatnonzero(d.any(axis=0))
    rows = np.flatnonzero(d.any(axis=1))
    assert rows.size == 20 and cols.size <= 3


def test_polarity():
    rng = np.random.default_rng(3)
    img = random_image(rng, 40, 30, np.uint8, dark_on_light=False)
    want = image.normalize_digit(img)
    np.testing.assert_array_equal(image.normalize_digit(255 - img), want)  # auto inverts
    np.testing.assert_array_equal(image.normalize_digit(255 - img, invert=True), want)
    np.testing.assert_array_equal(image.normalize_digit(img, invert=False), want)
    # forced the wrong way, nothing is brighter than white paper (darker than black)
    with pytest.raises(NoInkError):
        image.normalize_digit(255 - img, invert=False)
    with pytest.raises(NoInkError):
        image.normalize_digit(img, invert=True)


def test_pixel_max_and_dtypes_agree():
    rng = np.random.default_rng(4)
    img = random_image(rng, 50, 45, np.uint8, dark_on_light=True)
    want = image.normalize_digit(img)
    np.testing.assert_array_equal(image.normalize_digit(img.astype(np.float64) / 255), want)
    np.testing.assert_array_equal(image.normalize_digit(img.astype(np.uint16) * 257), want)
    np.testing.assert_array_equal(
        image.normalize_digit(img.astype(np.float32), pixel_max=255), want
    )
    np.testing.assert_array_equal(
        image.normalize_digit(img.astype(np.float16), pixel_max=255), want
    )
    np.testing.assert_array_equal(image.normalize_digit(img.astype(np.uint16), pixel_max=255), want)
    np.testing.assert_array_equal(image.normalize_digit(img.tolist() and img / 255.0), want)


# ---------------------------------------------------------------------------- batches


def test_batch_equals_one_by_one_and_blank_images_give_no_ink():
    rng = np.random.default_rng(5)
    imgs = [
        random_image(rng, int(rng.integers(1, 90)), int(rng.integers(1, 90)), dt, True)
        for dt in (np.uint8, np.float32, np.uint16, np.float64) * 8
    ]
    imgs[3] = np.full((12, 12), 255, np.uint8)
    digits, ink = image.normalize_digits(imgs)
    ref_digits, ref_ink = image.normalize_digits(imgs, backend="reference")
    np.testing.assert_array_equal(digits, ref_digits)
    np.testing.assert_array_equal(ink, ref_ink)
    assert not ink[3] and not digits[3].any()
    for i, img in enumerate(imgs):
        if ink[i]:
            np.testing.assert_array_equal(digits[i], image.normalize_digit(img))
        else:
            with pytest.raises(NoInkError):
                image.normalize_digit(img)
    d0, i0 = image.normalize_digits(np.zeros((0, 5, 5), np.uint8))
    assert d0.shape == (0, 28, 28) and i0.shape == (0,)
    assert image.normalize_digits([])[0].shape == (0, 28, 28)


def test_threads_do_not_change_the_result(test_digits):
    x = np.ascontiguousarray(255 - np.kron(test_digits[:3000], np.ones((1, 2, 2), np.uint8)))
    before = lenet_fast.get_num_threads()
    try:
        lenet_fast.set_num_threads(1)
        one = image.normalize_digits(x)
        lenet_fast.set_num_threads(2)
        two = image.normalize_digits(x)
    finally:
        lenet_fast.set_num_threads(before)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


# ---------------------------------------------------------------------------- MNIST


def shifted(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``a`` (N,H,W) moved by (dy, dx) pixels, zeros shifted in."""
    out = np.zeros_like(a)
    h, w = a.shape[-2:]
    src = np.s_[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    dst = np.s_[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
    out[dst] = a[src]
    return out


def closest_shift(got: np.ndarray, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per digit, over the shifts of ``want`` by at most one pixel in x and y: the smallest
    max |difference| and mean |difference| (grey levels)."""
    best_max = np.full(len(got), 1e9)
    best_mean = np.full(len(got), 1e9)
    g = got.astype(np.int16)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            d = np.abs(g - shifted(want, dy, dx).astype(np.int16))
            best_max = np.minimum(best_max, d.max(axis=(1, 2)))
            best_mean = np.minimum(best_mean, d.mean(axis=(1, 2)))
    return best_max, best_mean


def test_mnist_digits_come_back_as_they_are(test_digits):
    """MNIST's own digits are fixed points, up to one grey level: 1,021 of the 10,000 test
    digits have 254 as their darkest ink, which step 5 makes 255 (measured: 89.8% exact,
    99.97% within one grey level and one pixel of shift, 3 digits further off)."""
    got, ink = image.normalize_digits(test_digits)
    assert ink.all()
    exact = (got == test_digits).all(axis=(1, 2)).mean()
    best_max, _ = closest_shift(got, test_digits)
    within = (best_max <= 1).mean()
    print(
        f"\nMNIST test digits: {exact:.2%} exact, {within:.2%} within a one-pixel shift "
        f"and one grey level"
    )
    assert exact >= 0.89
    assert within >= 0.999
    # the off-by-one-level ones are those whose darkest ink is 254
    off = ~(got == test_digits).all(axis=(1, 2)) & (best_max <= 1)
    assert (test_digits[off].max(axis=(1, 2)) == 254).mean() > 0.99


@pytest.fixture(scope="module")
def sample(test_digits):
    """2,000 test digits and their normalised selves."""
    x = test_digits[:2000]
    return x, image.normalize_digits(x)[0]


def transforms(x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(x)
    canvas = np.zeros((n, 100, 80), np.uint8)
    for i, (a, b) in enumerate(rng.integers(0, 50, size=(n, 2))):
        canvas[i, a : a + 28, b : b + 28] = x[i]
    k2 = np.kron(x, np.ones((1, 2, 2), np.uint8))
    return {
        "inverted": 255 - x,
        "float": x.astype(np.float32) / 255,
        "padded and shifted": canvas,
        "inverted on a canvas": 255 - canvas,
        "scaled x2": k2,
        "scaled x3": np.kron(x, np.ones((1, 3, 3), np.uint8)),
        "scaled x2, inverted, padded": 255 - np.pad(k2, ((0, 0), (10, 30), (20, 5))),
    }


# (min fraction exact, max mean |difference| in grey levels over all digits), measured
# (2,000 digits): inverted, float, padded: 100% / 98.6% exact (float: 1-level rounding
# ties), 0.00; scaled x2 or x3: 78% exact, mean |d| 1.9 and 1.7: a scaled digit whose
# short side is an odd number of pixels short of its long side gets its crop origin half
# a pixel off (step 2 rounds the half down), so it is resampled at another phase.
BOUNDS = {
    "inverted": (1.0, 0.0),
    "float": (0.97, 0.05),
    "padded and shifted": (1.0, 0.0),
    "inverted on a canvas": (1.0, 0.0),
    "scaled x2": (0.75, 2.5),
    "scaled x3": (0.75, 2.5),
    "scaled x2, inverted, padded": (0.75, 2.5),
}


@pytest.mark.parametrize("name", list(BOUNDS))
def test_scaled_padded_inverted_digits_come_back(sample, name):
    x, want = sample
    got, ink = image.normalize_digits(transforms(x, np.random.default_rng(0))[name])
    assert ink.all()
    exact = (got == want).all(axis=(1, 2)).mean()
    mean_abs = np.abs(got.astype(np.int16) - want).mean()
    best_max, best_mean = closest_shift(got, want)
    print(
        f"\n{name}: {exact:.1%} exact, mean |d| {mean_abs:.2f} grey levels, "
        f"{(best_mean <= 4).mean():.1%} within mean |d| 4 of a one-pixel shift"
    )
    min_exact, max_mean = BOUNDS[name]
    assert exact >= min_exact and mean_abs <= max_mean
    assert (best_mean <= 16).mean() >= 0.99  # no digit is far off


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize("backend", ["fast", "reference"])
def test_errors_name_the_argument(backend):
    def call(img, **kw):
        return image.normalize_digit(img, backend=backend, **kw)

    good = np.zeros((5, 5), np.uint8)
    good[2, 2] = 255
    for bad in (good.astype(np.int64), good.astype(bool), good.astype(np.complex64), None, "x"):
        with pytest.raises(TypeError, match=r"^img: "):
            call(bad)
    for bad in (good[None], good[0], np.zeros((0, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"^img: "):
            call(bad)
    f = good / 255.0
    f[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^img: .*NaN"):
        call(f)
    with pytest.raises(ValueError, match=r"^img: .*pixel_max=255"):
        call(good.astype(np.float32))
    with pytest.raises(ValueError, match=r"^img: .*pixel_max"):
        call(good, pixel_max=100)
    with pytest.raises(ValueError, match=r"^img: "):
        call(-(good / 255.0))
    with pytest.raises(ValueError, match=r"^pixel_max: "):
        call(good, pixel_max=0)
    with pytest.raises(TypeError, match=r"^pixel_max: "):
        call(good, pixel_max="255")
    with pytest.raises(ValueError, match=r"^invert: "):
        image.normalize_digit(good, "yes", backend=backend)
    with pytest.raises(TypeError, match=r"^invert: "):
        image.normalize_digit(good, 1, backend=backend)
    with pytest.raises(ValueError, match=r"^images\[1\]: .*NaN"):
        image.normalize_digits([good, f], backend=backend)
    with pytest.raises(TypeError, match=r"^images: "):
        image.normalize_digits(good.astype(np.int32)[None], backend=backend)
    with pytest.raises(TypeError, match=r"^images: "):
        image.normalize_digits(3, backend=backend)
    with pytest.raises(ValueError, match=r"^backend: "):
        image.normalize_digit(good, backend="gpu")
