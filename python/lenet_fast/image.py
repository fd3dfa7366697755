"""A raw digit (a scan, a photo, a canvas drawing) into MNIST's format.

:func:`load_image` (from :mod:`lenet_fast._imageio`: Pillow, the ``image`` extra, for
files; arrays need only NumPy) decodes a file, bytes, a ``PIL.Image`` or an array to grey
(H,W) uint8; :func:`normalize_digit` makes MNIST's 28x28 digit of it.

A model trained on MNIST sees only digits made the way MNIST's were (paper, III-A): light
ink on a black background, "size normalized to fit in a 20x20 pixel box while preserving
their aspect ratio", then "centered in a 28x28 image by computing the center of mass of the
pixels". A dark-on-white digit resized to 28x28 as it is gets about 10% right.
:func:`normalize_digit` applies MNIST's own normalisation, as QMNIST reconstructed it
(Yadav and Bottou, "Cold Case: The Lost MNIST Digits", 2019: it gives back MNIST's
training digits from the NIST originals). On an image whose ink is > 0 on a background of 0:

1. the ink bounding box (the rows and columns with any ink);
2. a square crop of side m = max(h, w, 10), the short side widened symmetrically (its
   origin moved back by half the missing width, at most to the image's edge; the crop
   reads 0 outside the image), so the aspect ratio is kept and a thin "1" not stretched;
3. while the crop is under 20 px a side, pixel doubling;
4. area-coverage resampling to 20x20: each input pixel's square is mapped onto the output
   grid and its ink spread over the cells it overlaps, by overlapped area (with QMNIST's
   0.99 "fudge" on the width of a pixel that straddles a cell boundary, whose aliasing
   shows in MNIST's digits);
5. scaling to bytes (rounded) so that the darkest ink is 255;
6. the centre of mass b of the 20x20 bytes, pixel centres at i + 0.5;
7. the 20x20 block placed in the 28x28 field at offset int(15 - b) per axis (so that the
   centre of mass falls on pixel 14), clipped to the field.

Before step 1, polarity and background: the background level is the lower median of the
image's border (its outermost rows and columns); ``invert="auto"`` inverts (dark ink on
light paper) when that level is above half of full white, ``True`` always, ``False``
never. Ink is then ``pixel - background`` (``background - pixel`` when inverted) where it
is at least :data:`INK_THRESHOLD` of full white (half of one of MNIST's 255 grey levels)
or :data:`NOISE_FACTOR` times the border's spread (the lower median of its pixels'
distances to the background level: the noise of a scan or a photo's paper), whichever is
more, and 0 elsewhere. An image without ink raises :class:`NoInkError`: a blank image has no
digit, and a random one would be worse than an error.

Pixels: uint8 (full white 255), uint16 (65535) or floating point in [0, 1]; ``pixel_max``
states another value of full white (floats in 0..255: ``pixel_max=255``; 12-bit scans in
uint16: ``pixel_max=4095``). NaN, inf, or values outside [0, pixel_max] are a ValueError.
Any size from 1x1 up (a 1x1 image is all border, so it has no ink).

The C++ kernel (``backend="fast"``, the default) and the NumPy reference
(``backend="reference"``) give the same bytes: both compute in float64 with the same
operations in the same order, and the centre of mass in integers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import kernels, reference
from ._imageio import ImageError, iter_image_files, load_image
from ._validate import INK_THRESHOLD, NOISE_FACTOR, NoInkError, choice

__all__ = [
    "INK_THRESHOLD",
    "NOISE_FACTOR",
    "ImageError",
    "NoInkError",
    "iter_image_files",
    "load_image",
    "normalize_digit",
    "normalize_digits",
]

_BACKENDS = ("fast", "reference")


def normalize_digit(
    img: npt.ArrayLike,
    invert: str | bool = "auto",
    *,
    pixel_max: float | None = None,
    backend: str = "fast",
) -> npt.NDArray[np.uint8]:
    """One grey image into MNIST's format: img (H,W) -> digit (28,28) uint8.

    ``img``: uint8, uint16 or floating point (see the module's docstring), any size >= 1x1.
    ``invert``: "auto" (from the border), True or False. ``pixel_max``: the value of full
    white, by default 255 (uint8), 65535 (uint16) or 1 (floats). ``backend``: "fast" (C++)
    or "reference" (NumPy), which give the same bytes.

    Raises :class:`NoInkError` (a ValueError, "img: no ink ...") when no pixel differs from
    the background by ``INK_THRESHOLD * pixel_max`` or more; TypeError for another dtype;
    ValueError for another shape, NaN or inf, or pixels outside [0, pixel_max].
    """
    mod = kernels if choice("backend", backend, _BACKENDS) == "fast" else reference
    return mod.normalize_digit(img, invert, pixel_max=pixel_max)


def normalize_digits(
    images: Any,
    invert: str | bool = "auto",
    *,
    pixel_max: float | None = None,
    backend: str = "fast",
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Many grey images into MNIST's format: images (N,H,W), or a sequence of N (H,W)
    images of any sizes and pixel types -> (digits (N,28,28) uint8, ink (N,) bool).

    A blank image gives an all-zero digit and ``ink[i] = False`` instead of
    :class:`NoInkError`; anything else is checked as :func:`normalize_digit` checks it (the
    message names ``images[i]``). ``pixel_max`` applies to every image (None: each image's
    dtype default). The fast backend releases the GIL and spreads the images over up to
    :func:`lenet_fast.get_num_threads` threads; the result does not depend on that number.
    """
    mod = kernels if choice("backend", backend, _BACKENDS) == "fast" else reference
    return mod.normalize_digits(images, invert, pixel_max=pixel_max)
