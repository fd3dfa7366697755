"""``lenet-fast predict`` on real image files, in a real subprocess."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from lenet_fast import LeNet5, load_mnist

KEYS = {"file", "digit", "probability", "margin", "rejected", "error"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lenet_fast", "predict", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory, mnist_dir):
    """40 test digits as dark-on-white files of several formats, a blank page, a text file
    and a corrupt PNG; and the labels of the digits by file name."""
    from PIL import Image

    _, _, x, y = load_mnist(mnist_dir)
    d = tmp_path_factory.mktemp("digits")
    labels = {}
    for i in range(40):
        page = np.full((90, 90), 255, np.uint8)
        page[5:89, 3:87] = 255 - np.kron(x[i], np.ones((3, 3), np.uint8))
        name = f"d{i:02d}.{['png', 'jpg', 'bmp', 'gif', 'tif'][i % 5]}"
        Image.fromarray(page).save(d / name)
        labels[name] = int(y[i])
    Image.fromarray(np.full((40, 40), 250, np.uint8)).save(d / "blank.png")
    (d / "notes.txt").write_text("not an image, and not named like one")
    (d / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return d, labels


def test_json_has_one_object_per_file_with_exactly_the_keys(folder):
    d, labels = folder
    r = run("--json", str(d))
    assert r.returncode == 1, r.stderr  # broken.png could not be read
    rows = json.loads(r.stdout)
    assert len(rows) == len(labels) + 2  # the blank page and broken.png; notes.txt ignored
    assert all(set(row) == KEYS for row in rows)
    by = {row["file"].rsplit("/", 1)[-1]: row for row in rows}
    broken = by["broken.png"]
    assert broken["digit"] is None and broken["error"] and "broken.png" in broken["error"]
    assert by["blank.png"]["rejected"] is True and by["blank.png"]["digit"] is None
    right = sum(by[n]["digit"] == lab for n, lab in labels.items())
    assert right >= 38
    for n in labels:
        row = by[n]
        assert row["error"] is None and isinstance(row["rejected"], bool)
        assert 0 <= row["probability"] <= 1 and row["margin"] >= 0
        assert (row["digit"] is None) == row["rejected"]
    assert "1 of 42 files could not be read" in r.stderr


def test_json_matches_the_model(folder):
    d, _ = folder
    r = run("--json", "--reject", "off", "--model", "mnist", str(d / "d0*.png"))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    files = [row["file"] for row in rows]
    assert files == sorted(str(p) for p in d.glob("d0*.png"))
    want = LeNet5.pretrained("mnist").predict_image(files)
    assert [row["digit"] for row in rows] == want.tolist()


def test_csv_and_table(folder):
    d, _ = folder
    r = run("--csv", str(d / "d01.jpg"), str(d / "blank.png"))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert list(rows[0]) == ["file", "digit", "probability", "margin", "rejected", "error"]
    assert rows[1]["rejected"] == "true" and rows[1]["digit"] == ""
    r = run(str(d / "d01.jpg"))
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == [
        "digit",
        "prob",
        "margin",
        "file",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["/no/such/dir"], "/no/such/dir: no such file or folder"),
        (["--reject", "maybe", "x.png"], "--reject: expected auto, off or a margin"),
        (["--model", "nope.npz", "x.png"], "nope.npz"),
        (["--json", "--csv", "x.png"], "not allowed with argument"),
        (["/no/*.png"], "matches no image file"),
    ],
)
def test_bad_arguments_exit_2(folder, args, message):
    r = run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert message in r.stderr and "Traceback" not in r.stderr


def test_an_empty_folder_is_an_error(tmp_path):
    r = run(str(tmp_path))
    assert r.returncode == 2 and "without image files" in r.stderr and r.stdout == ""


def test_many_files_are_streamed_in_chunks(tmp_path):
    """3,000 files: more than two chunks of 1,024, so the pipelining is exercised."""
    from PIL import Image

    rng = np.random.default_rng(0)
    img = np.zeros((28, 28), np.uint8)
    img[6:22, 12:16] = 255  # a "1"
    for i in range(3000):
        Image.fromarray(np.roll(img, int(rng.integers(-3, 4)), axis=1)).save(
            tmp_path / f"{i:05d}.png"
        )
    r = run("--csv", "--reject", "off", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert [row["file"].rsplit("/", 1)[-1] for row in rows] == [f"{i:05d}.png" for i in range(3000)]
    assert {row["digit"] for row in rows} == {"1"}
