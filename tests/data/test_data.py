"""lenet_fast.mnist, .download and .distort: MNIST loading and checking, atomic download, preprocessing, distortions.

The real MNIST comes from ``$LENET_FAST_DATA`` (CI sets it to ../shared/data/mnist; for a
local run: ``export LENET_FAST_DATA=/work/shared/data/mnist``). Downloads are tested only
against HTTP servers on 127.0.0.1 started here; nothing touches the network.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from lenet_fast import distort as DI
from lenet_fast import download as DL
from lenet_fast import mnist as MN

STEMS = list(DL.MNIST_FILES)  # train images, train labels, test images, test labels
GZ = [s + ".gz" for s in STEMS]


# --------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    """The four arrays (shared by many tests: do not modify them)."""
    return MN.load_mnist(mnist_dir)


@pytest.fixture(scope="module")
def raw_idx(mnist_dir) -> dict:
    """stem -> decompressed IDX bytes."""
    return {s: gzip.decompress((mnist_dir / (s + ".gz")).read_bytes()) for s in STEMS}


def make_folder(folder: Path, src: Path, override: dict | None = None) -> Path:
    """folder with copies of the four .gz files, except the names in override (name -> bytes,
    written instead; an override for an uncompressed name replaces that stem's .gz)."""
    override = override or {}
    folder.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:
        dotted = stem.replace("-idx", ".idx")
        if not any(n.startswith(stem) or n.startswith(dotted) for n in override):
            shutil.copyfile(src / (stem + ".gz"), folder / (stem + ".gz"))
    for name, blob in override.items():
        (folder / name).write_bytes(blob)
    return folder


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


class _DyingHandler(http.server.BaseHTTPRequestHandler):
    """Announces the full Content-Length, sends half the bytes, closes the connection."""

    def do_GET(self):
        self.server.requests.append(self.path)
        body = (Path(self.server.data_dir) / self.path.rsplit("/", 1)[-1]).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


class _HangingHandler(http.server.BaseHTTPRequestHandler):
    """Answers nothing until the test ends."""

    def do_GET(self):
        self.server.requests.append(self.path)
        self.server.release.wait(10)
        self.close_connection = True

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that gave up: not our concern
        pass


@pytest.fixture
def serve(monkeypatch):
    """serve(folder, handler=_Handler) -> (base URL, server); server.requests lists paths."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    started = []

    def start(folder: Path, handler=_Handler):
        if handler is _Handler:
            factory = functools.partial(_Handler, directory=str(folder))
        else:
            factory = handler
        server = _Server(("127.0.0.1", 0), factory)
        server.requests = []
        server.data_dir = str(folder)
        server.release = threading.Event()
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        started.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/", server

    yield start
    for server, thread in started:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------
# the real MNIST


def test_shapes_and_dtypes(mnist):
    tr, trl, te, tel = mnist
    assert tr.shape == (60000, 28, 28) and tr.dtype == np.uint8
    assert trl.shape == (60000,) and trl.dtype == np.uint8
    assert te.shape == (10000, 28, 28) and te.dtype == np.uint8
    assert tel.shape == (10000,) and tel.dtype == np.uint8
    for a in mnist:
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata


def test_known_labels_counts_and_statistics(mnist):
    tr, trl, te, tel = mnist
    assert trl[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert tel[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(trl, minlength=10).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(tel, minlength=10).sum() == 10000
    hist = np.bincount(tr.reshape(-1), minlength=256)  # exact statistics from the histogram
    v = np.arange(256) / 255.0
    mean = (hist * v).sum() / hist.sum()
    std = np.sqrt((hist * v * v).sum() / hist.sum() - mean**2)
    assert abs(mean - 0.1307) < 5e-5
    assert abs(std - 0.3081) < 5e-5
    assert tr.min() == 0 and tr.max() == 255


def test_checksum_constants_match_source_md(mnist_dir):
    for stem, (_, _, gz_size, gz_sha, _, _) in DL.MNIST_FILES.items():
        p = mnist_dir / (stem + ".gz")
        assert p.stat().st_size == gz_size
        assert sha256(p) == gz_sha


def test_uncompressed_twins_load_the_same(mnist, raw_idx, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    dotted = tmp_path / "dotted"
    dotted.mkdir()
    for stem, blob in raw_idx.items():
        (plain / stem).write_bytes(blob)
        (dotted / stem.replace("-idx", ".idx")).write_bytes(blob)
    for folder in (plain, dotted):
        got = MN.load_mnist(folder)
        for a, b in zip(got, mnist):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)


def test_root_from_environment(mnist_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_FAST_DATA", str(tmp_path / "nowhere"))
    assert DL.resolve_root() == tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as e:
        MN.load_mnist()
    assert str(tmp_path / "nowhere") in str(e.value)
    assert "LENET_FAST_DATA" in str(e.value) and "does not exist" in str(e.value)
    # the argument wins over the variable
    assert DL.resolve_root(mnist_dir) == mnist_dir


@pytest.mark.skipif(sys.platform == "win32", reason="XDG cache folder is not used on Windows")
def test_root_default_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("LENET_FAST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert DL.resolve_root() == tmp_path / "lenet_fast" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec ignores relative paths
    assert DL.resolve_root() == Path.home() / ".cache" / "lenet_fast" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert DL.resolve_root() == Path.home() / ".cache" / "lenet_fast" / "mnist"
    with pytest.raises(TypeError, match="root"):
        DL.resolve_root(3)


# --------------------------------------------------------------------------------------
# missing and corrupt local files


def test_missing_file(mnist_dir, tmp_path):
    folder = make_folder(tmp_path, mnist_dir)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as e:
        MN.load_mnist(folder)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and str(folder) in msg
    assert "download=True" in msg and "LENET_FAST_DATA" in msg and "root=" in msg
    assert "train-images" not in msg  # only the missing one is named


def _poke(blob: bytes, offset: int, value: int) -> bytes:
    b = bytearray(blob)
    b[offset] = value
    return bytes(b)


def _header(blob: bytes, word: int, value: int) -> bytes:
    b = bytearray(blob)
    b[4 * word : 4 * word + 4] = value.to_bytes(4, "big")
    return bytes(b)


@pytest.mark.parametrize(
    "case, name, make, pattern",
    [
        (
            "truncated gzip",
            "train-images-idx3-ubyte.gz",
            lambda raw, gz: gz["train-images-idx3-ubyte"][:3_000_000],
            "not a valid gzip",
        ),
        (
            "garbage gzip",
            "train-labels-idx1-ubyte.gz",
            lambda raw, gz: b"<html>404 Not Found</html>",
            "not a valid gzip",
        ),
        (
            "wrong magic",
            "t10k-images-idx3-ubyte",
            lambda raw, gz: _header(raw["t10k-images-idx3-ubyte"], 0, 0x00000801),
            "magic",
        ),
        (
            "wrong count",
            "t10k-labels-idx1-ubyte",
            lambda raw, gz: _header(raw["t10k-labels-idx1-ubyte"], 1, 9999),
            "dimensions",
        ),
        (
            "wrong image size",
            "t10k-images-idx3-ubyte",
            lambda raw, gz: _header(raw["t10k-images-idx3-ubyte"], 2, 27),
            "dimensions",
        ),
        (
            "short payload",
            "t10k-images-idx3-ubyte",
            lambda raw, gz: raw["t10k-images-idx3-ubyte"][:-1],
            "truncated",
        ),
        (
            "extra bytes",
            "t10k-labels-idx1-ubyte",
            lambda raw, gz: raw["t10k-labels-idx1-ubyte"] + b"\0",
            "trailing",
        ),
        (
            "only a header fragment",
            "t10k-labels-idx1-ubyte",
            lambda raw, gz: raw["t10k-labels-idx1-ubyte"][:5],
            "header",
        ),
        (
            "label out of range",
            "t10k-labels-idx1-ubyte",
            lambda raw, gz: _poke(raw["t10k-labels-idx1-ubyte"], 8 + 92, 10),
            "outside 0..9",
        ),
        (
            "valid gzip around a short payload",
            "t10k-labels-idx1-ubyte.gz",
            lambda raw, gz: gzip.compress(raw["t10k-labels-idx1-ubyte"][:-10]),
            "truncated",
        ),
    ],
)
def test_corrupt_file(case, name, make, pattern, mnist_dir, raw_idx, tmp_path):
    gz = {s: (mnist_dir / (s + ".gz")).read_bytes() for s in STEMS if s.startswith("train-images")}
    folder = make_folder(tmp_path, mnist_dir, {name: make(raw_idx, gz)})
    with pytest.raises(ValueError, match=pattern) as e:
        MN.load_mnist(folder)
    msg = str(e.value)
    assert str(folder / name) in msg, msg
    assert "download" in msg and "Delete" in msg, msg  # says what to do


def test_checksum_mismatch_gz(mnist_dir, raw_idx, tmp_path):
    # Well-formed, same data, different bytes (another gzip header): only sha256 can tell.
    name = "t10k-labels-idx1-ubyte.gz"
    blob = gzip.compress(raw_idx["t10k-labels-idx1-ubyte"], mtime=0)
    folder = make_folder(tmp_path, mnist_dir, {name: blob})
    with pytest.raises(ValueError, match="sha256") as e:
        MN.load_mnist(folder)
    msg = str(e.value)
    assert str(folder / name) in msg
    assert DL.MNIST_FILES["t10k-labels-idx1-ubyte"][3] in msg  # expected
    assert hashlib.sha256(blob).hexdigest() in msg  # actual
    # verify=False skips only the checksum
    np.testing.assert_array_equal(
        MN.load_mnist(folder, verify=False)[3], MN.load_mnist(mnist_dir)[3]
    )


def test_checksum_mismatch_uncompressed(mnist_dir, raw_idx, tmp_path):
    blob = bytearray(raw_idx["t10k-images-idx3-ubyte"])
    blob[16 + 5 * 784 + 300] ^= 0xFF  # one pixel of image 5
    name = "t10k-images-idx3-ubyte"
    folder = make_folder(tmp_path, mnist_dir, {name: bytes(blob)})
    with pytest.raises(ValueError, match="sha256") as e:
        MN.load_mnist(folder)
    assert str(folder / name) in str(e.value)
    assert hashlib.sha256(bytes(blob)).hexdigest() in str(e.value)
    te = MN.load_mnist(folder, verify=False)[2]
    assert te[5].reshape(-1)[300] == blob[16 + 5 * 784 + 300]


# --------------------------------------------------------------------------------------
# downloading (local servers only)


def _listing(folder: Path) -> set:
    return set(os.listdir(folder)) if folder.exists() else set()


def test_download_then_load(mnist, mnist_dir, serve, tmp_path):
    url, server = serve(mnist_dir)
    dest = tmp_path / "new" / "sub"  # created on demand
    assert DL.download_mnist(dest, mirrors=[url]) == dest
    assert _listing(dest) == set(GZ)  # nothing else: no temporary files left
    assert sorted(server.requests) == sorted("/" + n for n in GZ)
    for n in GZ:
        assert sha256(dest / n) == sha256(mnist_dir / n)
    for a, b in zip(MN.load_mnist(dest), mnist):
        np.testing.assert_array_equal(a, b)
    # everything present and verified: a second call downloads nothing
    DL.download_mnist(dest, mirrors=url)
    assert len(server.requests) == 4


def test_download_replaces_only_a_bad_file(mnist_dir, serve, tmp_path):
    url, server = serve(mnist_dir)
    dest = make_folder(tmp_path / "d", mnist_dir, {"train-labels-idx1-ubyte.gz": b"junk"})
    DL.download_mnist(dest, [url])
    assert server.requests == ["/train-labels-idx1-ubyte.gz"]
    want = DL.MNIST_FILES["train-labels-idx1-ubyte"][3]
    assert sha256(dest / "train-labels-idx1-ubyte.gz") == want
    assert _listing(dest) == set(GZ)


def test_load_with_download_fetches_only_missing(mnist, mnist_dir, raw_idx, serve, tmp_path):
    url, server = serve(mnist_dir)
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "train-images-idx3-ubyte").write_bytes(raw_idx["train-images-idx3-ubyte"])
    got = MN.load_mnist(dest, download=True, mirrors=[url])
    assert sorted(server.requests) == sorted("/" + n for n in GZ[1:])
    for a, b in zip(got, mnist):
        np.testing.assert_array_equal(a, b)


def test_mirror_from_environment(mnist_dir, serve, tmp_path, monkeypatch):
    url, server = serve(mnist_dir)
    monkeypatch.setenv("LENET_FAST_MNIST_MIRROR", url.rstrip("/"))  # slash added
    monkeypatch.setenv("LENET_FAST_DATA", str(tmp_path / "env"))
    assert DL.download_mnist() == tmp_path / "env"
    assert len(server.requests) == 4 and _listing(tmp_path / "env") == set(GZ)


@pytest.fixture
def bad_mirror(mnist_dir, tmp_path):
    """A mirror folder whose train-labels file has one bit flipped and whose t10k-labels
    is truncated; the two image files are good."""
    folder = make_folder(tmp_path / "bad_mirror", mnist_dir)
    p = folder / "train-labels-idx1-ubyte.gz"
    blob = bytearray(p.read_bytes())
    blob[1000] ^= 0x10
    p.write_bytes(bytes(blob))
    p = folder / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:2000])
    return folder


def test_corrupt_mirror(bad_mirror, serve, tmp_path):
    url, _ = serve(bad_mirror)
    dest = tmp_path / "d"
    with pytest.raises(ValueError) as e:
        DL.download_mnist(dest, [url])
    msg = str(e.value)
    assert "train-labels-idx1-ubyte.gz" in msg and url in msg and "sha256" in msg
    assert "mirror" in msg  # says what to do
    # the good first file stays; the bad one never appears under its name; no temp files
    assert _listing(dest) == {"train-images-idx3-ubyte.gz"}


def test_truncated_file_on_mirror(bad_mirror, mnist_dir, serve, tmp_path):
    url, _ = serve(bad_mirror)
    dest = make_folder(tmp_path / "d", mnist_dir)
    (dest / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError) as e:
        DL.download_mnist(dest, [url])
    assert "t10k-labels-idx1-ubyte.gz" in str(e.value) and url in str(e.value)
    assert _listing(dest) == set(GZ[:3])


def test_fallback_to_the_next_mirror(bad_mirror, mnist, mnist_dir, serve, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    url404, s404 = serve(empty)
    url_bad, s_bad = serve(bad_mirror)
    url_good, s_good = serve(mnist_dir)
    dest = tmp_path / "d"
    DL.download_mnist(dest, [url404, url_bad, url_good])
    assert len(s404.requests) == 4  # every file was asked for there first, and 404'd
    assert len(s_bad.requests) == 4
    assert sorted(s_good.requests) == ["/t10k-labels-idx1-ubyte.gz", "/train-labels-idx1-ubyte.gz"]
    assert _listing(dest) == set(GZ)
    for a, b in zip(MN.load_mnist(dest), mnist):
        np.testing.assert_array_equal(a, b)


def test_only_404s(serve, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    url, _ = serve(empty)
    dest = tmp_path / "d"
    with pytest.raises(OSError, match="404") as e:
        DL.download_mnist(dest, [url])
    assert "train-images-idx3-ubyte.gz" in str(e.value) and url in str(e.value)
    assert _listing(dest) == set()


def test_server_dies_mid_transfer(mnist_dir, serve, tmp_path):
    url, server = serve(mnist_dir, _DyingHandler)
    dest = tmp_path / "d"
    with pytest.raises(OSError, match="transfer ended") as e:
        DL.download_mnist(dest, [url])
    assert "train-images-idx3-ubyte.gz" in str(e.value)
    assert server.requests == ["/train-images-idx3-ubyte.gz"]
    assert _listing(dest) == set()  # no half file, no temporary file


def test_server_hangs(serve, tmp_path):
    url, _ = serve(tmp_path, _HangingHandler)
    dest = tmp_path / "d"
    # the server answers nothing for 10 s and then closes: a client that ignored its
    # timeout would fail with another message (or not at all)
    with pytest.raises(OSError, match="(?i)timed out"):
        DL.download_mnist(dest, [url], timeout=0.3)
    assert _listing(dest) == set()


def test_download_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="timeout"):
        DL.download_mnist(tmp_path, ["http://127.0.0.1:9/"], timeout=0)
    with pytest.raises(ValueError, match="mirrors"):
        DL.download_mnist(tmp_path, [])
    with pytest.raises(TypeError, match="mirrors"):
        DL.download_mnist(tmp_path, [None])


# --------------------------------------------------------------------------------------
# preprocess


def test_preprocess_values():
    img = np.arange(256 * 4, dtype=np.int64).reshape(1, 32, 32)[:, 2:30, 2:30] % 256
    img = img.astype(np.uint8)
    x = MN.preprocess(img)
    assert x.shape == (1, 1, 32, 32) and x.dtype == np.float32 and x.flags.c_contiguous
    want = (-0.1 + 1.275 * img.astype(np.float64) / 255).astype(np.float32)
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30], want)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert (x[0, 0][border] == np.float32(-0.1)).all()
    full = MN.preprocess(np.array([[0, 255]], np.uint8).repeat(14, 1).repeat(28, 0))
    assert full[0, 0, 2, 2] == np.float32(-0.1) and full[0, 0, 2, 29] == np.float32(1.175)


def test_preprocess_batch_single_and_views():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    x = MN.preprocess(imgs)
    assert x.shape == (5, 1, 32, 32)
    np.testing.assert_array_equal(MN.preprocess(imgs[3]), x[3:4])  # one image: a batch of one
    np.testing.assert_array_equal(MN.preprocess(imgs[:, ::-1]), x[:, :, ::-1])
    assert MN.preprocess(imgs[:0]).shape == (0, 1, 32, 32)


def test_preprocess_training_set_statistics(mnist):
    x = MN.preprocess(mnist[0])
    assert x.shape == (60000, 1, 32, 32) and x.dtype == np.float32
    flat = x.reshape(-1)
    mean = float(flat.mean(dtype=np.float64))
    std = float(np.sqrt(np.dot(flat, flat) / flat.size - mean**2))  # no 245 MB temporaries
    # The paper says "mean roughly 0, variance roughly 1". The mean holds (0.0275); the
    # variance does not: 0.123 (std 0.351), as follows from MNIST's 0.1307/0.3081.
    assert 0.02 < mean < 0.035
    assert 0.34 < std < 0.36


@pytest.mark.parametrize(
    "bad, exc",
    [
        (np.zeros((2, 28, 28), np.float32), TypeError),
        (np.zeros((2, 28, 28), np.int64), TypeError),
        ([[0] * 28] * 28, TypeError),
        (np.zeros((2, 32, 32), np.uint8), ValueError),
        (np.zeros((2, 1, 28, 28), np.uint8), ValueError),
        (np.zeros((28,), np.uint8), ValueError),
        (np.zeros((28, 28, 3), np.uint8), ValueError),
    ],
)
def test_preprocess_bad_input(bad, exc):
    with pytest.raises(exc, match=r"images: expected uint8 \(N,28,28\)"):
        MN.preprocess(bad)


# --------------------------------------------------------------------------------------
# affine_warp and distort

IDENTITY = dict(max_shift=0.0, scale=(1.0, 1.0), squeeze=(1.0, 1.0), max_shear=0.0)


@pytest.fixture(scope="module")
def some(mnist):
    return mnist[0][:500].copy()


def test_affine_warp_identity_and_integer_shifts(some):
    eye = np.array([[1.0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(DI.affine_warp(some, eye), some)
    right = DI.affine_warp(some, [[1.0, 0, -1], [0, 1, 0]])  # content moves one pixel right
    want = np.roll(some, 1, axis=2)
    want[:, :, 0] = 0
    np.testing.assert_array_equal(right, want)
    up = DI.affine_warp(some, [[1.0, 0, 0], [0, 1, 2]])  # two pixels up
    want = np.roll(some, -2, axis=1)
    want[:, -2:, :] = 0
    np.testing.assert_array_equal(up, want)
    assert not DI.affine_warp(some, [[1.0, 0, 40], [0, 1, 0]]).any()  # all outside: background


def test_affine_warp_per_image_matrices_and_bilinear(some):
    imgs = some[:3]
    mats = np.array(
        [
            [[1.0, 0, 0], [0, 1, 0]],
            [[1.0, 0, -1], [0, 1, 0]],
            [[1.0, 0, -0.5], [0, 1, 0]],  # half a pixel right: the mean of two neighbours
        ]
    )
    out = DI.affine_warp(imgs, mats)
    np.testing.assert_array_equal(out[0], imgs[0])
    np.testing.assert_array_equal(out[1, :, 1:], imgs[1, :, :-1])
    left = np.zeros_like(imgs[2], dtype=np.float64)
    left[:, 1:] = imgs[2, :, :-1]
    np.testing.assert_array_equal(out[2], np.rint((left + imgs[2]) / 2).astype(np.uint8))
    # transpose (x <-> y) is exact too
    transposed = DI.affine_warp(imgs, [[0.0, 1, 0], [1, 0, 0]])
    np.testing.assert_array_equal(transposed, imgs.transpose(0, 2, 1))


def test_affine_warp_bad_arguments(some):
    with pytest.raises(ValueError, match="matrices"):
        DI.affine_warp(some, np.zeros((3, 2, 3)))
    with pytest.raises(ValueError, match="matrices"):
        DI.affine_warp(some[:1], [[np.nan, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match="images"):
        DI.affine_warp(some[0], np.eye(3)[:2])
    with pytest.raises(ValueError, match="out"):
        DI.affine_warp(some, np.eye(3)[:2], out=np.zeros((1, 28, 28), np.uint8))


def test_distort_shape_dtype_determinism(some):
    a = DI.distort(some, np.random.default_rng(7))
    assert a.shape == some.shape and a.dtype == np.uint8
    b = DI.distort(some, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    c = DI.distort(some, np.random.default_rng(8))
    assert not np.array_equal(a, c)
    assert (a != some).any(axis=(1, 2)).mean() > 0.95  # nearly every image changed
    one = DI.distort(some[0], np.random.default_rng(7))
    assert one.shape == (28, 28) and one.dtype == np.uint8
    np.testing.assert_array_equal(one, a[0])  # image i's draws do not depend on N
    np.testing.assert_array_equal(DI.distort(some[:10], np.random.default_rng(7)), a[:10])


def test_distort_is_random_affine_then_affine_warp(some):
    mats = DI.random_affine(len(some), np.random.default_rng(3))
    got = DI.distort(some, np.random.default_rng(3))
    np.testing.assert_array_equal(got, DI.affine_warp(some, mats))


def test_distort_identity_ranges_return_the_input(some):
    np.testing.assert_array_equal(DI.distort(some, np.random.default_rng(0), **IDENTITY), some)
    mats = DI.random_affine(4, np.random.default_rng(0), **IDENTITY)
    np.testing.assert_array_equal(mats, np.broadcast_to([[1.0, 0, 0], [0, 1, 0]], (4, 2, 3)))


def test_distort_pure_translation_about_the_centre():
    rng = np.random.default_rng(1)
    mats = DI.random_affine(1000, rng, max_shift=2.0, scale=(1, 1), squeeze=(1, 1), max_shear=0)
    np.testing.assert_array_equal(mats[:, :, :2], np.broadcast_to(np.eye(2), (1000, 2, 2)))
    t = -mats[:, :, 2]  # the forward translation
    assert np.abs(t).max() <= 2.0 and np.abs(t).max() > 1.9
    assert abs(t.mean()) < 0.1


def test_random_affine_ranges():
    rng = np.random.default_rng(2)
    n = 20000
    m = DI.random_affine(n, rng, max_shift=1.5, scale=(0.8, 1.2), squeeze=(0.9, 1.1), max_shear=0.2)
    assert m.shape == (n, 2, 3) and m.dtype == np.float64
    fwd = np.linalg.inv(m[:, :, :2])  # M = s [[q, q h], [0, 1/q]]
    assert np.allclose(fwd[:, 1, 0], 0)
    s = np.sqrt(np.linalg.det(fwd))
    q = fwd[:, 0, 0] / s
    h = fwd[:, 0, 1] / fwd[:, 0, 0]
    assert s.min() >= 0.8 - 1e-12 and s.max() <= 1.2 + 1e-12 and np.ptp(s) > 0.38
    assert q.min() >= 0.9 - 1e-12 and q.max() <= 1.1 + 1e-12 and np.ptp(q) > 0.19
    assert np.abs(h).max() <= 0.2 + 1e-12 and np.ptp(h) > 0.39
    np.testing.assert_allclose(fwd[:, 1, 1], s / q)
    # the centre goes to centre + t, |t| <= max_shift per axis
    c = np.array([13.5, 13.5])
    t = np.einsum("nij,nj->ni", fwd, np.broadcast_to(c, (n, 2)) - m[:, :, 2]) - c
    assert np.abs(t).max() <= 1.5 + 1e-9 and np.abs(t).max() > 1.45


@pytest.mark.parametrize(
    "kw, exc",
    [
        (dict(max_shift=-1), ValueError),
        (dict(max_shift=float("inf")), ValueError),
        (dict(max_shift="2"), TypeError),
        (dict(scale=(1.1, 0.9)), ValueError),
        (dict(scale=(0.0, 1.0)), ValueError),
        (dict(scale=1.0), TypeError),
        (dict(squeeze=(0.9, 1.1, 1.2)), TypeError),
        (dict(max_shear=-0.1), ValueError),
    ],
)
def test_distort_bad_ranges(some, kw, exc):
    name = next(iter(kw))
    with pytest.raises(exc, match=name):
        DI.distort(some[:2], np.random.default_rng(0), **kw)


def test_distort_bad_inputs(some):
    with pytest.raises(TypeError, match="rng"):
        DI.distort(some, 0)
    with pytest.raises(TypeError, match="rng"):
        DI.distort(some, np.random.RandomState(0))
    with pytest.raises(TypeError, match="images"):
        DI.distort(some.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="images"):
        DI.distort(np.zeros((2, 32, 32), np.uint8), np.random.default_rng(0))


def test_distort_out_and_in_place(some):
    want = DI.distort(some, np.random.default_rng(5))
    buf = np.empty_like(some)
    assert DI.distort(some, np.random.default_rng(5), out=buf) is buf
    np.testing.assert_array_equal(buf, want)
    work = some.copy()
    DI.distort(work, np.random.default_rng(5), out=work)
    np.testing.assert_array_equal(work, want)
    one = some[0].copy()
    DI.distort(one, np.random.default_rng(5), out=one)
    np.testing.assert_array_equal(one, want[0])


@pytest.fixture(scope="module")
def distorted_train(mnist):
    """All 60,000 training digits distorted with the default ranges, and the transforms."""
    rng = np.random.default_rng(2024)
    mats = DI.random_affine(60000, rng)
    return DI.affine_warp(mnist[0], mats), mats


def test_distort_keeps_ink(mnist, distorted_train):
    before = mnist[0].reshape(60000, -1).sum(axis=1, dtype=np.int64)
    after = distorted_train[0].reshape(60000, -1).sum(axis=1, dtype=np.int64)
    ratio = after / before
    # ink scales with the area factor s^2 (0.81..1.21, mean 1.003); bilinear resampling
    # keeps it otherwise, up to rounding and the rare digit pushed past the edge
    assert abs(ratio.mean() - 1.0) < 0.02
    assert ratio.min() > 0.7 and ratio.max() < 1.3
    s2 = 1.0 / np.linalg.det(distorted_train[1][:, :, :2])
    assert np.abs(ratio / s2 - 1).mean() < 0.03


def _centre_of_mass(imgs: np.ndarray) -> np.ndarray:
    cols = imgs.sum(axis=1, dtype=np.int64)  # (N, 28): ink per column
    rows = imgs.sum(axis=2, dtype=np.int64)
    total = cols.sum(axis=1)
    idx = np.arange(28)
    x = (cols * idx).sum(axis=1) / total
    y = (rows * idx).sum(axis=1) / total
    return np.stack([x, y], axis=1)


def test_distort_moves_the_centre_of_mass_as_the_transform_says(mnist, distorted_train):
    imgs, mats = distorted_train
    before = _centre_of_mass(mnist[0])
    after = _centre_of_mass(imgs)
    # every digit's centre of mass stays within the maximum shift (2 px) plus a little
    assert np.abs(after - before).max() < 2.0 + 1.0
    # and, unless ink was pushed past the edge, lands where the forward map sends the old one
    fwd = np.linalg.inv(mats[:, :, :2])
    predicted = np.einsum("nij,nj->ni", fwd, before - mats[:, :, 2])
    err = np.abs(after - predicted).max(axis=1)
    ink = mnist[0].reshape(60000, -1).sum(axis=1) / np.linalg.det(mats[:, :, :2])
    kept = np.abs(imgs.reshape(60000, -1).sum(axis=1) / ink - 1) < 0.01
    assert kept.mean() > 0.85  # about 90% of the digits (the rest lose ink past the edge)
    assert np.median(err[kept]) < 0.05
    assert np.quantile(err[kept], 0.999) < 0.3 and err[kept].max() < 0.5
