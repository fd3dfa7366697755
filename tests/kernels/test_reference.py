"""Tests of the NumPy reference kernels (lenet_fast.reference).

* Every backward kernel is checked against central differences of
  ``L = sum(forward(inputs) * dy)`` in float64, element by element.
* The convolution forwards are checked against slow, obvious loops written here.
* Dtype rules, fresh outputs and argument validation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from lenet_fast import reference as ref
from lenet_fast import tables

Array = npt.NDArray[np.float64]

STEP = 1e-6
RTOL = 1e-6
ATOL = 1e-8


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def numeric_grad(loss: Callable[[], float], arr: Array, step: float = STEP) -> Array:
    """Central differences of ``loss()`` with respect to every element of ``arr`` (in place)."""
    grad = np.zeros_like(arr)
    it = np.nditer(arr, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        orig = arr[idx]
        arr[idx] = orig + step
        up = loss()
        arr[idx] = orig - step
        down = loss()
        arr[idx] = orig
        grad[idx] = (up - down) / (2.0 * step)
    return grad


def check_grads(
    forward: Callable[..., Array],
    inputs: Sequence[Array],
    analytic: Sequence[Array],
    dy: Array,
) -> None:
    """Compare ``analytic[i]`` with the numeric gradient of sum(forward(*inputs) * dy) w.r.t. inputs[i]."""
    inputs = [np.array(a, dtype=np.float64) for a in inputs]

    def loss() -> float:
        return float(np.sum(forward(*inputs) * dy))

    # Rounding in the loss, about eps * sum|terms|, is divided by the step: allow for it.
    scale = float(np.sum(np.abs(forward(*inputs) * dy)))
    atol = max(ATOL, 10.0 * np.finfo(np.float64).eps * scale / STEP)
    assert len(analytic) == len(inputs)
    for i, (arr, got) in enumerate(zip(inputs, analytic)):
        assert got.shape == arr.shape, f"gradient {i}: shape {got.shape} != {arr.shape}"
        assert got.dtype == np.float64
        want = numeric_grad(loss, arr)
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=atol, err_msg=f"gradient {i}")


# --------------------------------------------------------------------------- naive loops


def naive_conv(x: Array, w: Array, b: Array) -> Array:
    n_, c_, h, wd = x.shape
    k_, _, r_, s_ = w.shape
    y = np.zeros((n_, k_, h - r_ + 1, wd - s_ + 1))
    for n in range(n_):
        for k in range(k_):
            for i in range(h - r_ + 1):
                for j in range(wd - s_ + 1):
                    acc = b[k]
                    for c in range(c_):
                        for r in range(r_):
                            for s in range(s_):
                                acc += w[k, c, r, s] * x[n, c, i + r, j + s]
                    y[n, k, i, j] = acc
    return y


def naive_sparse_conv(x: Array, w: Array, b: Array, table: npt.NDArray[np.bool_]) -> Array:
    n_, c_, h, wd = x.shape
    _, r_, s_ = w.shape
    k_ = table.shape[1]
    y = np.zeros((n_, k_, h - r_ + 1, wd - s_ + 1))
    t = 0  # pair index: output map k outer, input map c inner
    for k in range(k_):
        y[:, k] = b[k]
        for c in range(c_):
            if not table[c, k]:
                continue
            for n in range(n_):
                for i in range(h - r_ + 1):
                    for j in range(wd - s_ + 1):
                        y[n, k, i, j] += np.sum(w[t] * x[n, c, i : i + r_, j : j + s_])
            t += 1
    assert t == w.shape[0]
    return y


# A small table with an unconnected input map (2), an output map with no inputs (3) and
# mixed fan-ins, plus Table I itself.
SMALL_TABLE = np.array(
    [
        [True, False, True, False, True],
        [False, True, True, False, False],
        [False, False, False, False, False],
        [True, True, False, False, True],
    ]
)

CONV_SHAPES = [
    # N, C, H, W, K, R, S
    (2, 3, 7, 6, 4, 3, 2),
    (1, 1, 5, 5, 1, 5, 5),  # kernel as large as the input
    (3, 2, 4, 9, 3, 1, 1),
    (1, 2, 6, 3, 2, 2, 3),
]

SPARSE_CASES = [
    # table, N, H, W, R, S
    pytest.param(SMALL_TABLE, 2, 6, 5, 3, 2, id="small-table"),
    pytest.param(np.array(tables.C3_TABLE), 1, 6, 7, 5, 5, id="c3-table"),
    pytest.param(np.ones((2, 3), dtype=bool), 1, 4, 3, 2, 2, id="dense-table"),
]

SUBSAMPLE_SHAPES = [(2, 3, 4, 6), (1, 2, 6, 2), (1, 1, 2, 2)]


def _conv_data(seed: int, n: int, c: int, h: int, wd: int, k: int, r: int, s: int):
    g = _rng(seed)
    return (
        g.standard_normal((n, c, h, wd)),
        g.standard_normal((k, c, r, s)),
        g.standard_normal(k),
        g.standard_normal((n, k, h - r + 1, wd - s + 1)),
    )


def _sparse_data(seed: int, table: npt.NDArray[np.bool_], n: int, h: int, wd: int, r: int, s: int):
    g = _rng(seed)
    c, k = table.shape
    return (
        g.standard_normal((n, c, h, wd)),
        g.standard_normal((int(table.sum()), r, s)),
        g.standard_normal(k),
        g.standard_normal((n, k, h - r + 1, wd - s + 1)),
    )


# --------------------------------------------------------------------------- forward vs loops


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv2d_forward_matches_loops(shape: tuple[int, ...]) -> None:
    x, w, b, _ = _conv_data(1, *shape)
    np.testing.assert_allclose(
        ref.conv2d_forward(x, w, b), naive_conv(x, w, b), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(("table", "n", "h", "wd", "r", "s"), SPARSE_CASES)
def test_sparse_conv2d_forward_matches_loops(
    table, n: int, h: int, wd: int, r: int, s: int
) -> None:
    x, w, b, _ = _sparse_data(2, table, n, h, wd, r, s)
    got = ref.sparse_conv2d_forward(x, w, b, table)
    np.testing.assert_allclose(got, naive_sparse_conv(x, w, b, table), rtol=1e-12, atol=1e-12)


def test_sparse_conv2d_unconnected_output_is_bias() -> None:
    x, w, b, _ = _sparse_data(3, SMALL_TABLE, 2, 6, 5, 3, 2)
    y = ref.sparse_conv2d_forward(x, w, b, SMALL_TABLE)
    np.testing.assert_array_equal(y[:, 3], np.full_like(y[:, 3], b[3]))


def test_sparse_conv2d_with_full_table_equals_dense() -> None:
    g = _rng(4)
    x = g.standard_normal((2, 3, 6, 5))
    w = g.standard_normal((4, 3, 3, 2))
    b = g.standard_normal(4)
    table = np.ones((3, 4), dtype=bool)
    # Pair order is (k, c) with c fastest, i.e. w.reshape(K*C, R, S).
    y = ref.sparse_conv2d_forward(x, w.reshape(12, 3, 2), b, table)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, w, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SUBSAMPLE_SHAPES)
def test_subsample_forward_matches_loops(shape: tuple[int, ...]) -> None:
    g = _rng(5)
    x = g.standard_normal(shape)
    coef, bias = g.standard_normal(shape[1]), g.standard_normal(shape[1])
    n_, c_, h, wd = shape
    want = np.zeros((n_, c_, h // 2, wd // 2))
    for n in range(n_):
        for c in range(c_):
            for i in range(h // 2):
                for j in range(wd // 2):
                    block = x[n, c, 2 * i, 2 * j] + x[n, c, 2 * i + 1, 2 * j]
                    block += x[n, c, 2 * i, 2 * j + 1] + x[n, c, 2 * i + 1, 2 * j + 1]
                    want[n, c, i, j] = coef[c] * block + bias[c]
    np.testing.assert_allclose(ref.subsample_forward(x, coef, bias), want, rtol=1e-12, atol=1e-12)


def test_linear_and_rbf_forward_match_loops() -> None:
    g = _rng(6)
    x, w, b = g.standard_normal((3, 5)), g.standard_normal((4, 5)), g.standard_normal(4)
    want = np.array(
        [[b[o] + sum(w[o, i] * x[n, i] for i in range(5)) for o in range(4)] for n in range(3)]
    )
    np.testing.assert_allclose(ref.linear_forward(x, w, b), want, rtol=1e-12, atol=1e-12)
    c = g.standard_normal((4, 5))
    want = np.array(
        [[sum((x[n, j] - c[i, j]) ** 2 for j in range(5)) for i in range(4)] for n in range(3)]
    )
    np.testing.assert_allclose(ref.rbf_forward(x, c), want, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- squashing values


def test_squash_constants_and_fixed_points() -> None:
    assert ref.SQUASH_A == 1.7159
    assert ref.SQUASH_S == pytest.approx(2.0 / 3.0)
    assert float(ref.squash_forward(1.0)) == pytest.approx(1.0, abs=1e-4)
    assert float(ref.squash_forward(-1.0)) == pytest.approx(-1.0, abs=1e-4)
    assert float(ref.squash_forward(0.0)) == 0.0
    assert float(ref.squash_forward(50.0)) == pytest.approx(ref.SQUASH_A)
    # f'(0) = A * S
    assert float(ref.squash_backward(0.0, 1.0)) == pytest.approx(ref.SQUASH_A * ref.SQUASH_S)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv2d_backward_finite_differences(shape: tuple[int, ...]) -> None:
    x, w, b, dy = _conv_data(10, *shape)
    dx, dw, db = ref.conv2d_backward(x, w, dy)
    check_grads(ref.conv2d_forward, [x, w, b], [dx, dw, db], dy)


@pytest.mark.parametrize(("table", "n", "h", "wd", "r", "s"), SPARSE_CASES)
def test_sparse_conv2d_backward_finite_differences(
    table, n: int, h: int, wd: int, r: int, s: int
) -> None:
    x, w, b, dy = _sparse_data(11, table, n, h, wd, r, s)
    dx, dw, db = ref.sparse_conv2d_backward(x, w, dy, table)
    check_grads(
        lambda x_, w_, b_: ref.sparse_conv2d_forward(x_, w_, b_, table), [x, w, b], [dx, dw, db], dy
    )


def test_sparse_conv2d_backward_unconnected_input_gets_no_gradient() -> None:
    x, w, _, dy = _sparse_data(12, SMALL_TABLE, 2, 6, 5, 3, 2)
    dx, _, _ = ref.sparse_conv2d_backward(x, w, dy, SMALL_TABLE)
    assert not dx[:, 2].any()


@pytest.mark.parametrize("shape", SUBSAMPLE_SHAPES)
def test_subsample_backward_finite_differences(shape: tuple[int, ...]) -> None:
    g = _rng(13)
    n, c, h, wd = shape
    x = g.standard_normal(shape)
    coef, bias = g.standard_normal(c), g.standard_normal(c)
    dy = g.standard_normal((n, c, h // 2, wd // 2))
    dx, dcoef, dbias = ref.subsample_backward(x, coef, dy)
    check_grads(ref.subsample_forward, [x, coef, bias], [dx, dcoef, dbias], dy)


@pytest.mark.parametrize(("n", "i", "o"), [(3, 5, 4), (1, 1, 1), (2, 7, 3)])
def test_linear_backward_finite_differences(n: int, i: int, o: int) -> None:
    g = _rng(14)
    x, w, b = g.standard_normal((n, i)), g.standard_normal((o, i)), g.standard_normal(o)
    dy = g.standard_normal((n, o))
    dx, dw, db = ref.linear_backward(x, w, dy)
    check_grads(ref.linear_forward, [x, w, b], [dx, dw, db], dy)


@pytest.mark.parametrize("shape", [(2, 3, 4), (7,), (2, 1, 3, 2)])
def test_squash_backward_finite_differences(shape: tuple[int, ...]) -> None:
    g = _rng(15)
    a = 1.5 * g.standard_normal(shape)
    dy = g.standard_normal(shape)
    da = ref.squash_backward(ref.squash_forward(a), dy)
    check_grads(ref.squash_forward, [a], [da], dy)


@pytest.mark.parametrize(("n", "m", "j"), [(3, 4, 7), (1, 10, 84), (2, 1, 1)])
def test_rbf_backward_finite_differences(n: int, m: int, j: int) -> None:
    g = _rng(16)
    x, c = g.standard_normal((n, j)), g.standard_normal((m, j))
    dy = g.standard_normal((n, m))
    dx, dc = ref.rbf_backward(x, c, dy)
    check_grads(ref.rbf_forward, [x, c], [dx, dc], dy)


# --------------------------------------------------------------------------- dtypes, fresh outputs


def _all_calls() -> list[tuple[str, Callable[..., Any], list[Array]]]:
    """One call of every public kernel: (name, function, float64 inputs)."""
    g = _rng(20)

    def arr(*shape: int) -> Array:
        return g.standard_normal(shape)

    t = SMALL_TABLE
    return [
        ("conv2d_forward", ref.conv2d_forward, [arr(2, 3, 6, 4), arr(2, 3, 3, 3), arr(2)]),
        (
            "conv2d_backward",
            ref.conv2d_backward,
            [arr(2, 3, 6, 4), arr(2, 3, 3, 3), arr(2, 2, 4, 2)],
        ),
        (
            "sparse_conv2d_forward",
            lambda x, w, b: ref.sparse_conv2d_forward(x, w, b, t),
            [arr(1, 4, 5, 4), arr(int(t.sum()), 2, 2), arr(5)],
        ),
        (
            "sparse_conv2d_backward",
            lambda x, w, dy: ref.sparse_conv2d_backward(x, w, dy, t),
            [arr(1, 4, 5, 4), arr(int(t.sum()), 2, 2), arr(1, 5, 4, 3)],
        ),
        ("subsample_forward", ref.subsample_forward, [arr(2, 3, 4, 6), arr(3), arr(3)]),
        ("subsample_backward", ref.subsample_backward, [arr(2, 3, 4, 6), arr(3), arr(2, 3, 2, 3)]),
        ("linear_forward", ref.linear_forward, [arr(3, 5), arr(4, 5), arr(4)]),
        ("linear_backward", ref.linear_backward, [arr(3, 5), arr(4, 5), arr(3, 4)]),
        ("squash_forward", ref.squash_forward, [arr(2, 3)]),
        ("squash_backward", ref.squash_backward, [arr(2, 3), arr(2, 3)]),
        ("rbf_forward", ref.rbf_forward, [arr(3, 6), arr(2, 6)]),
        ("rbf_backward", ref.rbf_backward, [arr(3, 6), arr(2, 6), arr(3, 2)]),
    ]


def _outputs(result: Any) -> list[np.ndarray]:
    return list(result) if isinstance(result, tuple) else [result]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        pytest.param("float32", np.float32, id="float32"),
        pytest.param("float64", np.float64, id="float64"),
        pytest.param("last-float64", np.float64, id="mixed"),
        pytest.param("int64", np.float32, id="int64"),
    ],
)
def test_output_dtypes_and_fresh_arrays(mode: str, expected: Any) -> None:
    for name, fn, inputs64 in _all_calls():
        if mode == "last-float64":
            inputs = [a.astype(np.float32) for a in inputs64[:-1]] + [inputs64[-1]]
        else:
            inputs = [a.astype(mode) for a in inputs64]
        for out in _outputs(fn(*inputs)):
            assert isinstance(out, np.ndarray), name
            assert out.dtype == expected, f"{name}: {out.dtype} != {expected}"
            for inp in inputs:
                assert not np.shares_memory(out, inp), name


@pytest.mark.parametrize("name", [c[0] for c in _all_calls()])
def test_float32_results_match_float64(name: str) -> None:
    _, fn, inputs64 = next(c for c in _all_calls() if c[0] == name)
    inputs32 = [a.astype(np.float32) for a in inputs64]
    for o32, o64 in zip(_outputs(fn(*inputs32)), _outputs(fn(*inputs64))):
        assert o32.dtype == np.float32
        np.testing.assert_allclose(o32, o64, rtol=1e-5, atol=1e-5)


def test_squash_scalar_input_returns_array() -> None:
    y = ref.squash_forward(1.0)
    assert isinstance(y, np.ndarray) and y.shape == () and y.dtype == np.float64


# --------------------------------------------------------------------------- validation

Z = np.zeros
_X = Z((2, 6, 8, 7))
_T = np.array(tables.C3_TABLE)
_W5 = Z((16, 6, 5, 5))

INVALID_CALLS = [
    # id, function, arguments, regex the ValueError message must match
    (
        "conv-x-ndim",
        ref.conv2d_forward,
        (Z((6, 8, 7)), _W5, Z(16)),
        r"^x: expected \(N,C,H,W\), got \(6,8,7\)$",
    ),
    (
        "conv-w-channels",
        ref.conv2d_forward,
        (_X, Z((16, 3, 5, 5)), Z(16)),
        r"^w: expected \(K,C,R,S\) with C=6 to match x, got \(16,3,5,5\)$",
    ),
    (
        "conv-kernel-too-tall",
        ref.conv2d_forward,
        (_X, Z((16, 6, 9, 5)), Z(16)),
        r"^w: expected \(K,C,R,S\) with 1<=R<=H=8",
    ),
    ("conv-kernel-too-wide", ref.conv2d_forward, (_X, Z((16, 6, 5, 8)), Z(16)), r"S<=W=7"),
    (
        "conv-b",
        ref.conv2d_forward,
        (_X, _W5, Z(15)),
        r"^b: expected \(K,\) with K=16 to match w, got \(15,\)$",
    ),
    (
        "conv-dy",
        ref.conv2d_backward,
        (_X, _W5, Z((2, 16, 4, 4))),
        r"^dy: expected \(N,K,H-R\+1,W-S\+1\) = \(2,16,4,3\)",
    ),
    (
        "sparse-count",
        ref.sparse_conv2d_forward,
        (_X, Z((59, 5, 5)), Z(16), _T),
        r"^w: expected \(T,R,S\) with T=60 connections in table, got \(59,5,5\)$",
    ),
    (
        "sparse-table-rows",
        ref.sparse_conv2d_forward,
        (_X, Z((60, 5, 5)), Z(16), _T[:3]),
        r"^table: expected \(C,K\) with C=6 to match x, got \(3,16\)$",
    ),
    (
        "sparse-table-ndim",
        ref.sparse_conv2d_forward,
        (_X, Z((60, 5, 5)), Z(16), _T[0]),
        r"^table: expected \(C,K\), got \(16,\)$",
    ),
    (
        "sparse-b",
        ref.sparse_conv2d_forward,
        (_X, Z((60, 5, 5)), Z(6), _T),
        r"^b: expected \(K,\) with K=16 to match table",
    ),
    (
        "sparse-kernel-too-tall",
        ref.sparse_conv2d_backward,
        (_X, Z((60, 9, 5)), Z((2, 16, 1, 3)), _T),
        r"^w: expected \(T,R,S\) with 1<=R<=H=8",
    ),
    (
        "subsample-odd-h",
        ref.subsample_forward,
        (Z((1, 2, 5, 4)), Z(2), Z(2)),
        r"^x: expected \(N,C,H,W\) with H and W even, got \(1,2,5,4\)$",
    ),
    ("subsample-odd-w", ref.subsample_forward, (Z((1, 2, 4, 3)), Z(2), Z(2)), r"H and W even"),
    (
        "subsample-coef",
        ref.subsample_forward,
        (Z((1, 2, 4, 4)), Z(3), Z(2)),
        r"^coef: expected \(C,\) with C=2 to match x, got \(3,\)$",
    ),
    (
        "subsample-bias",
        ref.subsample_forward,
        (Z((1, 2, 4, 4)), Z(2), Z(1)),
        r"^bias: expected \(C,\) with C=2 to match x, got \(1,\)$",
    ),
    (
        "subsample-dy",
        ref.subsample_backward,
        (Z((1, 2, 4, 4)), Z(2), Z((1, 2, 4, 4))),
        r"^dy: expected \(N,C,H/2,W/2\) = \(1,2,2,2\)",
    ),
    (
        "linear-w",
        ref.linear_forward,
        (Z((3, 5)), Z((4, 6)), Z(4)),
        r"^w: expected \(O,I\) with I=5 to match x, got \(4,6\)$",
    ),
    (
        "linear-b",
        ref.linear_forward,
        (Z((3, 5)), Z((4, 5)), Z((1, 4))),
        r"^b: expected \(O,\), got \(1,4\)$",
    ),
    (
        "linear-dy",
        ref.linear_backward,
        (Z((3, 5)), Z((4, 5)), Z((3, 5))),
        r"^dy: expected \(N,O\) = \(3,4\)",
    ),
    (
        "squash-dy",
        ref.squash_backward,
        (Z((2, 3)), Z((3, 2))),
        r"^dy: expected shape \(2,3\) to match y, got \(3,2\)$",
    ),
    (
        "rbf-c",
        ref.rbf_forward,
        (Z((3, 84)), Z((10, 83))),
        r"^c: expected \(M,J\) with J=84 to match x, got \(10,83\)$",
    ),
    (
        "rbf-dy",
        ref.rbf_backward,
        (Z((3, 84)), Z((10, 84)), Z((10, 3))),
        r"^dy: expected \(N,M\) = \(3,10\)",
    ),
]


@pytest.mark.parametrize(
    ("fn", "args", "match"), [pytest.param(fn, args, m, id=i) for i, fn, args, m in INVALID_CALLS]
)
def test_invalid_shapes_raise_value_error(
    fn: Callable[..., Any], args: tuple[Any, ...], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        fn(*args)


def test_non_bool_table_raises_type_error() -> None:
    with pytest.raises(TypeError, match="table: expected a bool array"):
        ref.sparse_conv2d_forward(_X, np.zeros((60, 5, 5)), np.zeros(16), _T.astype(int))
