"""The compiled LeNet-5 kernels (C++, AVX2+FMA or scalar, chosen at run time).

Same names and signatures as :mod:`lenet_fast.reference`. Every array is a C-contiguous
float32 ``numpy.ndarray`` in NCHW layout (the table of the sparse convolution is bool);
anything else raises TypeError (not an array, wrong dtype) or ValueError (wrong shape,
sizes that disagree, a strided view) naming the argument and what was expected. Each call
returns new arrays. Every ``*_backward`` returns the gradients of ``sum(y * dy)``, summed
over the batch for the parameters.

The calls release the GIL and are safe to call from many threads at once; inside one call
up to :func:`lenet_fast.get_num_threads` threads work, and the result does not depend on
that number.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._validate import (
    NoInkError,
    grey_image,
    grey_stack,
    image_list,
    invert_mode,
    no_ink_message,
    out_of_range,
)

__all__ = [
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

F32 = npt.NDArray[np.float32]


def conv2d_forward(x: F32, w: F32, b: F32) -> F32:
    """Dense valid cross-correlation, stride 1, plus a bias per output map (C1, C5).

    x (N,C,H,W), w (K,C,R,S), b (K,) -> y (N,K,H-R+1,W-S+1), with
    ``y[n,k,i,j] = b[k] + sum_{c,r,s} w[k,c,r,s] * x[n,c,i+r,j+s]``.
    """
    return _core.conv2d_forward(x, w, b)


def conv2d_backward(x: F32, w: F32, dy: F32) -> tuple[F32, F32, F32]:
    """Gradients of ``sum(conv2d_forward(x, w, b) * dy)``.

    x (N,C,H,W), w (K,C,R,S), dy (N,K,H-R+1,W-S+1) -> dx (N,C,H,W), dw (K,C,R,S), db (K,).
    """
    return _core.conv2d_backward(x, w, dy)


def sparse_conv2d_forward(x: F32, w: F32, b: F32, table: npt.NDArray[np.bool_]) -> F32:
    """Valid cross-correlation over the input maps a connection table names (C3, Table I).

    x (N,C,H,W), w (T,R,S), b (K,), table (C,K) bool with T True entries -> y
    (N,K,H-R+1,W-S+1). ``w`` holds one kernel per connected pair, ordered by output map
    k, then input map c ascending; ``y[:,k]`` sums only over the c with ``table[c,k]``.
    """
    return _core.sparse_conv2d_forward(x, w, b, table)


def sparse_conv2d_backward(
    x: F32, w: F32, dy: F32, table: npt.NDArray[np.bool_]
) -> tuple[F32, F32, F32]:
    """Gradients of ``sum(sparse_conv2d_forward(x, w, b, table) * dy)``.

    x (N,C,H,W), w (T,R,S), dy (N,K,Ho,Wo), table (C,K) -> dx (N,C,H,W), dw (T,R,S), db (K,).
    """
    return _core.sparse_conv2d_backward(x, w, dy, table)


def subsample_forward(x: F32, coef: F32, bias: F32) -> F32:
    """Trainable 2x2 subsampling (S2, S4): block sum times a coefficient, plus a bias.

    x (N,C,H,W) with H, W even, coef (C,), bias (C,) -> y (N,C,H/2,W/2), with
    ``y[n,c,i,j] = coef[c] * x[n,c,2i:2i+2,2j:2j+2].sum() + bias[c]``.
    """
    return _core.subsample_forward(x, coef, bias)


def subsample_backward(x: F32, coef: F32, dy: F32) -> tuple[F32, F32, F32]:
    """Gradients of ``sum(subsample_forward(x, coef, bias) * dy)``.

    x (N,C,H,W), coef (C,), dy (N,C,H/2,W/2) -> dx (N,C,H,W), dcoef (C,), dbias (C,).
    """
    return _core.subsample_backward(x, coef, dy)


def linear_forward(x: F32, w: F32, b: F32) -> F32:
    """Full connection (F6): x (N,I), w (O,I), b (O,) -> y = x @ w.T + b, (N,O)."""
    return _core.linear_forward(x, w, b)


def linear_backward(x: F32, w: F32, dy: F32) -> tuple[F32, F32, F32]:
    """Gradients of ``sum(linear_forward(x, w, b) * dy)``.

    x (N,I), w (O,I), dy (N,O) -> dx (N,I), dw (O,I), db (O,).
    """
    return _core.linear_backward(x, w, dy)


def squash_forward(a: F32) -> F32:
    """The paper's squashing function, element-wise: ``y = 1.7159 tanh(2a/3)``, any shape.

    Both paths evaluate tanh as a rational function accurate to a few float32 ulp (the AVX2
    path with FMA, so the two can differ in the last bit). NaN stays NaN; +-inf gives
    +-1.7159 (to within an ulp).
    """
    return _core.squash_forward(a)


def squash_backward(y: F32, dy: F32) -> F32:
    """Gradient through the squashing function from its output y = f(a), any shape.

    y, dy (same shape) -> ``da = dy * (S/A) * (A^2 - y^2)`` with A = 1.7159, S = 2/3.
    """
    return _core.squash_backward(y, dy)


def rbf_forward(x: F32, c: F32) -> F32:
    """Euclidean RBF output: x (N,J), centres c (M,J) -> y (N,M), ``sum_j (x[n,j]-c[i,j])^2``."""
    return _core.rbf_forward(x, c)


def rbf_backward(x: F32, c: F32, dy: F32) -> tuple[F32, F32]:
    """Gradients of ``sum(rbf_forward(x, c) * dy)``: x (N,J), c (M,J), dy (N,M) -> dx, dc."""
    return _core.rbf_backward(x, c, dy)


# Status codes of _core.normalize_digits.
_INK, _NO_INK, _NOT_FINITE, _OUT_OF_RANGE = 0, 1, 2, 3


def _raise_for(name: str, status: int, arr: npt.NDArray[Any], pm: float, given: bool) -> None:
    if status == _NO_INK:
        raise NoInkError(no_ink_message(name))
    if status == _NOT_FINITE:
        raise ValueError(f"{name}: expected finite pixels, got NaN or inf")
    if status == _OUT_OF_RANGE:
        lo, hi = float(arr.min()), float(arr.max())
        raise ValueError(out_of_range(name, arr.dtype, lo, hi, pm, given))


def normalize_digit(
    img: npt.ArrayLike, invert: str | bool = "auto", *, pixel_max: float | None = None
) -> npt.NDArray[np.uint8]:
    """One grey image (H,W) of uint8, uint16 or floats -> (28,28) uint8 in MNIST's format
    (paper III-A; QMNIST's reconstruction), in C++: see
    :func:`lenet_fast.image.normalize_digit`. Same bytes as
    :func:`lenet_fast.reference.normalize_digit`; NoInkError for a blank image."""
    mode = invert_mode(invert)
    arr, pm = grey_image("img", img, pixel_max, check_values=False)
    digits, status = _core.normalize_digits(arr[None], np.array([pm]), mode)
    _raise_for("img", int(status[0]), arr, pm, pixel_max is not None)
    return digits[0]


def normalize_digits(
    images: Any, invert: str | bool = "auto", *, pixel_max: float | None = None
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Many grey images -> (digits (N,28,28) uint8, ink (N,) bool), in C++ across up to
    :func:`lenet_fast.get_num_threads` threads, the GIL released: see
    :func:`lenet_fast.image.normalize_digits`."""
    mode = invert_mode(invert)
    given = pixel_max is not None
    views: Any
    if isinstance(images, np.ndarray) and images.ndim != 2:
        views, pm = grey_stack("images", images, pixel_max)
        pms = np.full(len(views), pm)
    else:
        seq = [
            grey_image(f"images[{i}]", im, pixel_max, check_values=False)
            for i, im in enumerate(image_list(images))
        ]
        views = [a for a, _ in seq]
        pms = np.array([p for _, p in seq], dtype=np.float64)
    digits, status = _core.normalize_digits(views, pms, mode)
    bad = np.flatnonzero(status > _NO_INK)
    if bad.size:
        i = int(bad[0])
        _raise_for(f"images[{i}]", int(status[i]), views[i], float(pms[i]), given)
    return digits, status == _INK
