"""Reading one picture as a grey uint8 array, and finding the picture files of a command line.

* :func:`load_image` turns a path, encoded bytes, a binary file, a ``PIL.Image.Image`` or a
  NumPy array into a new (H,W) uint8 array, 0 black .. 255 white. The polarity is kept as
  it is (MNIST digits are white on black, most scans black on white): the normaliser of
  :mod:`lenet_fast.image` decides it.
* :func:`iter_image_files` expands the PATHs of a command line (files, folders, glob
  patterns) lazily into image files.

Decoding uses Pillow, imported only when a file has to be decoded (the ``image`` extra:
``pip install "lenet_fast[image]"``); arrays need only NumPy. Every way a file can fail
(missing, unreadable, not an image, truncated, corrupt, too large) is one exception,
:class:`ImageError`, whose message starts with the source: the path, or ``src`` for bytes,
file objects and images. Nothing is ever written.

Colour becomes grey with ITU-R 601 luma, ``(19595 R + 38470 G + 7471 B + 2**15) >> 16``
(Pillow's own ``convert("L")``, so an array and the same picture decoded by Pillow agree
exactly), and transparency is composited on white, ``round((g a + 255 (255 - a)) / 255)``:
a transparent background is paper, not ink.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Union

import numpy as np
import numpy.typing as npt

from . import _validate

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "ImageError",
    "iter_image_files",
    "load_image",
]

MAX_PIXELS = 2**27
"""The default ``max_pixels`` of :func:`load_image`: 134,217,728 pixels, so a 10,000 x
10,000 scan (1e8) is read and a decompression bomb is not. At this size a decoded RGB
picture takes about 400 MB and its grey result 134 MB."""

IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".pgm",
    ".ppm",
    ".pbm",
    ".webp",
)
"""The file name endings (any case) that :func:`iter_image_files` takes from a folder."""

# The Pillow plugins load_image lets open a file: the formats above, nothing that runs an
# external program (EPS runs Ghostscript) or that nobody scans digits into. PPM reads
# PBM/PGM/PPM; JPEG also returns multi-picture (MPO) files, as their first picture.
_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "PPM", "WEBP")
_FORMAT_NAMES = "PNG, JPEG, BMP, GIF, TIFF, PBM/PGM/PPM or WebP"
_INSTALL = 'pip install "lenet_fast[image]"'

# rows converted at a time from a 16-bit or float picture: bounds the temporaries
_ROWS = 512

ImageSource = Union[
    str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes], "PILImage.Image", np.ndarray
]
"""What :func:`load_image` reads."""

# EXIF orientation (tag 0x0112) -> the array operation that shows the picture upright, as
# PIL.ImageOps.exif_transpose does it (done here on the grey result: a quarter of the bytes)
_ORIENTATION = {
    2: lambda a: a[:, ::-1],  # FLIP_LEFT_RIGHT
    3: lambda a: a[::-1, ::-1],  # ROTATE_180
    4: lambda a: a[::-1, :],  # FLIP_TOP_BOTTOM
    5: lambda a: a.T,  # TRANSPOSE
    6: lambda a: np.rot90(a, -1),  # ROTATE_270 (a quarter turn clockwise)
    7: lambda a: a[::-1, ::-1].T,  # TRANSVERSE
    8: lambda a: np.rot90(a, 1),  # ROTATE_90 (a quarter turn anticlockwise)
}


class ImageError(ValueError):
    """A picture that cannot be read: missing, unreadable, not an image, truncated, corrupt
    or larger than ``max_pixels``. The message starts with the source (the path, or
    ``src``) and says what is wrong."""


# ----------------------------------------------------------------------------- Pillow


_init_lock = threading.Lock()
_initialised = False


def _pillow(name: str) -> Any:
    """The ``PIL.Image`` module with every plugin registered, or an ImportError saying how
    to install it."""
    global _initialised
    try:
        from PIL import Image
    except ImportError as e:
        raise ImportError(
            f"{name}: decoding an image file needs Pillow, which is not installed: {_INSTALL}"
        ) from e
    if not _initialised:
        with _init_lock:  # register TIFF and WebP (not among Pillow's preinit plugins) once
            Image.init()
            _initialised = True
    return Image


# Pillow's decompression-bomb limit (Image.MAX_IMAGE_PIXELS) and the warnings it and its
# plugins give (bomb, corrupt EXIF, odd metadata) are process-wide. load_image does its own
# size check against max_pixels, so while any load_image call is decoding, the limit is
# lifted and warnings raised inside Pillow's modules are ignored; the last call to finish
# restores both. A counter under a lock (not a save/restore per call) is what makes this
# safe from a thread pool: two overlapping save/restore pairs would leave the limit lifted
# for good. Pillow used directly by other threads during that time runs without its limit.
_quiet_lock = threading.Lock()
_quiet_depth = 0
_quiet_saved: tuple[Any, Any] = (None, None)
# Python 3.14 can make warning filters per thread (context); then each call filters its own.
_CONTEXT_WARNINGS = bool(getattr(sys.flags, "context_aware_warnings", False))


def _ignore_pillow_warnings() -> None:
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")


@contextlib.contextmanager
def _pillow_quiet(Image: Any) -> Iterator[None]:
    global _quiet_depth, _quiet_saved
    with _quiet_lock:
        if _quiet_depth == 0:
            caught = None
            if not _CONTEXT_WARNINGS:
                caught = warnings.catch_warnings()
                caught.__enter__()
                _ignore_pillow_warnings()
            _quiet_saved = (caught, Image.MAX_IMAGE_PIXELS)
            Image.MAX_IMAGE_PIXELS = None
        _quiet_depth += 1
    try:
        if _CONTEXT_WARNINGS:  # pragma: no cover - Python 3.14 with context-aware warnings
            with warnings.catch_warnings():
                _ignore_pillow_warnings()
                yield
        else:
            yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                caught, limit = _quiet_saved
                _quiet_saved = (None, None)
                Image.MAX_IMAGE_PIXELS = limit
                if caught is not None:
                    caught.__exit__(None, None, None)


# ----------------------------------------------------------------------------- grey


def _luma(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(h,w,3) uint8 -> (h,w) uint8 with Pillow's integer ITU-R 601 luma."""
    r, g, b = (rgb[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


def _on_white(grey: npt.NDArray[np.uint8], alpha: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """(h,w) grey composited on white through (h,w) alpha, rounded as Pillow's paste does."""
    g = grey.astype(np.uint32)
    a = alpha.astype(np.uint32)
    return ((g * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def _to_uint8(name: str, a: np.ndarray) -> npt.NDArray[np.uint8]:
    """An (h,w) or (h,w,c) uint8, uint16 or float array in 8 bits: uint16 rounded from
    0..65535, floats from [0,1] (ImageError outside it, or for NaN)."""
    if a.dtype == np.uint8:
        return a
    out = np.empty(a.shape, np.uint8)
    for i in range(0, a.shape[0], _ROWS):
        rows = a[i : i + _ROWS]
        if a.dtype.kind == "u":
            out[i : i + _ROWS] = (rows.astype(np.uint32) * 255 + 32767) // 65535
            continue
        if a.dtype.kind == "i":  # Pillow's 32-bit "I" mode, holding 16-bit samples
            lo, hi = int(rows.min()), int(rows.max())
            if lo < 0 or hi > 65535:
                raise ImageError(
                    f"{name}: 32-bit integer pixels in [{lo}, {hi}], expected 16-bit "
                    "values in [0, 65535]"
                )
            out[i : i + _ROWS] = (rows.astype(np.int64) * 255 + 32767) // 65535
            continue
        r = rows.astype(np.float64)
        if not np.isfinite(r).all():
            raise ImageError(f"{name}: float pixels must be finite and in [0, 1], got NaN or inf")
        if r.min() < 0 or r.max() > 1:
            raise ImageError(
                f"{name}: float pixels must be in [0, 1], got values in [{r.min():g}, {r.max():g}]"
            )
        out[i : i + _ROWS] = np.rint(r * 255)
    return out


def _grey_array(name: str, a: np.ndarray) -> npt.NDArray[np.uint8]:
    """(H,W), (H,W,3) or (H,W,4) uint8/uint16/float -> a new (H,W) uint8 array."""
    a8 = _to_uint8(name, a)
    if a8.ndim == 2:
        return np.array(a8, dtype=np.uint8, order="C", copy=True)
    out = np.empty(a8.shape[:2], np.uint8)
    for i in range(0, a8.shape[0], _ROWS):
        rows = a8[i : i + _ROWS]
        grey = _luma(rows[..., :3])
        out[i : i + _ROWS] = _on_white(grey, rows[..., 3]) if a8.shape[2] == 4 else grey
    return out


def _from_array(a: np.ndarray, max_pixels: int) -> npt.NDArray[np.uint8]:
    kinds = "uint8, uint16 or float"
    dt = a.dtype
    if not ((dt.kind == "u" and dt.itemsize <= 2) or (dt.kind == "f" and dt.itemsize <= 8)):
        raise TypeError(
            f"src: expected a {kinds} array (H,W), (H,W,3) RGB or (H,W,4) RGBA, got "
            f"{dt} array of shape {a.shape}"
        )
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(
            f"src: expected an array of shape (H,W), (H,W,3) RGB or (H,W,4) RGBA, got shape "
            f"{a.shape}"
        )
    _check_size("src", a.shape[1], a.shape[0], max_pixels, "has")
    return _grey_array("src", a)


def _check_size(name: str, w: int, h: int, max_pixels: int, verb: str = "declares") -> None:
    if w < 1 or h < 1:
        raise ImageError(f"{name}: {verb} {w}x{h} pixels, expected at least 1x1")
    if w * h > max_pixels:
        raise ImageError(f"{name}: {verb} {w}x{h} pixels, more than max_pixels={max_pixels}")


def _grey_pil(name: str, Image: Any, im: PILImage.Image) -> npt.NDArray[np.uint8]:
    """A loaded Pillow image of any mode -> a new (H,W) uint8 array."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _grey_array(name, np.asarray(im))
    if mode == "1":
        im = im.convert("L")
    elif mode == "P" and "transparency" not in im.info:
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB").convert("L")
    elif mode == "RGB":
        im = im.convert("L")
    elif mode != "L":  # alpha of some kind: LA, La, PA, P with transparency, RGBA, RGBa
        im = im.convert("LA" if mode in ("LA", "La") else "RGBA")
        grey, alpha = (im.convert("L"), im.getchannel("A"))
        paper = Image.new("L", im.size, 255)
        paper.paste(grey, (0, 0), alpha)  # Pillow rounds as _on_white does
        im = paper
    if im.mode != "L":  # pragma: no cover - every mode Pillow decodes is handled above
        raise ImageError(f"{name}: pixel mode {mode!r} is not supported")
    return np.array(im, dtype=np.uint8)


# ----------------------------------------------------------------------------- decoding


def _corrupt(name: str, fmt: str | None, e: BaseException) -> ImageError:
    what = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    text = str(e).lower()
    if isinstance(e, EOFError) or "truncated" in text or "broken data stream" in text:
        return ImageError(f"{name}: truncated {fmt or 'image'} file ({what})")
    return ImageError(f"{name}: corrupt {fmt or 'image'} data ({what})")


# the first bytes of each format load_image reads, to tell a broken file from a stranger
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"RIFF", "WebP"),
)


def _sniff(fp: IO[bytes] | None) -> str | None:
    """The format ``fp``'s first bytes announce, or None."""
    if fp is None:
        return None
    try:
        fp.seek(0)
        head = fp.read(16)
    except Exception:
        return None
    for magic, fmt in _MAGIC:
        if head.startswith(magic) and (fmt != "WebP" or head[8:12] == b"WEBP"):
            return fmt
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PBM/PGM/PPM"
    return None


def _orientation(im: PILImage.Image) -> int:
    """The EXIF orientation, 1 (upright) when there is none or the EXIF block is broken:
    a photo with a corrupt EXIF is still a photo."""
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _decode(
    name: str, fp: IO[bytes] | None, image: Any, max_pixels: int, Image: Any
) -> npt.NDArray[np.uint8]:
    """Open ``fp`` (or take the Pillow ``image``), check its declared size, decode it, apply
    its EXIF orientation and make it grey. Every failure is an ImageError naming ``name``."""
    with _pillow_quiet(Image):
        if image is None:
            try:
                im = Image.open(fp, formats=_FORMATS)
            except Image.UnidentifiedImageError:
                fmt = _sniff(fp)
                if fmt:  # Pillow's plugin gave up on a header that starts as it should
                    raise ImageError(
                        f"{name}: truncated or corrupt {fmt} file (its header cannot be read)"
                    ) from None
                raise ImageError(
                    f"{name}: not an image Pillow can read (expected {_FORMAT_NAMES})"
                ) from None
            except Exception as e:  # a header Pillow recognised, then could not parse
                raise _corrupt(name, _sniff(fp), e) from None
        else:
            im = image
        fmt = getattr(im, "format", None)
        try:
            try:
                w, h = im.size
                _check_size(name, w, h, max_pixels)  # from the header, before any pixel
                if fmt in ("JPEG", "MPO") and im.mode == "RGB":
                    im.draft("L", None)  # libjpeg gives the luma plane: a third of the memory
                im.load()
            except ImageError:
                raise
            except Exception as e:  # anything a corrupt file makes Pillow raise (OSError, ...)
                raise _corrupt(name, fmt, e) from None
            upright = _ORIENTATION.get(_orientation(im))
            try:
                grey = _grey_pil(name, Image, im)
            except ImageError:
                raise
            except (ValueError, OSError) as e:  # a conversion Pillow does not have
                raise ImageError(
                    f"{name}: pixel mode {im.mode!r} cannot be made grey ({e})"
                ) from None
            return grey if upright is None else np.ascontiguousarray(upright(grey))
        finally:
            if image is None:
                im.close()


def _open_path(path: str | os.PathLike[str]) -> IO[bytes]:
    """``path`` opened for binary reading, or an ImageError saying why it cannot be."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot be read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{name}: is a folder, expected an image file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise ImageError(f"{name}: not a regular file (a pipe, device or socket)")
    if st.st_size == 0:
        raise ImageError(f"{name}: empty file (0 bytes), expected an image")
    try:
        return open(name, "rb")  # closed by the caller
    except OSError as e:
        raise ImageError(f"{name}: cannot be read ({e.strerror or e})") from None


def _read_stream(f: Any, max_pixels: int) -> IO[bytes]:
    """A file object Pillow can seek in: ``f`` itself, or what a forward-only stream holds,
    read up to a bound (no image within max_pixels is larger)."""
    try:
        seekable = bool(f.seekable())
    except Exception:
        seekable = False
    if seekable:
        try:
            empty = not f.read(1)
            f.seek(0)  # where Pillow reads from
        except Exception as e:
            raise ImageError(
                f"src: the file object cannot be read ({type(e).__name__}: {e})"
            ) from None
        if empty:
            raise ImageError("src: empty (0 bytes), expected an image file")
        return f
    limit = 8 * max_pixels + 2**20  # 16-bit RGBA uncompressed, plus headers
    buf = io.BytesIO()
    while True:
        try:
            chunk = f.read(min(2**20, limit + 1 - buf.tell()))
        except Exception as e:
            raise ImageError(
                f"src: the file object cannot be read ({type(e).__name__}: {e})"
            ) from None
        if not isinstance(chunk, (bytes, bytearray)):
            raise TypeError(f"src: expected a binary file object, read gave {type(chunk).__name__}")
        if not chunk:
            break
        buf.write(chunk)
        if buf.tell() > limit:
            raise ImageError(f"src: stream longer than {limit} bytes, the bound for max_pixels")
    if not buf.tell():
        raise ImageError("src: empty (0 bytes), expected an image file")
    buf.seek(0)
    return buf


def load_image(src: ImageSource, *, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.uint8]:
    """One picture as a new (H,W) uint8 array, 0 black .. 255 white, polarity unchanged.

    ``src`` is one of:

    * a path (``str`` or ``os.PathLike``) of a PNG, JPEG, BMP, GIF (first frame), TIFF
      (first page), PBM/PGM/PPM or WebP file;
    * the bytes of such a file (``bytes``, ``bytearray``, ``memoryview``), or a binary file
      object open on one;
    * a ``PIL.Image.Image`` (its current frame; the image is not changed);
    * a NumPy array, no Pillow needed: (H,W) grey uint8 as it is; (H,W) uint16 rounded from
      0..65535; (H,W) float in [0,1], rounded from 0..1; (H,W,3) RGB or (H,W,4) RGBA of
      those dtypes, made grey like a decoded picture.

    Every pixel mode is made grey: 1-bit, L, 16-bit (I;16, I) rounded to 8 bits, float F
    from [0,1], RGB by ITU-R 601 luma, CMYK and YCbCr through RGB; alpha (LA, RGBA, a
    palette with transparency) is composited on white. The EXIF orientation is applied
    (as ``PIL.ImageOps.exif_transpose`` does), so (H,W) is the picture as it is meant to be seen.

    ``max_pixels`` (default :data:`MAX_PIXELS`, 2**27) bounds W*H: a file declaring more is
    refused from its header, before any pixel is decoded (a decompression bomb costs
    nothing), and so is an array.

    Raises :class:`ImageError` (a ValueError) for anything wrong with the picture, its
    message starting with the path, or ``src`` otherwise: missing, a folder, unreadable,
    empty, not an image, truncated, corrupt, more than ``max_pixels``, an array of another
    shape or out of range. TypeError for a ``src`` of another kind or an array of another
    dtype; ImportError (how to install it) when a file must be decoded and Pillow is
    missing. Safe to call from many threads at once.
    """
    max_pixels = _validate.int_at_least("max_pixels", max_pixels, 1)
    if isinstance(src, (np.ndarray, np.generic)):  # a NumPy scalar is a 0-d array
        return _from_array(np.asarray(src), max_pixels)
    # a PIL image can only come from a fully imported PIL.Image; another thread may be
    # importing it right now, and then the module in sys.modules has no Image class yet
    pil_module = sys.modules.get("PIL.Image")
    pil_type = getattr(pil_module, "Image", None)
    if isinstance(pil_type, type) and isinstance(src, pil_type):
        return _decode("src", None, src, max_pixels, pil_module)
    if isinstance(src, (str, os.PathLike)):
        name = os.fspath(src)
        if isinstance(name, bytes):
            raise TypeError(f"src: expected a str or os.PathLike[str] path, got {name!r}")
        Image = _pillow(name)
        with _open_path(name) as f:
            return _decode(name, f, None, max_pixels, Image)
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = src.tobytes() if isinstance(src, memoryview) else bytes(src)
        if not data:
            raise ImageError("src: empty (0 bytes), expected the bytes of an image file")
        return _decode("src", io.BytesIO(data), None, max_pixels, _pillow("src"))
    if callable(getattr(src, "read", None)):
        if isinstance(src, io.TextIOBase):
            raise TypeError("src: expected a binary file object, got a text file")
        Image = _pillow("src")
        return _decode("src", _read_stream(src, max_pixels), None, max_pixels, Image)
    raise TypeError(
        "src: expected a path, bytes, a binary file object, a PIL.Image.Image or a NumPy "
        f"array, got {type(src).__name__}"
    )


# ----------------------------------------------------------------------------- files


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")


def _folder_images(folder: str) -> list[str]:
    """The image file names in ``folder`` (not below it), sorted: only names are held."""
    names = []
    with os.scandir(folder) as it:
        for entry in it:
            if _is_image_name(entry.name):
                try:
                    if entry.is_file():  # follows symbolic links; a broken one is skipped
                        names.append(entry.name)
                except OSError:
                    continue
    names.sort()
    return names


def iter_image_files(
    paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
) -> Iterator[Path]:
    """The image files of a command line's PATHs, lazily, in order.

    Each PATH is a file (yielded whatever its name: load_image decides), a folder (its
    files ending in one of :data:`IMAGE_SUFFIXES`, any case, sorted by name; not its
    sub-folders, not hidden files such as ``._scan.png``) or a glob pattern (``*``, ``?``,
    ``[``; its matching image files, sorted). A folder is read with ``os.scandir`` and only
    its matching names are held, so a folder of a million scans costs their names, not
    their pictures. A PATH that does not exist, or a pattern matching no image file, is a
    ValueError naming it, raised when the iteration reaches it.
    """
    import glob

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    for p in paths:
        name = os.fspath(p)
        if not isinstance(name, str):
            raise TypeError(f"paths: expected str or os.PathLike[str] paths, got {name!r}")
        if os.path.isdir(name):
            for child in _folder_images(name):
                yield Path(name) / child
        elif os.path.exists(name):
            yield Path(name)
        elif any(c in name for c in "*?["):
            matches = sorted(
                m
                for m in glob.iglob(name)
                if _is_image_name(os.path.basename(m)) and os.path.isfile(m)
            )
            if not matches:
                raise ValueError(
                    f"{name}: the pattern matches no image file (names ending in "
                    f"{' '.join(IMAGE_SUFFIXES)})"
                )
            for m in matches:
                yield Path(m)
        else:
            raise ValueError(f"{name}: no such file or folder")
