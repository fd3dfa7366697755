"""MNIST for LeNet-5: checked local loading and the paper's input scaling.

* :func:`load_mnist` reads the four standard MNIST files (gzipped or not) from a folder,
  checks their structure and their sha256, and returns uint8 arrays (fetching missing
  files first with ``download=True``, through :mod:`lenet_fast.download`).
* :func:`load_idx` reads four files in the same layout with any counts (another dataset
  in MNIST's format), with the same structural checks and no checksum.
* :func:`preprocess` pads a 28x28 digit to the 32x32 input plane and maps bytes to
  ``-0.1 + 1.275 * p / 255`` (the paper, section II-B).

Where the data lives: the ``root`` argument, else the ``LENET_FAST_DATA`` environment
variable, else a per-user cache folder (see :func:`lenet_fast.download.resolve_root`).

Only NumPy and the standard library are used; nothing is cached between calls.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from . import _validate
from .download import MNIST_FILES, TIMEOUT, PathLike, download_files, resolve_root

__all__ = ["load_idx", "load_mnist", "preprocess", "resolve_root"]

_IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
_LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
_SIDE = 28

_WHAT_TO_DO_CORRUPT = (
    "Delete it and download it again (lenet_fast.download.download_mnist(root) or "
    "load_mnist(root, download=True)), or copy a good copy there."
)


def _root_origin(root: PathLike | None) -> str:
    if root is not None:
        return "the root argument"
    if os.environ.get("LENET_FAST_DATA", "").strip():
        return "$LENET_FAST_DATA"
    return "the default cache folder"


def _candidates(stem: str) -> tuple[str, ...]:
    """File names accepted for one MNIST file, in the order they are tried."""
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some copies name it
    return (stem + ".gz", stem, dotted)


def _parse_idx(
    data: bytes, path: Path, kind: str, count: int | None = None, fix: str = _WHAT_TO_DO_CORRUPT
) -> np.ndarray:
    """Check one decompressed IDX payload of ``kind`` ("images": unsigned bytes (N,28,28);
    "labels": unsigned bytes (N,) with values 0..9) and return it as a writable array.

    The structural checks (magic number, dimensions, exact length, label range) always
    run; ``count``, when given, is the N the header must give (MNIST's 60,000 or 10,000),
    checked before the length so a wrong header is named as such. ``fix`` ends each
    message with what to do."""
    magic = _IMAGES_MAGIC if kind == "images" else _LABELS_MAGIC
    ndim = 3 if kind == "images" else 1
    header_len = 4 + 4 * ndim
    what = f"MNIST {kind}" if count is not None else f"IDX {kind}"
    layout = "unsigned bytes, (N,28,28)" if kind == "images" else "unsigned bytes, (N,)"
    if len(data) < header_len:
        raise ValueError(
            f"{path}: only {len(data)} bytes, shorter than the {header_len}-byte IDX header "
            f"(truncated file). {fix}"
        )
    header = np.frombuffer(data, dtype=">u4", count=1 + ndim)
    got_magic = int(header[0])
    if got_magic != magic:
        raise ValueError(
            f"{path}: IDX magic number is 0x{got_magic:08X}, expected 0x{magic:08X} "
            f"({what}: {layout}); not an {what} file, or corrupt. {fix}"
        )
    dims = tuple(int(d) for d in header[1:])
    n = dims[0] if count is None else count
    want_dims = (n, _SIDE, _SIDE) if kind == "images" else (n,)
    if dims != want_dims:
        expected = (
            f"(MNIST has {count} {kind} in this file)"
            if count is not None
            else "(N,28,28): 28x28 images"
        )
        raise ValueError(
            f"{path}: IDX header gives dimensions {dims}, expected {want_dims} {expected}. {fix}"
        )
    expected_len = header_len + int(np.prod(want_dims))
    if len(data) != expected_len:
        problem = "truncated" if len(data) < expected_len else "trailing bytes after the data"
        raise ValueError(
            f"{path}: {len(data)} bytes after decompression, the header implies exactly "
            f"{expected_len} ({problem}). {fix}"
        )
    arr = np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(want_dims).copy()
    if kind == "labels":
        bad = np.flatnonzero(arr > 9)
        if bad.size:
            raise ValueError(
                f"{path}: {bad.size} labels outside 0..9 (first at index {int(bad[0])}: "
                f"{int(arr[bad[0]])}); corrupt file. {fix}"
            )
    return arr


def _read_bytes(path: Path, original_gz_size: int | None, fix: str) -> tuple[bytes, bytes]:
    """(the file's bytes, the IDX payload): gunzipped for a ``.gz`` name."""
    raw = path.read_bytes()
    if not path.name.endswith(".gz"):
        return raw, raw
    try:
        return raw, gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        original = "" if original_gz_size is None else f", the original is {original_gz_size}"
        raise ValueError(
            f"{path}: not a valid gzip file ({type(e).__name__}: {e}); it is "
            f"{len(raw)} bytes{original}. {fix}"
        ) from None


def _read_mnist_file(path: Path, stem: str, verify: bool) -> np.ndarray:
    kind, count, gz_size, gz_sha, _raw_size, raw_sha = MNIST_FILES[stem]
    raw, data = _read_bytes(path, gz_size, _WHAT_TO_DO_CORRUPT)
    actual_sha = hashlib.sha256(raw).hexdigest() if verify else None
    expected_sha = gz_sha if path.name.endswith(".gz") else raw_sha
    del raw
    arr = _parse_idx(data, path, kind, count)  # specific structural errors first
    if verify and actual_sha != expected_sha:
        raise ValueError(
            f"{path}: sha256 mismatch: expected {expected_sha}, got {actual_sha}. The file "
            f"is well-formed but is not the original MNIST file. {_WHAT_TO_DO_CORRUPT} "
            f"(To load a different dataset in MNIST format, pass verify=False, or use "
            f"load_idx.)"
        )
    return arr


def _find(root: Path, stem: str) -> Path | None:
    for name in _candidates(stem):
        p = root / name
        if p.is_file():
            return p
    return None


def load_mnist(
    root: PathLike | None = None,
    download: bool = False,
    *,
    mirrors: str | Iterable[str] | None = None,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load MNIST from a local folder.

    Parameters
    ----------
    root:
        The folder holding the files. ``None``: ``$LENET_FAST_DATA``, else the per-user
        cache folder (:func:`resolve_root`).
    download:
        Fetch missing files with :func:`download_mnist` (from ``mirrors``) first.
    mirrors:
        Passed to :func:`download_mnist` when ``download`` is true.
    verify:
        Check each file's sha256 against the original MNIST (default). ``False`` skips
        only that check (to read another dataset in MNIST's format); the structural
        checks always run.

    Returns
    -------
    (train_images, train_labels, test_images, test_labels):
        uint8 arrays of shapes (60000, 28, 28), (60000,), (10000, 28, 28) and (10000,):
        pixels 0 (background) .. 255 (ink), labels 0..9. Fresh, writable, C-contiguous.

    Files
    -----
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
    and ``t10k-labels-idx1-ubyte``, each read as ``<name>.gz`` if present, else the
    uncompressed ``<name>``, else the dotted variant (``train-images.idx3-ubyte``).

    Raises
    ------
    FileNotFoundError
        A file is missing (and ``download`` is false); the message names the folder,
        the file and the ways to provide it.
    ValueError
        A file is corrupt: not valid gzip, wrong IDX magic number, wrong dimensions,
        payload length not exactly the header's, a label outside 0..9, or (``verify``)
        a sha256 different from the original's. The message names the file and the fix.
    """
    folder = resolve_root(root)
    found = {stem: _find(folder, stem) for stem in MNIST_FILES}
    missing = [stem for stem, p in found.items() if p is None]
    if missing and download:
        download_files(folder, [s + ".gz" for s in missing], mirrors, TIMEOUT)
        found = {stem: _find(folder, stem) for stem in MNIST_FILES}
        missing = [stem for stem, p in found.items() if p is None]
    if missing:
        names = ", ".join(f"{s}.gz" for s in missing)
        where = "does not exist" if not folder.is_dir() else "has no such file"
        raise FileNotFoundError(
            f"MNIST file(s) not found: {names} (nor uncompressed twins without .gz) in "
            f"{folder.absolute()} (from {_root_origin(root)}; the folder {where}). Pass root= the "
            f"folder holding the four MNIST files, set the LENET_FAST_DATA environment "
            f"variable to it, or use load_mnist(download=True) / "
            f"lenet_fast.download.download_mnist() to fetch them."
        )
    paths = {stem: p for stem, p in found.items() if p is not None}
    arrays = [_read_mnist_file(paths[stem], stem, verify) for stem in MNIST_FILES]
    train_images, train_labels, test_images, test_labels = arrays
    return train_images, train_labels, test_images, test_labels


_WHAT_TO_DO_IDX = (
    "Rewrite the file in IDX format (unsigned bytes: images (N,28,28), labels (N,) of 0..9)."
)


def load_idx(root: PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load a dataset of 28x28 images in MNIST's IDX layout, with any counts, from a folder.

    The folder holds the four files under MNIST's names (``train-images-idx3-ubyte``,
    ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``),
    each read as ``<name>.gz`` if present, else ``<name>``, else the dotted variant
    (``train-images.idx3-ubyte``), as :func:`load_mnist` does. The counts may be anything
    (Fashion-MNIST, a subset of MNIST, your own digits); there is no checksum. The
    structure is checked as :func:`load_mnist` checks it: gzip, magic numbers,
    dimensions (images 28x28), exact lengths (no truncation, no trailing bytes), labels
    0..9, and as many labels as images in each split.

    Returns ``(train_images, train_labels, test_images, test_labels)``: uint8 arrays of
    shapes (N,28,28), (N,), (M,28,28), (M,), fresh, writable and C-contiguous.

    Raises FileNotFoundError for a missing folder or file and ValueError for a corrupt or
    inconsistent one; the message names the file and what was expected.
    """
    if root is None:
        raise TypeError("root: expected the folder holding the four IDX files, got None")
    folder = resolve_root(root)
    found = {stem: _find(folder, stem) for stem in MNIST_FILES}
    missing = [stem for stem, p in found.items() if p is None]
    if missing:
        names = ", ".join(missing)
        where = "does not exist" if not folder.is_dir() else "has no such file"
        raise FileNotFoundError(
            f"IDX file(s) not found: {names} (as <name>.gz, <name> or the dotted "
            f"variant) in {folder.absolute()} (the folder {where}). Pass the folder "
            f"holding the four files in MNIST's layout and names."
        )
    paths = [p for p in found.values() if p is not None]
    arrays = []
    for path, (kind, *_) in zip(paths, MNIST_FILES.values()):
        _, data = _read_bytes(path, None, _WHAT_TO_DO_IDX)
        arrays.append(_parse_idx(data, path, kind, None, _WHAT_TO_DO_IDX))
    for i in (0, 2):  # (train images, train labels), (test images, test labels)
        if len(arrays[i]) != len(arrays[i + 1]):
            raise ValueError(
                f"{paths[i + 1]}: {len(arrays[i + 1]):,} labels, expected one per image: "
                f"{paths[i]} holds {len(arrays[i]):,} images"
            )
    train_images, train_labels, test_images, test_labels = arrays
    return train_images, train_labels, test_images, test_labels


# byte p -> float32(-0.1 + 1.275 p / 255), computed in float64 and rounded once
_LUT = (-0.1 + 1.275 * np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)
_LUT.setflags(write=False)


def preprocess(images: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Turn MNIST bytes into the network's input planes (the paper, section II-B).

    ``images``: uint8 (N, 28, 28), or one (28, 28) image (treated as a batch of one).
    Returns a new float32 array of shape (N, 1, 32, 32): each digit padded with 2
    background pixels on every side, byte ``p`` mapped to ``-0.1 + 1.275 * p / 255``,
    so background (and the padding) is exactly ``float32(-0.1)`` and full ink (255)
    is ``float32(1.175)``.

    On MNIST's training set the result has mean about 0.03 and standard deviation about
    0.35 (the paper's "mean roughly 0, variance roughly 1" holds for the mean only).

    Raises TypeError for a non-uint8 dtype and ValueError for another shape.
    """
    arr = _validate.digit_images("images", images)
    if arr.ndim == 2:
        arr = arr[None]
    n = arr.shape[0]
    padded = np.zeros((n, _SIDE + 4, _SIDE + 4), dtype=np.uint8)
    padded[:, 2:-2, 2:-2] = arr
    return _LUT[padded].reshape(n, 1, _SIDE + 4, _SIDE + 4)  # one vectorised table look-up
