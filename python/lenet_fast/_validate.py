"""Argument checks shared by the package: each raises TypeError (wrong kind of value) or
ValueError (right kind, wrong value) with a message that starts with the argument's name
and says what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "choice",
    "digit_images",
    "finite_number",
    "int_at_least",
    "is_number",
    "labels",
    "positive_number",
]

_SIDE = 28  # MNIST digits are 28x28


def choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else a ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return str(value)


def is_number(value: Any) -> bool:
    """A real number (Python or NumPy, int or float) and not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))


def int_at_least(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def positive_number(name: str, value: Any) -> float:
    """``float(value)`` if it is finite and > 0, else ValueError; what ``float`` refuses
    raises as ``float`` does."""
    v = float(value)
    if not (v > 0 and np.isfinite(v)):
        raise ValueError(f"{name}: expected a finite number > 0, got {v}")
    return v


def finite_number(
    name: str, value: Any, *, minimum: float = 0.0, strict: bool = True, what: str | None = None
) -> float:
    """``value`` as a float if it is a number (TypeError otherwise), finite and > ``minimum``
    (``strict``) or >= it (ValueError otherwise). ``what`` replaces the TypeError's
    description of what was expected."""
    op = ">" if strict else ">="
    if not is_number(value):
        raise TypeError(
            f"{name}: expected {what or f'a number {op} {minimum:g}'}, "
            f"got {type(value).__name__ if what else repr(value)}"
        )
    v = float(value)
    if not (np.isfinite(v) and (v > minimum if strict else v >= minimum)):
        raise ValueError(f"{name}: expected a finite number {op} {minimum:g}, got {value}")
    return v


def digit_images(name: str, images: Any) -> npt.NDArray[np.uint8]:
    """``images`` as an array if it is uint8 (N,28,28) or (28,28): TypeError for another
    dtype, ValueError for another shape."""
    arr = images if isinstance(images, np.ndarray) else np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(
            f"{name}: expected uint8 (N,28,28) or (28,28), got {arr.dtype} array of shape "
            f"{arr.shape}"
        )
    if arr.ndim not in (2, 3) or arr.shape[-2:] != (_SIDE, _SIDE):
        raise ValueError(f"{name}: expected uint8 (N,28,28) or (28,28), got shape {arr.shape}")
    return arr


def labels(
    name: str, value: npt.ArrayLike, n: int, *, match: str = " to match x"
) -> npt.NDArray[np.intp]:
    """Integer labels of shape (n,) with values 0..9, as intp; ValueError otherwise."""
    lab = np.asarray(value)
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(
            f"{name}: expected integers of shape ({n},){match}, got {lab.dtype} {lab.shape}"
        )
    if n and (lab.min() < 0 or lab.max() > 9):
        raise ValueError(f"{name}: expected digits 0..9, got values in [{lab.min()}, {lab.max()}]")
    return lab.astype(np.intp, copy=False)
