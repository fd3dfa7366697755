"""NumPy reference implementation of every LeNet-5 kernel (forward and backward).

This module is the slow, obvious oracle that the C++ core is tested against. It favours
clarity over speed, but is vectorised (no Python loops over pixels).

Conventions
-----------
* Images are NCHW: ``(batch N, channels C, height H, width W)``.
* Convolutions are *valid cross-correlations* with stride 1 (no kernel flip, no padding):
  an ``R x S`` kernel on an ``H x W`` map gives an ``(H-R+1) x (W-S+1)`` map.
* Every ``*_backward`` returns the gradients of ``L = sum(y * dy)`` with respect to the
  inputs and parameters of the matching ``*_forward``, where ``dy`` has the shape of ``y``.
  Parameter gradients are summed over the batch and over all connections that share the
  parameter.
* Inputs are converted with ``np.asarray``; all arithmetic is done in float64. Each
  function returns float64 arrays if any array input is float64, and float32 arrays
  otherwise (the bool connection table does not count). Outputs are always new arrays,
  never views of the inputs.
* Invalid shapes raise ``ValueError`` naming the argument and the expected shape; a
  connection table that is not boolean raises ``TypeError``.

Layers (LeCun et al. 1998, section II-B and Appendix A): C1/C3/C5 are convolutions
(C3 sparse, per Table I), S2/S4 are trainable 2x2 subsampling, F6 is a linear layer, the
squashing function is ``f(a) = A tanh(S a)`` and the output layer is a Euclidean RBF.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from ._validate import (
    INK_THRESHOLD,
    NOISE_FACTOR,
    NoInkError,
    grey_image,
    grey_stack,
    image_list,
    image_values,
    invert_mode,
    no_ink_message,
)

__all__ = [
    "INK_THRESHOLD",
    "SQUASH_A",
    "SQUASH_S",
    "conv2d_backward",
    "conv2d_forward",
    "linear_backward",
    "linear_forward",
    "normalize_digit",
    "normalize_digits",
    "rbf_backward",
    "rbf_forward",
    "sparse_conv2d_backward",
    "sparse_conv2d_forward",
    "squash_backward",
    "squash_forward",
    "subsample_backward",
    "subsample_forward",
]

FloatArray = npt.NDArray[np.floating[Any]]

#: Amplitude of the squashing function f(a) = A tanh(S a) (paper, Eq. 6 and Appendix A).
SQUASH_A: float = 1.7159
#: Slope of the squashing function; with A = 1.7159 it gives f(1) = 1 and f(-1) = -1.
SQUASH_S: float = 2.0 / 3.0


# --------------------------------------------------------------------------- helpers


def _fmt(shape: tuple[int, ...]) -> str:
    """Format a shape compactly, e.g. ``(16,3,5,5)`` or ``(6,)``."""
    if len(shape) == 1:
        return f"({shape[0]},)"
    return "(" + ",".join(str(d) for d in shape) + ")"


def _array(name: str, a: npt.ArrayLike, ndim: int, layout: str) -> npt.NDArray[Any]:
    """``np.asarray(a)``, checking its number of dimensions."""
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {layout}, got {_fmt(arr.shape)}")
    return arr


def _expect(
    name: str, arr: npt.NDArray[Any], shape: tuple[int, ...], layout: str, why: str
) -> None:
    """Raise unless ``arr.shape == shape``; ``why`` says where the sizes come from."""
    if arr.shape != shape:
        raise ValueError(f"{name}: expected {layout} {why}, got {_fmt(arr.shape)}")


def _out_dtype(*arrays: npt.NDArray[Any]) -> type[np.floating[Any]]:
    """float64 if any input array is float64, else float32."""
    return np.float64 if any(a.dtype == np.float64 for a in arrays) else np.float32


def _f64(a: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return a.astype(np.float64, copy=False)


def _new(a: npt.ArrayLike, dtype: type[np.floating[Any]]) -> FloatArray:
    """A fresh array (never a view of an input) of the requested dtype."""
    return np.array(a, dtype=dtype, copy=True)


def _check_conv(x: npt.ArrayLike, w: npt.ArrayLike) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    x = _array("x", x, 4, "(N,C,H,W)")
    w = _array("w", w, 4, "(K,C,R,S)")
    _, c, h, wd = x.shape
    if w.shape[1] != c:
        raise ValueError(f"w: expected (K,C,R,S) with C={c} to match x, got {_fmt(w.shape)}")
    _check_kernel_size("w", w.shape[-2:], "(K,C,R,S)", w.shape, h, wd)
    return x, w


def _check_kernel_size(
    name: str, rs: tuple[int, ...], layout: str, shape: tuple[int, ...], h: int, wd: int
) -> None:
    r, s = rs
    if not (1 <= r <= h and 1 <= s <= wd):
        raise ValueError(
            f"{name}: expected {layout} with 1<=R<=H={h} and 1<=S<=W={wd} to fit x, got {_fmt(shape)}"
        )


def _check_table(table: npt.ArrayLike, c: int) -> npt.NDArray[np.bool_]:
    t = _array("table", table, 2, "(C,K)")
    if t.dtype != np.bool_:
        raise TypeError(f"table: expected a bool array, got dtype {t.dtype}")
    if t.shape[0] != c:
        raise ValueError(f"table: expected (C,K) with C={c} to match x, got {_fmt(t.shape)}")
    return t


def _check_sparse(
    x: npt.ArrayLike, w: npt.ArrayLike, table: npt.ArrayLike
) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[np.bool_]]:
    x = _array("x", x, 4, "(N,C,H,W)")
    w = _array("w", w, 3, "(T,R,S)")
    t = _check_table(table, x.shape[1])
    n_conn = int(t.sum())
    if w.shape[0] != n_conn:
        raise ValueError(
            f"w: expected (T,R,S) with T={n_conn} connections in table, got {_fmt(w.shape)}"
        )
    _check_kernel_size("w", w.shape[1:], "(T,R,S)", w.shape, x.shape[2], x.shape[3])
    return x, w, t


# Pure float64 kernels (no checks, no dtype handling) shared by the public functions.


def _conv_fwd(
    x: npt.NDArray[np.float64], w: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    r, s = w.shape[2:]
    win = sliding_window_view(x, (r, s), axis=(2, 3))  # (N, C, Ho, Wo, R, S), a view
    y = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # (N, Ho, Wo, K)
    return y.transpose(0, 3, 1, 2) + b[None, :, None, None]


def _conv_bwd(
    x: npt.NDArray[np.float64], w: npt.NDArray[np.float64], dy: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    r, s = w.shape[2:]
    # dw[k,c,r,s] = sum_{n,i,j} dy[n,k,i,j] x[n,c,i+r,j+s]
    win = sliding_window_view(x, (r, s), axis=(2, 3))  # (N, C, Ho, Wo, R, S)
    dw = np.tensordot(dy, win, axes=([0, 2, 3], [0, 2, 3]))  # (K, C, R, S)
    db = dy.sum(axis=(0, 2, 3))
    # dx[n,c,p,q] = sum_{k,r,s} dy[n,k,p-r,q-s] w[k,c,r,s]: a "full" correlation of the
    # zero-padded dy with the flipped kernel.
    dyp = np.pad(dy, ((0, 0), (0, 0), (r - 1, r - 1), (s - 1, s - 1)))
    dwin = sliding_window_view(dyp, (r, s), axis=(2, 3))  # (N, K, H, W, R, S)
    dx = np.tensordot(dwin, w[:, :, ::-1, ::-1], axes=([1, 4, 5], [0, 2, 3]))  # (N, H, W, C)
    return dx.transpose(0, 3, 1, 2), dw, db


def _groups(table: npt.NDArray[np.bool_]) -> list[tuple[int, npt.NDArray[np.intp], slice]]:
    """Per output map k: (k, its connected input maps c ascending, its kernels' slice of w)."""
    out, t0 = [], 0
    for k in range(table.shape[1]):
        cs = np.flatnonzero(table[:, k])
        out.append((k, cs, slice(t0, t0 + cs.size)))
        t0 += cs.size
    return out


# --------------------------------------------------------------------------- convolution


def conv2d_forward(x: npt.ArrayLike, w: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Dense valid cross-correlation, stride 1, plus a bias per output map.

    Shapes: x (N,C,H,W), w (K,C,R,S), b (K,) -> y (N,K,H-R+1,W-S+1), with
    ``y[n,k,i,j] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n,c,i+r,j+s]``.
    """
    x, w = _check_conv(x, w)
    b = _array("b", b, 1, "(K,)")
    _expect("b", b, (w.shape[0],), "(K,)", f"with K={w.shape[0]} to match w")
    return _new(_conv_fwd(_f64(x), _f64(w), _f64(b)), _out_dtype(x, w, b))


def conv2d_backward(
    x: npt.ArrayLike, w: npt.ArrayLike, dy: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gradients of ``sum(conv2d_forward(x, w, b) * dy)``.

    Shapes: x (N,C,H,W), w (K,C,R,S), dy (N,K,H-R+1,W-S+1) ->
    dx (N,C,H,W), dw (K,C,R,S), db (K,).
    """
    x, w = _check_conv(x, w)
    dy = _array("dy", dy, 4, "(N,K,H-R+1,W-S+1)")
    (n, _, h, wd), (k, _, r, s) = x.shape, w.shape
    want = (n, k, h - r + 1, wd - s + 1)
    _expect("dy", dy, want, "(N,K,H-R+1,W-S+1)", f"= {_fmt(want)} to match x and w")
    dt = _out_dtype(x, w, dy)
    dx, dw, db = _conv_bwd(_f64(x), _f64(w), _f64(dy))
    return _new(dx, dt), _new(dw, dt), _new(db, dt)


def sparse_conv2d_forward(
    x: npt.ArrayLike, w: npt.ArrayLike, b: npt.ArrayLike, table: npt.ArrayLike
) -> FloatArray:
    """Valid cross-correlation over the input maps a connection table names (C3, Table I).

    Shapes: x (N,C,H,W), w (T,R,S), b (K,), table bool (C,K) with T True entries ->
    y (N,K,H-R+1,W-S+1).

    ``w`` holds one kernel per connected pair (c, k), ordered by output map k, then input
    map c (the rows of ``np.argwhere(table.T)``). ``y[:,k] = b[k] + sum over the c with
    table[c,k] of the correlation of x[:,c] with that pair's kernel``.
    """
    x, w, t = _check_sparse(x, w, table)
    b = _array("b", b, 1, "(K,)")
    _expect("b", b, (t.shape[1],), "(K,)", f"with K={t.shape[1]} to match table")
    # Only the connected maps enter each sum: an unconnected map holding NaN or inf must
    # not reach the output (a zero-filled dense kernel would turn 0 * inf into NaN).
    xf, wf, bf = _f64(x), _f64(w), _f64(b)
    n, _, h, wd = x.shape
    r, s = w.shape[1:]
    y = np.empty((n, t.shape[1], h - r + 1, wd - s + 1))
    for k, cs, ts in _groups(t):
        y[:, k] = bf[k]
        if cs.size:
            y[:, k] += _conv_fwd(xf[:, cs], wf[ts][None], np.zeros(1))[:, 0]
    return _new(y, _out_dtype(x, w, b))


def sparse_conv2d_backward(
    x: npt.ArrayLike, w: npt.ArrayLike, dy: npt.ArrayLike, table: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gradients of ``sum(sparse_conv2d_forward(x, w, b, table) * dy)``.

    Shapes: x (N,C,H,W), w (T,R,S), dy (N,K,H-R+1,W-S+1), table bool (C,K) ->
    dx (N,C,H,W), dw (T,R,S) (same pair order as w), db (K,).
    """
    x, w, t = _check_sparse(x, w, table)
    dy = _array("dy", dy, 4, "(N,K,H-R+1,W-S+1)")
    n, _, h, wd = x.shape
    r, s = w.shape[1:]
    want = (n, t.shape[1], h - r + 1, wd - s + 1)
    _expect("dy", dy, want, "(N,K,H-R+1,W-S+1)", f"= {_fmt(want)} to match x, w and table")
    xf, wf, dyf = _f64(x), _f64(w), _f64(dy)
    dx, dw = np.zeros_like(xf), np.zeros_like(wf)
    for k, cs, ts in _groups(t):
        if cs.size:
            dxk, dwk, _ = _conv_bwd(xf[:, cs], wf[ts][None], dyf[:, k : k + 1])
            dx[:, cs] += dxk
            dw[ts] = dwk[0]
    db = dyf.sum(axis=(0, 2, 3))
    dt = _out_dtype(x, w, dy)
    return _new(dx, dt), _new(dw, dt), _new(db, dt)


# --------------------------------------------------------------------------- subsampling


def _check_subsample(
    x: npt.ArrayLike, coef: npt.ArrayLike
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    x = _array("x", x, 4, "(N,C,H,W)")
    h, wd = x.shape[2:]
    if h % 2 or wd % 2:
        raise ValueError(f"x: expected (N,C,H,W) with H and W even, got {_fmt(x.shape)}")
    coef = _array("coef", coef, 1, "(C,)")
    _expect("coef", coef, (x.shape[1],), "(C,)", f"with C={x.shape[1]} to match x")
    return x, coef


def _block_sums(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).sum(axis=(3, 5))


def subsample_forward(x: npt.ArrayLike, coef: npt.ArrayLike, bias: npt.ArrayLike) -> FloatArray:
    """Trainable 2x2 subsampling (S2, S4): sum of each 2x2 block, times a coefficient, plus a bias.

    Shapes: x (N,C,H,W) with H and W even, coef (C,), bias (C,) -> y (N,C,H/2,W/2), with
    ``y[n,c,i,j] = coef[c] * sum(x[n,c,2i:2i+2,2j:2j+2]) + bias[c]``.
    """
    x, coef = _check_subsample(x, coef)
    bias = _array("bias", bias, 1, "(C,)")
    _expect("bias", bias, (x.shape[1],), "(C,)", f"with C={x.shape[1]} to match x")
    y = _f64(coef)[:, None, None] * _block_sums(_f64(x)) + _f64(bias)[:, None, None]
    return _new(y, _out_dtype(x, coef, bias))


def subsample_backward(
    x: npt.ArrayLike, coef: npt.ArrayLike, dy: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gradients of ``sum(subsample_forward(x, coef, bias) * dy)``.

    Shapes: x (N,C,H,W), coef (C,), dy (N,C,H/2,W/2) -> dx (N,C,H,W), dcoef (C,), dbias (C,).
    """
    x, coef = _check_subsample(x, coef)
    dy = _array("dy", dy, 4, "(N,C,H/2,W/2)")
    n, c, h, wd = x.shape
    want = (n, c, h // 2, wd // 2)
    _expect("dy", dy, want, "(N,C,H/2,W/2)", f"= {_fmt(want)} to match x")
    x64, dy64 = _f64(x), _f64(dy)
    g = _f64(coef)[:, None, None] * dy64  # gradient reaching each of the 4 inputs of a block
    dx = np.repeat(np.repeat(g, 2, axis=2), 2, axis=3)
    dcoef = (dy64 * _block_sums(x64)).sum(axis=(0, 2, 3))
    dbias = dy64.sum(axis=(0, 2, 3))
    dt = _out_dtype(x, coef, dy)
    return _new(dx, dt), _new(dcoef, dt), _new(dbias, dt)


# --------------------------------------------------------------------------- linear (F6)


def _check_linear(x: npt.ArrayLike, w: npt.ArrayLike) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    x = _array("x", x, 2, "(N,I)")
    w = _array("w", w, 2, "(O,I)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(f"w: expected (O,I) with I={x.shape[1]} to match x, got {_fmt(w.shape)}")
    return x, w


def linear_forward(x: npt.ArrayLike, w: npt.ArrayLike, b: npt.ArrayLike) -> FloatArray:
    """Fully connected layer (F6): ``y = x @ w.T + b``.

    Shapes: x (N,I), w (O,I), b (O,) -> y (N,O).
    """
    x, w = _check_linear(x, w)
    b = _array("b", b, 1, "(O,)")
    _expect("b", b, (w.shape[0],), "(O,)", f"with O={w.shape[0]} to match w")
    return _new(_f64(x) @ _f64(w).T + _f64(b), _out_dtype(x, w, b))


def linear_backward(
    x: npt.ArrayLike, w: npt.ArrayLike, dy: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Gradients of ``sum(linear_forward(x, w, b) * dy)``.

    Shapes: x (N,I), w (O,I), dy (N,O) -> dx (N,I), dw (O,I), db (O,).
    """
    x, w = _check_linear(x, w)
    dy = _array("dy", dy, 2, "(N,O)")
    want = (x.shape[0], w.shape[0])
    _expect("dy", dy, want, "(N,O)", f"= {_fmt(want)} to match x and w")
    x64, w64, dy64 = _f64(x), _f64(w), _f64(dy)
    dt = _out_dtype(x, w, dy)
    return _new(dy64 @ w64, dt), _new(dy64.T @ x64, dt), _new(dy64.sum(axis=0), dt)


# --------------------------------------------------------------------------- squashing


def squash_forward(a: npt.ArrayLike) -> FloatArray:
    """Squashing function ``f(a) = A tanh(S a)``, A = SQUASH_A, S = SQUASH_S, elementwise.

    Shapes: a (any) -> y (same shape).
    """
    a = np.asarray(a)
    return _new(SQUASH_A * np.tanh(SQUASH_S * _f64(a)), _out_dtype(a))


def squash_backward(y: npt.ArrayLike, dy: npt.ArrayLike) -> FloatArray:
    """Gradient through the squashing function, computed from its output ``y = f(a)``.

    ``da = dy * f'(a) = dy * (S/A) * (A^2 - y^2)``.
    Shapes: y (any), dy (same shape as y) -> da (same shape).
    """
    y = np.asarray(y)
    dy = np.asarray(dy)
    if dy.shape != y.shape:
        raise ValueError(f"dy: expected shape {_fmt(y.shape)} to match y, got {_fmt(dy.shape)}")
    y64 = _f64(y)
    da = _f64(dy) * (SQUASH_S / SQUASH_A) * (SQUASH_A**2 - y64 * y64)
    return _new(da, _out_dtype(y, dy))


# --------------------------------------------------------------------------- RBF output


def _check_rbf(x: npt.ArrayLike, c: npt.ArrayLike) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    x = _array("x", x, 2, "(N,J)")
    c = _array("c", c, 2, "(M,J)")
    if c.shape[1] != x.shape[1]:
        raise ValueError(f"c: expected (M,J) with J={x.shape[1]} to match x, got {_fmt(c.shape)}")
    return x, c


def rbf_forward(x: npt.ArrayLike, c: npt.ArrayLike) -> FloatArray:
    """Euclidean RBF output layer: squared distance of each input to each centre.

    Shapes: x (N,J), c (M,J) -> y (N,M), with ``y[n,i] = sum_j (x[n,j] - c[i,j])^2``.
    """
    x, c = _check_rbf(x, c)
    diff = _f64(x)[:, None, :] - _f64(c)[None, :, :]  # (N, M, J)
    return _new(np.einsum("nij,nij->ni", diff, diff), _out_dtype(x, c))


def rbf_backward(
    x: npt.ArrayLike, c: npt.ArrayLike, dy: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Gradients of ``sum(rbf_forward(x, c) * dy)``.

    Shapes: x (N,J), c (M,J), dy (N,M) -> dx (N,J), dc (M,J), with
    ``dx[n,j] = 2 sum_i dy[n,i] (x[n,j] - c[i,j])`` and
    ``dc[i,j] = -2 sum_n dy[n,i] (x[n,j] - c[i,j])``.
    """
    x, c = _check_rbf(x, c)
    dy = _array("dy", dy, 2, "(N,M)")
    want = (x.shape[0], c.shape[0])
    _expect("dy", dy, want, "(N,M)", f"= {_fmt(want)} to match x and c")
    diff = _f64(x)[:, None, :] - _f64(c)[None, :, :]  # (N, M, J)
    dy64 = _f64(dy)
    dx = 2.0 * np.einsum("ni,nij->nj", dy64, diff)
    dc = -2.0 * np.einsum("ni,nij->ij", dy64, diff)
    dt = _out_dtype(x, c, dy)
    return _new(dx, dt), _new(dc, dt)


# --------------------------------------------------------------------------- a raw digit

_BOX, _FIELD, _MIN_CROP = 20, 28, 10
#: QMNIST's resampler maps each input pixel onto 0.99 of its width: one that straddles an
#: output boundary gives 0.99 of its area, one that does not gives all of it. MNIST's
#: digits show this aliasing, so it is kept.
_FUDGE = 0.99


def _axis_map(n: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], FloatArray, FloatArray]:
    """Where each of n crop positions lands in the 20-pixel box: cells c0, c1 and weights
    w0, w1 (w1 = 0 when the pixel does not straddle a cell boundary)."""
    scale = _BOX / n
    x = _BOX / 2.0 + scale * (np.arange(n, dtype=np.float64) - n / 2.0)
    xw = x + _FUDGE * scale
    lo, hi = np.floor(x + 1e-11), np.ceil(xw - 1e-11) - 1.0
    c0 = np.clip(lo, 0, _BOX - 1).astype(np.intp)
    c1 = np.clip(hi, 0, _BOX - 1).astype(np.intp)
    split = c0 != c1
    w0 = np.where(split, np.clip((lo + 1.0) - x, 0.0, 1.0), scale)
    w1 = np.where(split, np.clip(xw - hi, 0.0, 1.0), 0.0)
    return c0, c1, w0, w1


def _ink(img: npt.NDArray[Any], invert: int, pixel_max: float) -> FloatArray:
    """Polarity and background: |pixel - border's lower median| where at least
    max(INK_THRESHOLD * pixel_max, NOISE_FACTOR * the border's spread), else 0 (float64,
    exact); the spread is the lower median of |border - its lower median|."""
    h, w = img.shape
    x = img.astype(np.float64)
    if h == 1 or w == 1:
        border = x.ravel()  # every pixel is on the border
    else:
        border = np.concatenate([x[0], x[-1], x[1:-1, 0], x[1:-1, -1]])
    k = (border.size - 1) // 2
    bg = float(np.partition(border, k)[k])
    spread = float(np.partition(np.abs(border - bg), k)[k])
    inv = bg > 0.5 * pixel_max if invert < 0 else bool(invert)
    v = bg - x if inv else x - bg
    return np.where(v >= max(INK_THRESHOLD * pixel_max, NOISE_FACTOR * spread), v, 0.0)


def _normalize(ink: FloatArray) -> npt.NDArray[np.uint8] | None:
    """The 7 steps on an ink image (background 0); None when it has no ink."""
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return None
    # 1. bounding box; 2. square crop of side m, origin moved back by half the missing
    # width (clipped at 0), zero outside the image; 3. doubled while under 20 px
    top, h = int(rows[0]), int(rows[-1] - rows[0] + 1)
    left, w = int(cols[0]), int(cols[-1] - cols[0] + 1)
    m = max(h, w, _MIN_CROP)
    r0, q0 = max(0, top - (m - h) // 2), max(0, left - (m - w) // 2)
    crop = np.zeros((m, m))
    part = ink[r0 : r0 + m, q0 : q0 + m]
    crop[: part.shape[0], : part.shape[1]] = part
    while crop.shape[0] < _BOX:
        crop = np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1)
    n = crop.shape[0]
    # 4. area-coverage resampling, one axis at a time; every cell sums its terms in
    # ascending crop position (the C++ kernel skips the +0.0 terms, which change no sum)
    c0, c1, w0, w1 = _axis_map(n)
    tmp = np.zeros((n, _BOX))
    for k in range(n):
        tmp[:, c0[k]] += crop[:, k] * w0[k]
        tmp[:, c1[k]] += crop[:, k] * w1[k]
    box = np.zeros((_BOX, _BOX))
    for k in range(n):
        box[c0[k], :] += w0[k] * tmp[k, :]
        box[c1[k], :] += w1[k] * tmp[k, :]
    # 5. bytes, the darkest ink 255
    q = np.clip(np.floor(box * (255.0 / box.max()) + 0.5), 0, 255).astype(np.int64)
    # 6. centre of mass in half pixels (pixel centres at i + 0.5); 7. offset
    # int(15 - centre) = trunc((30 S - X) / (2 S)), in exact integers
    s = int(q.sum())
    idx = 2 * np.arange(_BOX, dtype=np.int64) + 1
    offsets = []
    for moment in (int((q.sum(axis=1) * idx).sum()), int((q.sum(axis=0) * idx).sum())):
        num = 30 * s - moment
        offsets.append(abs(num) // (2 * s) * (1 if num >= 0 else -1))
    oi, oj = offsets
    field = np.zeros((_FIELD + 2 * _BOX, _FIELD + 2 * _BOX), np.uint8)
    field[_BOX + oi : _BOX + oi + _BOX, _BOX + oj : _BOX + oj + _BOX] = q
    return np.ascontiguousarray(field[_BOX : _BOX + _FIELD, _BOX : _BOX + _FIELD])


def normalize_digit(
    img: npt.ArrayLike, invert: str | bool = "auto", *, pixel_max: float | None = None
) -> npt.NDArray[np.uint8]:
    """One grey image (H,W) -> (28,28) uint8 in MNIST's format, as MNIST's digits were made
    (paper III-A, QMNIST's reconstruction): see :func:`lenet_fast.image.normalize_digit`.

    Raises :class:`NoInkError` (a ValueError, "img: no ink ...") for a blank image.
    """
    arr, pm = grey_image("img", img, pixel_max)
    out = _normalize(_ink(arr, invert_mode(invert), pm))
    if out is None:
        raise NoInkError(no_ink_message("img"))
    return out


def normalize_digits(
    images: Any, invert: str | bool = "auto", *, pixel_max: float | None = None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Many grey images, (N,H,W) or a sequence of (H,W) arrays -> digits (N,28,28) uint8
    and ink (N,) bool; a blank image gives an all-zero digit and ink False."""
    mode = invert_mode(invert)
    if isinstance(images, np.ndarray) and images.ndim != 2:
        stack, pm = grey_stack("images", images, pixel_max)
        seq = [(im, pm) for im in stack]
    else:
        seq = [
            grey_image(f"images[{i}]", im, pixel_max, check_values=False)
            for i, im in enumerate(image_list(images))
        ]
    digits = np.zeros((len(seq), _FIELD, _FIELD), np.uint8)
    ink = np.zeros(len(seq), bool)
    for i, (arr, pm) in enumerate(seq):
        image_values(f"images[{i}]", arr, pm, pixel_max is not None)
        out = _normalize(_ink(arr, mode, pm))
        if out is not None:
            digits[i], ink[i] = out, True
    return digits, ink
