"""lenet_fast._imageio: load_image on real files of every format and mode, on arrays, on
bad input of every kind; iter_image_files.

Files are written here with Pillow into tmp_path; what they decode to is checked against
values drawn in NumPy and converted by hand (ITU-R 601 luma in float, compositing on white
in float), not against Pillow's own conversions.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
import warnings
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lenet_fast._imageio import MAX_PIXELS, ImageError, iter_image_files, load_image

Image = pytest.importorskip("PIL.Image")
ImageOps = pytest.importorskip("PIL.ImageOps")
features = pytest.importorskip("PIL.features")

H, W = 9, 13  # H != W: a transposed result cannot pass


@pytest.fixture
def rng():
    return np.random.default_rng(1998)


def luma(rgb) -> np.ndarray:
    """ITU-R 601 luma in float64, 0..255."""
    rgb = np.asarray(rgb, np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def on_white(grey, alpha) -> np.ndarray:
    """Grey composited on white paper through alpha (0 transparent .. 255 opaque), float."""
    a = np.asarray(alpha, np.float64) / 255
    return np.asarray(grey, np.float64) * a + 255 * (1 - a)


def assert_grey(got, want, atol=0.0, what=""):
    assert isinstance(got, np.ndarray) and got.dtype == np.uint8, what
    assert got.ndim == 2 and got.flags.c_contiguous and got.flags.writeable, what
    assert got.shape == np.shape(want), f"{what}: shape {got.shape} != {np.shape(want)}"
    diff = np.abs(got.astype(np.float64) - np.asarray(want, np.float64))
    assert diff.max() <= atol + 0.5, f"{what}: off by up to {diff.max():.2f}"


def opened(p):
    """What Pillow reads of ``p`` (mode, info, frames), the file closed again."""
    with Image.open(p) as im:
        return _Opened(im.mode, dict(im.info), getattr(im, "n_frames", 1))


class _Opened:
    def __init__(self, mode, info, n_frames):
        self.mode, self.info, self.n_frames = mode, info, n_frames


def save(tmp_path, name, im, **kw) -> Path:
    p = tmp_path / name
    im.save(p, **kw)
    return p


# --------------------------------------------------------------------------------------
# formats and modes


LOSSLESS_L = ["png", "bmp", "tif", "pgm", "gif"] + (["webp"] if features.check("webp") else [])


@pytest.mark.parametrize("ext", LOSSLESS_L)
def test_grey_files_decode_exactly(tmp_path, rng, ext):
    g = rng.integers(0, 256, (H, W), dtype=np.uint8)
    kw = {"lossless": True} if ext == "webp" else {}
    p = save(tmp_path, f"g.{ext}", Image.fromarray(g), **kw)
    assert_grey(load_image(p), g, what=ext)
    assert_grey(load_image(str(p)), g, what=ext)


@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "pbm", "gif"])
def test_one_bit_files(tmp_path, rng, ext):
    bits = rng.random((H, W)) < 0.5
    p = save(tmp_path, f"b.{ext}", Image.fromarray(bits).convert("1"))
    assert opened(p).mode in ("1", "L", "P")
    assert_grey(load_image(p), np.where(bits, 255, 0), what=ext)


@pytest.mark.parametrize("ext", ["png", "bmp", "tif", "ppm"])
def test_rgb_files_by_luma(tmp_path, rng, ext):
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    p = save(tmp_path, f"c.{ext}", Image.fromarray(rgb))
    assert_grey(load_image(p), luma(rgb), atol=0.5, what=ext)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_rgba_composited_on_white(tmp_path, rng, ext):
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0  # a transparent row: white whatever its colour
    rgba[1, :, 3] = 255
    p = save(tmp_path, f"a.{ext}", Image.fromarray(rgba))
    got = load_image(p)
    assert_grey(got, on_white(luma(rgba), rgba[..., 3]), atol=1, what=ext)
    assert (got[0] == 255).all()


def test_la_composited_on_white(tmp_path, rng):
    la = rng.integers(0, 256, (H, W, 2), dtype=np.uint8)
    p = save(tmp_path, "la.png", _la(la))
    assert opened(p).mode == "LA"
    assert_grey(load_image(p), on_white(la[..., 0], la[..., 1]), atol=0.5)


def _la(la):
    return Image.merge("LA", [Image.fromarray(la[..., 0]), Image.fromarray(la[..., 1])])


def _palette_image(rng, n=16):
    idx = rng.integers(0, n, (H, W), dtype=np.uint8)
    pal = rng.integers(0, 256, (n, 3), dtype=np.uint8)
    im = Image.frombytes("P", (W, H), idx.tobytes())
    im.putpalette(pal.reshape(-1).tolist())
    return im, idx, pal


@pytest.mark.parametrize("ext", ["png", "gif", "bmp", "tif"])
def test_palette_files(tmp_path, rng, ext):
    im, idx, pal = _palette_image(rng)
    p = save(tmp_path, f"p.{ext}", im)
    assert opened(p).mode == "P"
    assert_grey(load_image(p), luma(pal[idx]), atol=0.5, what=ext)


def test_palette_png_with_alpha_per_entry(tmp_path, rng):
    im, idx, pal = _palette_image(rng)
    alpha = rng.integers(0, 256, 16, dtype=np.uint8)
    alpha[3] = 0
    p = save(tmp_path, "pt.png", im, transparency=alpha.tobytes())
    assert isinstance(opened(p).info["transparency"], bytes)
    assert_grey(load_image(p), on_white(luma(pal[idx]), alpha[idx]), atol=1)


def test_palette_gif_with_a_transparent_index(tmp_path, rng):
    im, idx, pal = _palette_image(rng)
    p = save(tmp_path, "pt.gif", im, transparency=3)
    want = np.where(idx == 3, 255.0, luma(pal[idx]))
    assert_grey(load_image(p), want, atol=0.5)


@pytest.mark.parametrize("ext", ["png", "tif", "pgm"])
def test_sixteen_bit_grey_scaled_to_eight(tmp_path, rng, ext):
    v = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    v[0, :3] = (0, 65535, 257 * 128)
    p = save(tmp_path, f"w.{ext}", Image.fromarray(v))
    assert opened(p).mode in ("I;16", "I")
    want = v / 65535 * 255  # never a tie: v / 257 is never k + 1/2
    got = load_image(p)
    assert_grey(got, np.rint(want), what=ext)
    assert tuple(got[0, :3]) == (0, 255, 128)


def test_float_tiff_from_zero_to_one(tmp_path, rng):
    f = rng.random((H, W)).astype(np.float32)
    p = save(tmp_path, "f.tif", Image.fromarray(f))
    assert opened(p).mode == "F"
    assert_grey(load_image(p), np.rint(f.astype(np.float64) * 255))


def test_float_tiff_out_of_range_is_refused(tmp_path):
    p = save(tmp_path, "f.tif", Image.fromarray(np.full((2, 2), 3.0, np.float32)))
    with pytest.raises(ImageError, match=rf"^{_re(p)}: float pixels must be in \[0, 1\]"):
        load_image(p)


def test_32_bit_integer_tiff_out_of_16_bits_is_refused(tmp_path):
    p = save(tmp_path, "i.tif", Image.fromarray(np.array([[0, 70000]], np.int32)))
    with pytest.raises(ImageError, match=rf"^{_re(p)}: 32-bit integer pixels in \[0, 70000\]"):
        load_image(p)


def _blocks(values, side=16):
    """A picture of uniform side x side blocks (JPEG is exact enough inside them)."""
    return np.kron(np.asarray(values), np.ones((side, side), np.uint8)).astype(np.uint8)


def _centres(a, side=16):
    return np.ascontiguousarray(a[side // 2 :: side, side // 2 :: side])


def test_jpeg_grey_and_colour(tmp_path):
    g = _blocks([[0, 60, 128], [200, 255, 30]])
    p = save(tmp_path, "g.jpg", Image.fromarray(g), quality=95)
    got = load_image(p)
    assert got.shape == g.shape
    assert_grey(_centres(got), _centres(g), atol=3)
    colours = np.array(
        [[[255, 0, 0], [0, 255, 0], [0, 0, 255]], [[255, 255, 255], [0, 0, 0], [90, 160, 30]]]
    )
    rgb = np.stack([_blocks(colours[..., c]) for c in range(3)], axis=-1)
    p = save(tmp_path, "c.jpg", Image.fromarray(rgb), quality=95)
    got = load_image(p)
    assert_grey(_centres(got), luma(colours), atol=3)


def test_cmyk_jpeg(tmp_path):
    cmyk = np.array(
        [
            [[0, 0, 0, 0], [255, 0, 0, 0], [0, 0, 0, 255]],
            [[0, 128, 0, 0], [0, 0, 255, 64], [40, 80, 120, 20]],
        ]
    )
    planes = np.stack([_blocks(cmyk[..., c]) for c in range(4)], axis=-1)
    p = save(tmp_path, "k.jpg", _cmyk(planes), quality=95)
    assert opened(p).mode == "CMYK"
    # the usual device CMYK -> RGB: (1 - C)(1 - K) in each channel
    rgb = (255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255
    assert_grey(_centres(load_image(p)), luma(rgb), atol=4)


def _cmyk(planes):
    return Image.frombytes("CMYK", planes.shape[1::-1], np.ascontiguousarray(planes).tobytes())


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


# the picture as seen, from what the sensor stored, by the EXIF specification's words
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.T,  # row 0 is the left-hand side, column 0 the top
    6: lambda a: np.rot90(a, -1),  # row 0 is the right-hand side: turn clockwise
    7: lambda a: np.rot90(a, -1)[::-1],  # row 0 is the right-hand side, column 0 the bottom
    8: lambda a: np.rot90(a, 1),  # row 0 is the left-hand side: turn anticlockwise
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, rng, orientation):
    g = rng.integers(0, 256, (H, W), dtype=np.uint8)
    p = save(tmp_path, "o.png", Image.fromarray(g), exif=_exif(orientation))
    got = load_image(p)
    assert_grey(got, UPRIGHT[orientation](g), what=f"orientation {orientation}")
    # and as Pillow's own exif_transpose shows it
    with Image.open(p) as im:
        assert_grey(got, np.asarray(ImageOps.exif_transpose(im)), what="exif_transpose")


def test_exif_rotated_photo(tmp_path):
    """A JPEG stored sideways (orientation 6), bright at its stored top-left corner."""
    g = _blocks([[250, 10, 10], [10, 10, 10]])  # stored 32 x 48
    p = save(tmp_path, "photo.jpg", Image.fromarray(g), quality=95, exif=_exif(6))
    got = load_image(p)
    assert got.shape == (48, 32)
    # turned clockwise: the bright block is now at the top right
    assert_grey(_centres(got), [[10, 250], [10, 10], [10, 10]], atol=3)


def test_a_broken_exif_block_is_ignored_silently(tmp_path, rng):
    g = rng.integers(0, 256, (H, W), dtype=np.uint8)
    # an IFD of one orientation entry whose value points past the end of the block
    bad = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x40\x00\x00\x00\xff\x00\x00\x00"
    p = save(tmp_path, "e.jpg", Image.fromarray(g), quality=100, exif=bad)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = load_image(p)
    assert caught == [], [str(w.message) for w in caught]
    assert got.shape == (H, W)


@pytest.mark.parametrize("ext", ["png", "jpg", "gif", "bmp", "tif"])
def test_one_pixel(tmp_path, ext):
    p = save(tmp_path, f"one.{ext}", Image.fromarray(np.array([[77]], np.uint8)))
    assert_grey(load_image(p), [[77]], atol=2 if ext == "jpg" else 0)


def test_gif_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((H, W), v, np.uint8)) for v in (10, 200, 90)]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    assert opened(p).n_frames == 3
    assert_grey(load_image(p), np.full((H, W), 10))


def test_tiff_first_page(tmp_path):
    pages = [Image.fromarray(np.full((H, W), v, np.uint8)) for v in (33, 99)]
    p = tmp_path / "pages.tif"
    pages[0].save(p, save_all=True, append_images=pages[1:])
    assert_grey(load_image(p), np.full((H, W), 33))


# --------------------------------------------------------------------------------------
# kinds of source


def test_every_kind_of_source_gives_the_same(tmp_path, rng):
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    im = Image.fromarray(rgba)
    p = save(tmp_path, "s.png", im)
    data = p.read_bytes()
    want = load_image(p)

    class Forward:  # a stream that cannot seek, as a pipe or a socket
        def __init__(self, b):
            self._f = io.BytesIO(b)

        def read(self, n=-1):
            return self._f.read(n)

        def seekable(self):
            return False

    with open(p, "rb") as f:
        from_file = load_image(f)
    sources = {
        "str": str(p),
        "bytes": data,
        "bytearray": bytearray(data),
        "memoryview": memoryview(data),
        "BytesIO": io.BytesIO(data),
        "stream": Forward(data),
        "PIL": im,
        "array": rgba,
    }
    for what, src in sources.items():
        np.testing.assert_array_equal(load_image(src), want, err_msg=what)
    np.testing.assert_array_equal(from_file, want)


def test_a_pil_image_is_not_changed(rng):
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    im = Image.fromarray(rgba)
    load_image(im)
    assert im.mode == "RGBA" and im.size == (W, H)
    np.testing.assert_array_equal(np.asarray(im), rgba)


def test_arrays_grey_as_they_are_and_a_new_array(rng):
    g = rng.integers(0, 256, (H, W), dtype=np.uint8)
    got = load_image(g)
    np.testing.assert_array_equal(got, g)
    assert not np.shares_memory(got, g)
    view = g[::2, ::-1]
    assert_grey(load_image(view), view)


def test_arrays_sixteen_bit_and_float(rng):
    v = rng.integers(0, 65536, (H, W), dtype=np.uint16)
    assert_grey(load_image(v), np.rint(v / 65535 * 255))
    assert_grey(load_image(v.astype(">u2")), np.rint(v / 65535 * 255))
    for dt in (np.float16, np.float32, np.float64):
        f = rng.random((H, W)).astype(dt)
        assert_grey(load_image(f), np.rint(f.astype(np.float64) * 255), what=str(dt))
    assert_grey(load_image(np.array([[0.0, 1.0]])), [[0, 255]])


def test_arrays_rgb_and_rgba_as_pillow_converts_them(rng):
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    assert_grey(load_image(rgb), luma(rgb), atol=0.5)
    assert_grey(load_image(rgba), on_white(luma(rgba), rgba[..., 3]), atol=1)
    # exactly as the same picture decoded by Pillow
    for a in (rgb, rgba):
        np.testing.assert_array_equal(load_image(a), load_image(Image.fromarray(a)))
    f = rgba.astype(np.float64) / 255
    np.testing.assert_array_equal(load_image(f), load_image(rgba))


@pytest.mark.parametrize(
    "dtype", [bool, np.int8, np.int16, np.int32, np.int64, np.uint32, np.complex64, object]
)
def test_arrays_of_another_dtype_are_a_type_error(dtype):
    with pytest.raises(TypeError, match=r"^src: expected a uint8, uint16 or float array"):
        load_image(np.zeros((3, 4), dtype))


@pytest.mark.parametrize("shape", [(5,), (0, 4), (4, 0), (3, 4, 2), (3, 4, 5), (2, 3, 4, 3), ()])
def test_arrays_of_another_shape_are_an_image_error(shape):
    with pytest.raises(ImageError, match=r"^src: "):
        load_image(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.01, 1.01, 255.0])
def test_float_arrays_outside_zero_one(bad):
    a = np.full((3, 4), 0.5)
    a[1, 2] = bad
    with pytest.raises(ImageError, match=r"^src: float pixels must be"):
        load_image(a)


def test_a_huge_broadcast_array_is_refused_without_a_copy():
    a = np.broadcast_to(np.zeros((1, 1), np.uint8), (1 << 20, 1 << 20))
    with pytest.raises(ImageError, match=r"^src: has 1048576x1048576 pixels, more than max_pixels"):
        load_image(a)


@pytest.mark.parametrize("src", [None, 3, 1.5, [[0, 1]], {"a": 1}, "x", io.StringIO("x")])
def test_other_kinds_of_source_are_a_type_error_or_a_missing_file(src, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((TypeError, ImageError), match=r"^(src|x): "):
        load_image(src)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None, "big"])
def test_max_pixels_must_be_a_positive_int(bad):
    with pytest.raises(ValueError, match=r"^max_pixels: expected an int >= 1"):
        load_image(np.zeros((2, 2), np.uint8), max_pixels=bad)


# --------------------------------------------------------------------------------------
# bad input: one ImageError naming the source, nothing written, no descriptor left open


def _re(p) -> str:
    import re

    return re.escape(str(p))


def _png(rng, w=W, h=H) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(b, "PNG")
    return b.getvalue()


def _jpeg(rng, w=64, h=48) -> bytes:
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(b, "JPEG")
    return b.getvalue()


def _zip() -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("digit.png", b"not really")
    return b.getvalue()


def bad_files(rng) -> dict[str, tuple[bytes, str]]:
    png, jpg = _png(rng), _jpeg(rng)
    corrupt_png = bytearray(png)
    corrupt_png[60:70] = b"\xff" * 10  # inside IDAT: the checksum no longer matches
    return {
        "empty.png": (b"", "empty file"),
        "half.png": (png[: len(png) // 2], "truncated"),
        "header.png": (png[:40], "truncated"),
        "half.jpg": (jpg[: len(jpg) // 2], "truncated"),
        "corrupt.png": (bytes(corrupt_png), "corrupt|truncated"),
        "random.png": (
            rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
            "not an image Pillow can read",
        ),
        "text.png": (b"0 1 2 3\nnot a picture\n" * 20, "not an image Pillow can read"),
        "archive.zip": (_zip(), "not an image Pillow can read"),
        "signature.png": (png[:8], "not an image|truncated|corrupt"),
    }


def _fds() -> int | None:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


def test_bad_files_each_give_one_image_error_naming_them(tmp_path, rng):
    files = {}
    for name, (data, _) in bad_files(rng).items():
        files[name] = tmp_path / name
        files[name].write_bytes(data)
    before = sorted(tmp_path.iterdir())
    fds = _fds()
    for name, (data, what) in bad_files(rng).items():
        p = files[name]
        for src, label in ((p, str(p)), (data, "src"), (io.BytesIO(data), "src")):
            if label == "src" and not data:
                what_ = "empty"
            else:
                what_ = what
            with pytest.raises(ImageError, match=rf"^{_re(label)}: .*({what_})") as e:
                load_image(src)
            assert isinstance(e.value, ValueError)
    assert sorted(tmp_path.iterdir()) == before, "something was written"
    assert _fds() == fds, "a file was left open"


def test_a_missing_path_a_folder_and_a_pipe(tmp_path):
    with pytest.raises(ImageError, match=rf"^{_re(tmp_path / 'nope.png')}: no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match=rf"^{_re(tmp_path)}: is a folder"):
        load_image(tmp_path)
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.png"
        os.mkfifo(fifo)  # opening it would wait for a writer for ever
        with pytest.raises(ImageError, match=rf"^{_re(fifo)}: not a regular file"):
            load_image(fifo)
    if os.path.exists("/dev/zero"):  # would never end
        with pytest.raises(ImageError, match=r"^/dev/zero: not a regular file"):
            load_image("/dev/zero")


def test_paths_that_cannot_be_opened(tmp_path, rng):
    f = tmp_path / "f.png"
    f.write_bytes(_png(rng))
    under_a_file = f / "child.png"  # ENOTDIR, even for root
    with pytest.raises(ImageError, match=rf"^{_re(under_a_file)}: cannot be read"):
        load_image(under_a_file)
    too_long = tmp_path / ("x" * 300 + ".png")  # ENAMETOOLONG
    with pytest.raises(ImageError, match=rf"^{_re(too_long)}: cannot be read"):
        load_image(too_long)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads a chmod 000 file"
)
def test_an_unreadable_file(tmp_path, rng):
    f = tmp_path / "locked.png"
    f.write_bytes(_png(rng))
    f.chmod(0)
    try:
        with pytest.raises(ImageError, match=rf"^{_re(f)}: cannot be read \(Permission denied\)"):
            load_image(f)
    finally:
        f.chmod(0o600)


def _with_crc(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(w=30_000, h=30_000) -> bytes:
    """A valid PNG of 30,000 x 30,000 black pixels would be 900 MB decoded: this one is
    about a hundred bytes, its header declaring that size."""
    return (
        b"\x89PNG\r\n\x1a\n"
        + _with_crc(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + _with_crc(b"IDAT", zlib.compress(b"\0" * (w + 1) * 4))
        + _with_crc(b"IEND", b"")
    )


def bomb_jpeg(rng) -> bytes:
    """A small JPEG whose frame header (SOF0) is patched to 30,000 x 30,000."""
    b = bytearray(_jpeg(rng, 16, 16))
    i = b.index(b"\xff\xc0")
    b[i + 5 : i + 9] = struct.pack(">HH", 30_000, 30_000)
    return bytes(b)


def bomb_bmp(rng) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(b, "BMP")
    raw = bytearray(b.getvalue())
    raw[18:26] = struct.pack("<ii", 30_000, 30_000)
    return bytes(raw)


def bomb_gif(rng) -> bytes:
    b = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(b, "GIF")
    raw = bytearray(b.getvalue())
    raw[6:10] = struct.pack("<HH", 30_000, 30_000)  # the logical screen
    i = raw.index(b"\x2c")  # the image descriptor
    raw[i + 5 : i + 9] = struct.pack("<HH", 30_000, 30_000)
    return bytes(raw)


@pytest.mark.parametrize("kind", ["png", "jpeg", "bmp", "gif"])
def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, rng, kind):
    data = {"png": bomb_png, "jpeg": bomb_jpeg, "bmp": bomb_bmp, "gif": bomb_gif}[kind]
    data = data() if kind == "png" else data(rng)
    p = tmp_path / f"bomb.{kind}"
    p.write_bytes(data)
    assert len(data) < 10_000
    tracemalloc.start()
    try:
        with pytest.raises(
            ImageError,
            match=rf"^{_re(p)}: declares 30000x30000 pixels, more than max_pixels={MAX_PIXELS}$",
        ):
            load_image(p)
        with pytest.raises(ImageError, match=r"^src: declares 30000x30000 pixels"):
            load_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MB allocated"
    # and the process's own limits, untouched
    assert Image.MAX_IMAGE_PIXELS == 1024 * 1024 * 1024 // 4 // 3


def test_max_pixels_is_the_bound(rng):
    data = _png(rng, 100, 100)
    assert load_image(data, max_pixels=10_000).shape == (100, 100)
    with pytest.raises(
        ImageError, match=r"^src: declares 100x100 pixels, more than max_pixels=9999"
    ):
        load_image(data, max_pixels=9999)
    assert load_image(np.zeros((100, 100), np.uint8), max_pixels=10_000).shape == (100, 100)


def test_pillow_limits_and_warnings_are_left_as_they_were(rng, monkeypatch):
    """A picture over Pillow's own limit (here lowered to 1,000 pixels) but within
    max_pixels loads, without DecompressionBombWarning or -Error; the limit is back after."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    filters = list(warnings.filters)
    for data in (_png(rng, 100, 100), _jpeg(rng, 100, 100)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert load_image(data).shape == (100, 100)
        assert caught == [], [str(w.message) for w in caught]
    assert Image.MAX_IMAGE_PIXELS == 1000
    assert warnings.filters == filters


def test_without_pillow_files_need_the_extra_and_arrays_do_not(monkeypatch, tmp_path, rng):
    p = tmp_path / "x.png"
    p.write_bytes(_png(rng))
    for mod in ("PIL", "PIL.Image"):
        monkeypatch.setitem(sys.modules, mod, None)  # import PIL now raises ImportError
    for src in (p, p.read_bytes()):
        with pytest.raises(ImportError, match=r'pip install "lenet_fast\[image\]"'):
            load_image(src)
    assert load_image(np.zeros((2, 3), np.uint8)).shape == (2, 3)


def test_importing_the_module_does_not_import_pillow():
    code = "import sys, lenet_fast._imageio; assert 'PIL' not in sys.modules, 'PIL imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_a_ten_thousand_pixel_square_scan(tmp_path):
    side = 10_000
    g = np.full((side, side), 255, np.uint8)
    g[:100, :200] = 0
    g[-1, -1] = 7
    p = tmp_path / "scan.png"
    Image.fromarray(g).save(p, compress_level=1)
    del g
    got = load_image(p)
    assert got.shape == (side, side) and got.dtype == np.uint8
    assert got[:100, :200].max() == 0 and got[-1, -1] == 7 and got[100:, 200:-1].min() == 255


# --------------------------------------------------------------------------------------
# threads


def test_many_threads_at_once(tmp_path, rng):
    """Pictures of every kind decoded by 8 threads, three times over, give what one thread
    gives; bad files fail as they do alone; Pillow's limit and the warning filters are back
    as they were."""
    files = []
    for i in range(12):
        g = rng.integers(0, 256, (H + i, W + 2 * i, 4), dtype=np.uint8)
        im = Image.fromarray(g)
        for ext, conv in (("png", "RGBA"), ("jpg", "RGB"), ("gif", "P"), ("tif", "LA")):
            files.append(save(tmp_path, f"{i}.{ext}", im.convert(conv)))
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    (tmp_path / "half.png").write_bytes(_png(rng)[:100])
    files += [tmp_path / "bomb.png", tmp_path / "half.png"]

    def one(p):
        try:
            return load_image(p)
        except ImageError as e:
            return str(e)

    want = [one(p) for p in files]
    assert sum(isinstance(w, str) for w in want) == 2
    limit, filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, files * 3))
    for i, (g, w) in enumerate(zip(got, want * 3)):
        if isinstance(w, str):
            assert g == w
        else:
            np.testing.assert_array_equal(g, w, err_msg=str(files[i % len(files)]))
    assert Image.MAX_IMAGE_PIXELS == limit
    assert warnings.filters == filters
    assert threading.active_count() >= 1


# --------------------------------------------------------------------------------------
# iter_image_files


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"")


def test_a_folder_gives_its_image_files_sorted(tmp_path):
    d = tmp_path / "scans"
    _touch(d, "b.PNG", "a.jpg", "c.jpeg", "notes.txt", "d.tiff", ".hidden.png", "e.webp")
    _touch(d / "sub", "deep.png")
    (d / "dir.png").mkdir()
    got = list(iter_image_files([d]))
    assert got == [d / n for n in ("a.jpg", "b.PNG", "c.jpeg", "d.tiff", "e.webp")]


def test_files_folders_and_patterns_in_order(tmp_path):
    _touch(tmp_path, "x.png", "y.gif", "z.bmp", "readme.md")
    _touch(tmp_path / "f", "1.pgm", "2.ppm", "3.pbm")
    got = list(iter_image_files([tmp_path / "readme.md", tmp_path / "f", str(tmp_path / "*.??g")]))
    want = [tmp_path / "readme.md"] + [tmp_path / "f" / n for n in ("1.pgm", "2.ppm", "3.pbm")]
    assert got == want + [tmp_path / "x.png"]
    assert list(iter_image_files(str(tmp_path / "x.png"))) == [tmp_path / "x.png"]


def test_a_missing_path_or_an_empty_pattern_is_a_value_error_when_reached(tmp_path):
    _touch(tmp_path, "x.png", "notes.txt")
    it = iter_image_files([tmp_path / "x.png", tmp_path / "gone.png"])
    assert next(it) == tmp_path / "x.png"  # lazy: the missing one fails when it is reached
    with pytest.raises(ValueError, match=rf"^{_re(tmp_path / 'gone.png')}: no such file or folder"):
        next(it)
    with pytest.raises(ValueError, match=r": the pattern matches no image file"):
        list(iter_image_files([str(tmp_path / "*.txt")]))
    with pytest.raises(ValueError, match=r": the pattern matches no image file"):
        list(iter_image_files([str(tmp_path / "nothing*")]))


def test_a_large_folder_is_streamed(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    n = 20_000
    for i in range(n):
        (d / f"{i:06d}.png").touch()
        if i % 10 == 0:
            (d / f"{i:06d}.txt").touch()
    tracemalloc.start()
    try:
        it = iter_image_files([d])
        first = next(it)
        count = 1 + sum(1 for _ in it)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert first == d / "000000.png" and count == n
    assert peak < 300 * n, f"{peak} bytes for {n} names"  # names only: ~100 bytes each
