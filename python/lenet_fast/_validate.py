"""Argument checks shared by the package: each raises TypeError (wrong kind of value) or
ValueError (right kind, wrong value) with a message that starts with the argument's name
and says what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "INK_THRESHOLD",
    "MAX_PIXELS",
    "NOISE_FACTOR",
    "NoInkError",
    "choice",
    "digit_images",
    "finite_number",
    "grey_image",
    "grey_stack",
    "image_list",
    "image_values",
    "int_at_least",
    "invert_mode",
    "is_number",
    "labels",
    "no_ink_message",
    "out_of_range",
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


#: A pixel is ink where it differs from the background by at least this fraction of full
#: white (half of one of MNIST's 255 grey levels); below, it counts as background.
INK_THRESHOLD: float = 0.5 / 255.0
#: ...or this many times the border's spread (its noise), if that is more (csrc/kernels.h)
NOISE_FACTOR: float = 8.0


#: The largest image normalize_digit takes (16384 x 16384 pixels): far above any scan of
#: one digit, and a bound on the memory a call can ask for.
MAX_PIXELS = 1 << 28


class NoInkError(ValueError):
    """A grey image with no ink: nothing differs from its background by at least
    ``INK_THRESHOLD`` of full white. Defined here, below the kernels that raise it, and
    exported by :mod:`lenet_fast.image`."""

    __module__ = "lenet_fast.image"


#: The value of full white of each pixel type when ``pixel_max`` is not given.
_PIXEL_MAX = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def invert_mode(value: Any) -> int:
    """``invert`` ("auto", True or False) as the kernel's -1 (auto), 1 or 0."""
    if isinstance(value, str):
        if value == "auto":
            return -1
        raise ValueError(f"invert: expected 'auto', True or False, got {value!r}")
    if isinstance(value, (bool, np.bool_)):
        return int(bool(value))
    raise TypeError(f"invert: expected 'auto', True or False, got {type(value).__name__}")


def _grey_array(name: str, img: Any, ndim: int, layout: str) -> npt.NDArray[Any]:
    """``img`` as a native C-contiguous array of uint8, uint16, float32 or float64 (float16
    widened to float32) with ``ndim`` dimensions, the last two >= 1."""
    try:
        arr = img if isinstance(img, np.ndarray) else np.asarray(img)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected {layout} grey pixels, got {type(img).__name__}") from e
    dt = arr.dtype
    if dt == np.float16:
        arr = arr.astype(np.float32)
    elif not (dt.kind == "u" and dt.itemsize <= 2) and not (
        dt.kind == "f" and dt.itemsize in (4, 8)
    ):
        raise TypeError(
            f"{name}: expected {layout} uint8, uint16 or floating-point grey pixels, got {dt} "
            f"array of shape {arr.shape} (convert with .astype(numpy.uint8) or "
            f".astype(numpy.float32))"
        )
    if arr.ndim != ndim or min(arr.shape[-2:], default=0) < 1:
        raise ValueError(f"{name}: expected {layout} with H, W >= 1, got shape {arr.shape}")
    if arr.shape[-1] * arr.shape[-2] > MAX_PIXELS:
        raise ValueError(
            f"{name}: expected at most {MAX_PIXELS:,} pixels an image, got shape {arr.shape}"
        )
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    return arr if arr.flags.aligned else arr.copy()  # a copy is aligned


def _pixel_max(arr: npt.NDArray[Any], pixel_max: Any) -> float:
    if pixel_max is not None:
        return finite_number("pixel_max", pixel_max)
    return _PIXEL_MAX.get(arr.dtype, 1.0)


def grey_image(
    name: str, img: Any, pixel_max: Any, *, check_values: bool = True
) -> tuple[npt.NDArray[Any], float]:
    """``img`` as a native C-contiguous (H,W) array of uint8, uint16, float32 or float64
    (float16 widened to float32), and the value of full white (``pixel_max``, else 255 for
    uint8, 65535 for uint16, 1 for floats).

    TypeError: not array-like, another dtype (bool, signed integers, complex, ...), or a
    ``pixel_max`` that is not a number. ValueError: not (H,W) with H, W >= 1, ``pixel_max``
    not finite and > 0, and (``check_values``) NaN or inf, or pixels outside
    [0, pixel_max]; floats need ``pixel_max`` unless they lie in [0, 1]."""
    if pixel_max is not None:
        finite_number("pixel_max", pixel_max)
    arr = _grey_array(name, img, 2, "a 2-D (H,W) image of")
    pm = _pixel_max(arr, pixel_max)
    if check_values:
        image_values(name, arr, pm, pixel_max is not None)
    return arr, pm


def grey_stack(name: str, images: Any, pixel_max: Any) -> tuple[npt.NDArray[Any], float]:
    """An (N,H,W) stack checked as :func:`grey_image` checks one image, but not its values."""
    if pixel_max is not None:
        finite_number("pixel_max", pixel_max)
    arr = _grey_array(name, images, 3, "(N,H,W)")
    return arr, _pixel_max(arr, pixel_max)


def image_values(name: str, arr: npt.NDArray[Any], pm: float, given: bool) -> None:
    """ValueError unless every pixel of ``arr`` is finite and in [0, pm]."""
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite pixels, got NaN or inf")
    if arr.dtype.kind == "u" and pm >= _PIXEL_MAX[arr.dtype]:
        return
    lo, hi = float(arr.min()), float(arr.max())
    if lo >= 0 and hi <= pm:
        return
    raise ValueError(out_of_range(name, arr.dtype, lo, hi, pm, given))


def out_of_range(
    name: str, dtype: np.dtype[Any], lo: float, hi: float, pm: float, given: bool
) -> str:
    if dtype.kind == "f" and not given:
        return (
            f"{name}: floating-point pixels must lie in [0, 1] (full white = 1), got values in "
            f"[{lo:g}, {hi:g}]; pass pixel_max=255 (or whatever value full white has) for "
            f"another scale"
        )
    return f"{name}: expected pixels in [0, pixel_max={pm:g}], got values in [{lo:g}, {hi:g}]"


def no_ink_message(name: str) -> str:
    return (
        f"{name}: no ink: no pixel differs from the background (the border's median) by "
        f"{INK_THRESHOLD:.4g} of full white or more; a blank image has no digit"
    )


def image_list(images: Any) -> list[Any]:
    """``images`` as a list of 2-D images: an (N,H,W) array or a sequence of (H,W) ones."""
    if isinstance(images, np.ndarray):
        if images.ndim != 3:
            raise ValueError(
                f"images: expected (N,H,W) pixels or a sequence of (H,W) images, got shape "
                f"{images.shape}"
            )
        return list(images)
    if isinstance(images, (str, bytes)) or not hasattr(images, "__len__"):
        raise TypeError(
            f"images: expected an (N,H,W) array or a sequence of (H,W) images, got "
            f"{type(images).__name__}"
        )
    return list(images)
