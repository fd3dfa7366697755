"""lenet_fast.load_idx: four IDX files in MNIST's layout with any counts, no checksum.

The files are written by conftest's writer of the IDX format, independent of the package's
reader, from the first 3,000 training and 500 test digits of MNIST.
"""

from __future__ import annotations

import numpy as np
import pytest

import lenet_fast
from conftest import IDX_STEMS as STEMS
from conftest import idx_bytes, write_idx

N_TRAIN, N_TEST = 3000, 500


@pytest.fixture(scope="module")
def subset(mnist_dir):
    tr_x, tr_y, te_x, te_y = lenet_fast.load_mnist(mnist_dir)
    return tr_x[:N_TRAIN].copy(), tr_y[:N_TRAIN].copy(), te_x[:N_TEST].copy(), te_y[:N_TEST].copy()


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_a_subset_reads_back_equal(subset, tmp_path, gz):
    got = lenet_fast.load_idx(write_idx(tmp_path, subset, gz=gz))
    for a, b in zip(got, subset):
        assert a.dtype == np.uint8 and a.shape == b.shape
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata
        np.testing.assert_array_equal(a, b)


def test_dotted_names_and_other_counts(subset, tmp_path):
    names = {s: s.replace("-idx", ".idx") for s in STEMS}
    tr_x, tr_y, te_x, te_y = subset
    folder = write_idx(tmp_path, (tr_x[:7], tr_y[:7], te_x[:1], te_y[:1]), gz=False, names=names)
    got = lenet_fast.load_idx(folder)
    assert [a.shape for a in got] == [(7, 28, 28), (7,), (1, 28, 28), (1,)]
    np.testing.assert_array_equal(got[2], te_x[:1])


def test_the_real_mnist_reads_too(mnist_dir):
    tr_x, tr_y, te_x, te_y = lenet_fast.load_idx(mnist_dir)
    assert tr_x.shape == (60000, 28, 28) and te_y.shape == (10000,)


def test_load_mnist_still_wants_the_original(subset, tmp_path):
    folder = write_idx(tmp_path, subset, gz=True)
    with pytest.raises(ValueError, match="MNIST has 60000 images") as e:
        lenet_fast.load_mnist(folder, verify=False)
    assert str(folder / "train-images-idx3-ubyte.gz") in str(e.value)


def test_missing_folder_and_file(subset, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist") as e:
        lenet_fast.load_idx(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(e.value)
    folder = write_idx(tmp_path / "d", subset[:3] + (None,), gz=True)
    with pytest.raises(FileNotFoundError) as e:
        lenet_fast.load_idx(folder)
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images" not in msg and str(folder) in msg
    with pytest.raises(TypeError, match="root"):
        lenet_fast.load_idx(None)


def _word(blob: bytes, word: int, value: int) -> bytes:
    b = bytearray(blob)
    b[4 * word : 4 * word + 4] = value.to_bytes(4, "big")
    return bytes(b)


@pytest.mark.parametrize(
    "stem, make, patterns",
    [
        ("train-images-idx3-ubyte", lambda b: _word(b, 0, 0x801), ["magic", "0x00000803"]),
        ("t10k-labels-idx1-ubyte", lambda b: _word(b, 0, 0x803), ["magic", "0x00000801"]),
        ("train-images-idx3-ubyte", lambda b: _word(b, 2, 32), ["dimensions", "28x28"]),
        ("t10k-images-idx3-ubyte", lambda b: b[:-1], ["truncated"]),
        ("t10k-images-idx3-ubyte", lambda b: b + b"\0" * 784, ["trailing bytes"]),
        ("train-labels-idx1-ubyte", lambda b: b[:6], ["8-byte IDX header"]),
        ("train-labels-idx1-ubyte", lambda b: _word(b, 1, N_TRAIN + 1), ["truncated"]),
    ],
    ids=[
        "images magic",
        "labels magic",
        "image size",
        "truncated",
        "trailing",
        "header fragment",
        "count beyond data",
    ],
)
@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_corrupt_files(subset, tmp_path, stem, make, patterns, gz):
    blob = make(idx_bytes(subset[STEMS.index(stem)]))
    folder = write_idx(tmp_path, subset, gz=gz, override={stem: blob})
    with pytest.raises(ValueError) as e:
        lenet_fast.load_idx(folder)
    msg = str(e.value)
    assert str(folder / (stem + (".gz" if gz else ""))) in msg, msg
    for p in patterns:
        assert p in msg, msg
    assert "Rewrite the file in IDX format" in msg and "download" not in msg, msg


def test_label_outside_0_to_9_names_the_first(subset, tmp_path):
    labels = subset[3].copy()
    labels[[41, 97]] = [12, 255]
    folder = write_idx(tmp_path, subset[:3] + (labels,), gz=True)
    with pytest.raises(ValueError, match="2 labels outside 0..9") as e:
        lenet_fast.load_idx(folder)
    msg = str(e.value)
    assert str(folder / "t10k-labels-idx1-ubyte.gz") in msg
    assert "first at index 41: 12" in msg, msg


def test_not_gzip(subset, tmp_path):
    folder = write_idx(tmp_path, subset, gz=True)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(b"<html>404</html>")
    with pytest.raises(ValueError, match="not a valid gzip file") as e:
        lenet_fast.load_idx(folder)
    assert str(folder / "train-labels-idx1-ubyte.gz") in str(e.value)
    assert "original" not in str(e.value)  # no MNIST size to compare with


@pytest.mark.parametrize("split", [0, 2], ids=["train", "test"])
def test_images_and_labels_must_agree(subset, tmp_path, split):
    arrays = list(subset)
    arrays[split + 1] = arrays[split + 1][:-1]
    folder = write_idx(tmp_path, arrays, gz=False)
    with pytest.raises(ValueError, match="expected one per image") as e:
        lenet_fast.load_idx(folder)
    msg = str(e.value)
    assert str(folder / STEMS[split + 1]) in msg and str(folder / STEMS[split]) in msg
    n = len(arrays[split])
    assert f"{n - 1:,} labels" in msg and f"{n:,} images" in msg


def test_the_writer_uses_the_package_names():
    from lenet_fast import download as DL

    assert list(STEMS) == list(DL.MNIST_FILES)
