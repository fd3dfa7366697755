"""Bad input to the compiled kernels: a TypeError or ValueError that names the argument and
says what was expected, never a crash or a silent wrong answer."""

from __future__ import annotations

import numpy as np
import pytest

from lenet_fast import kernels as K
from lenet_fast import reference as R
from lenet_fast import tables

f32 = np.float32


def good():
    """Valid arguments of every kernel, LeNet-sized."""
    z = lambda *s: np.zeros(s, f32)
    t = np.array(tables.C3_TABLE)
    return {
        "conv2d_forward": dict(x=z(2, 1, 32, 32), w=z(6, 1, 5, 5), b=z(6)),
        "conv2d_backward": dict(x=z(2, 1, 32, 32), w=z(6, 1, 5, 5), dy=z(2, 6, 28, 28)),
        "sparse_conv2d_forward": dict(x=z(2, 6, 14, 14), w=z(60, 5, 5), b=z(16), table=t),
        "sparse_conv2d_backward": dict(
            x=z(2, 6, 14, 14), w=z(60, 5, 5), dy=z(2, 16, 10, 10), table=t
        ),
        "subsample_forward": dict(x=z(2, 6, 28, 28), coef=z(6), bias=z(6)),
        "subsample_backward": dict(x=z(2, 6, 28, 28), coef=z(6), dy=z(2, 6, 14, 14)),
        "linear_forward": dict(x=z(2, 120), w=z(84, 120), b=z(84)),
        "linear_backward": dict(x=z(2, 120), w=z(84, 120), dy=z(2, 84)),
        "squash_forward": dict(a=z(2, 6, 28, 28)),
        "squash_backward": dict(y=z(2, 84), dy=z(2, 84)),
        "rbf_forward": dict(x=z(2, 84), c=z(10, 84)),
        "rbf_backward": dict(x=z(2, 84), c=z(10, 84), dy=z(2, 10)),
    }


ALL = [(fn, arg) for fn, kw in good().items() for arg in kw if arg != "table"]


@pytest.mark.parametrize("fn", list(good()))
def test_good_arguments_give_the_reference_result(fn):
    """The arguments the error tests start from are valid: with random values in them the
    kernel runs and agrees with its NumPy twin."""
    rng = np.random.default_rng(7)
    kw = {
        k: v if k == "table" else rng.uniform(-1, 1, v.shape).astype(f32)
        for k, v in good()[fn].items()
    }
    got, want = getattr(K, fn)(**kw), getattr(R, fn)(**kw)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("fn", "arg"), ALL)
@pytest.mark.parametrize(
    "bad", ["float64", "int32", "bool", "object", "list", "none", "scalar", "float16", "big_endian"]
)
def test_wrong_type_is_a_type_error_naming_the_argument(fn, arg, bad):
    kw = good()[fn]
    a = kw[arg]
    kw[arg] = {
        "float64": lambda: a.astype(np.float64),
        "int32": lambda: a.astype(np.int32),
        "bool": lambda: a.astype(bool),
        "object": lambda: a.astype(object),
        "list": lambda: a.tolist(),
        "none": lambda: None,
        "scalar": lambda: 1.5,
        "float16": lambda: a.astype(np.float16),
        "big_endian": lambda: a.astype(">f4"),
    }[bad]()
    with pytest.raises(TypeError, match=rf"^{arg}: expected .*float32"):
        getattr(K, fn)(**kw)


@pytest.mark.parametrize(("fn", "arg"), [(f, a) for f, a in ALL if not f.startswith("squash")])
def test_wrong_ndim_is_a_value_error(fn, arg):
    kw = good()[fn]
    kw[arg] = kw[arg][None]
    with pytest.raises(ValueError, match=rf"^{arg}: expected"):
        getattr(K, fn)(**kw)


@pytest.mark.parametrize(("fn", "arg"), ALL)
def test_strided_view_is_rejected(fn, arg):
    kw = good()[fn]
    a = kw[arg]
    kw[arg] = np.repeat(a, 2, axis=-1)[..., ::2]  # same shape, not contiguous
    with pytest.raises(ValueError, match=rf"^{arg}: expected a C-contiguous"):
        getattr(K, fn)(**kw)


@pytest.mark.parametrize(
    ("fn", "arg", "shape", "message"),
    [
        ("conv2d_forward", "w", (6, 2, 5, 5), r"w: expected \(K,C,R,S\) with C=1 to match x"),
        ("conv2d_forward", "b", (5,), r"b: expected \(K,\) with K=6 to match w"),
        (
            "conv2d_forward",
            "w",
            (6, 1, 33, 5),
            r"w: kernel \(R,S\)=\(33,5\) is larger than the input x \(H,W\)=\(32,32\)",
        ),
        ("conv2d_forward", "w", (6, 1, 0, 5), r"w: expected a kernel of R, S >= 1"),
        ("conv2d_forward", "w", (0, 1, 5, 5), r"w: expected K >= 1"),
        (
            "conv2d_forward",
            "x",
            (2, 1, 0, 32),
            r"x: expected \(N,C,H,W\) float32 with C, H, W >= 1",
        ),
        (
            "conv2d_backward",
            "dy",
            (2, 6, 28, 27),
            r"dy: expected \(N,K,Ho,Wo\) from x and w = \(2,6,28,28\)",
        ),
        ("conv2d_backward", "dy", (3, 6, 28, 28), r"dy: expected"),
        (
            "sparse_conv2d_forward",
            "w",
            (59, 5, 5),
            r"w: expected \(T,R,S\) with T=60 kernels, one per True in table",
        ),
        ("sparse_conv2d_forward", "b", (15,), r"table: expected \(C,K\) = \(6,15\) bool"),
        ("sparse_conv2d_forward", "x", (2, 5, 14, 14), r"table: expected \(C,K\) = \(5,16\) bool"),
        (
            "sparse_conv2d_forward",
            "w",
            (60, 15, 5),
            r"w: kernel \(R,S\)=\(15,5\) is larger than the input x",
        ),
        ("sparse_conv2d_backward", "dy", (2, 16, 10, 9), r"dy: expected \(N,K,Ho,Wo\)"),
        (
            "subsample_forward",
            "x",
            (2, 6, 27, 28),
            r"x: expected \(N,C,H,W\) float32 with C >= 1 and even H, W",
        ),
        ("subsample_forward", "x", (2, 6, 28, 7), r"even H, W"),
        ("subsample_forward", "coef", (5,), r"coef: expected \(C,\) from x = \(6,\)"),
        ("subsample_forward", "bias", (7,), r"bias: expected \(C,\) from x = \(6,\)"),
        (
            "subsample_backward",
            "dy",
            (2, 6, 14, 13),
            r"dy: expected \(N,C,H/2,W/2\) from x = \(2,6,14,14\)",
        ),
        ("linear_forward", "w", (84, 119), r"w: expected \(O,I\) with I=120 to match x"),
        ("linear_forward", "b", (83,), r"b: expected \(O,\) from w = \(84,\)"),
        ("linear_backward", "dy", (2, 83), r"dy: expected \(N,O\) from x and w = \(2,84\)"),
        ("squash_backward", "dy", (2, 83), r"dy: expected the shape of y = \(2,84\)"),
        ("rbf_forward", "c", (10, 83), r"c: expected \(M,J\) with J=84 to match x"),
        ("rbf_backward", "dy", (2, 9), r"dy: expected \(N,M\) from x and c = \(2,10\)"),
    ],
)
def test_sizes_that_disagree(fn, arg, shape, message):
    kw = good()[fn]
    kw[arg] = np.zeros(shape, f32)
    with pytest.raises(ValueError, match=message):
        getattr(K, fn)(**kw)


@pytest.mark.parametrize("fn", ["sparse_conv2d_forward", "sparse_conv2d_backward"])
def test_bad_table(fn):
    kw = good()[fn]
    kw["table"] = np.array(tables.C3_TABLE).astype(np.int64)
    with pytest.raises(TypeError, match=r"^table: expected \(C,K\) = \(6,16\) bool, got int64"):
        getattr(K, fn)(**kw)
    kw["table"] = np.array(tables.C3_TABLE).T
    with pytest.raises(
        ValueError, match=r"^table: expected \(C,K\) = \(6,16\) bool .* got shape \(16,6\)"
    ):
        getattr(K, fn)(**kw)
    kw["table"] = [[True] * 16] * 6
    with pytest.raises(TypeError, match=r"^table: expected a numpy.ndarray"):
        getattr(K, fn)(**kw)
    t = np.array(tables.C3_TABLE)
    t[0, 1] = True  # 61 connections for a w of 60 kernels
    kw["table"] = t
    with pytest.raises(ValueError, match=r"^w: expected \(T,R,S\) with T=61"):
        getattr(K, fn)(**kw)


def test_a_transposed_table_view_is_read_correctly():
    """A table that is a non-contiguous view is read by its values, not its memory."""
    t = np.array(tables.C3_TABLE)
    view = np.asfortranarray(t)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 14, 14)).astype(f32)
    w = rng.standard_normal((60, 5, 5)).astype(f32)
    b = np.zeros(16, f32)
    np.testing.assert_array_equal(
        K.sparse_conv2d_forward(x, w, b, view), K.sparse_conv2d_forward(x, w, b, t)
    )


def test_misaligned_buffer_is_rejected():
    raw = np.zeros(4 * 6 * 28 * 28 + 1, np.uint8)[1:].view(f32).reshape(1, 6, 28, 28)
    assert not raw.flags.aligned
    with pytest.raises(ValueError, match=r"^x: expected an aligned array"):
        K.subsample_forward(raw, np.ones(6, f32), np.ones(6, f32))


def test_messages_say_what_was_passed():
    with pytest.raises(
        TypeError, match=r"^x: expected a numpy.ndarray \(N,C,H,W\) float32, got list$"
    ):
        K.conv2d_forward([[1.0]], np.zeros((6, 1, 5, 5), f32), np.zeros(6, f32))
    with pytest.raises(TypeError, match=r"got float64 array of shape \(2,1,32,32\)"):
        K.conv2d_forward(np.zeros((2, 1, 32, 32)), np.zeros((6, 1, 5, 5), f32), np.zeros(6, f32))
    with pytest.raises(
        ValueError, match=r"^x: expected \(N,C,H,W\) float32, got shape \(3,6,14\)$"
    ):
        K.conv2d_forward(np.zeros((3, 6, 14), f32), np.zeros((6, 1, 5, 5), f32), np.zeros(6, f32))
