"""Every expected failure of the command line, each in a real ``python -m lenet_fast``
process: ``lenet-fast: error: <message naming the thing>`` on stderr, no traceback, and
exit status 2 (bad arguments, unusable input files), 1 (a run that failed otherwise) or
130 (interrupted)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import synthetic_digits, write_idx

TIMEOUT = 120  # seconds; every case here takes a few


def run(*args: str, env: dict | None = None, cwd: Path | None = None):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lenet_fast", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=full_env,
        cwd=cwd,
    )


def check(r, status: int, *names: str) -> str:
    """The error line(s) of a failed run, after checking its status, form and content."""
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert "lenet-fast: error: " in r.stderr, r.stderr
    msg = r.stderr.split("lenet-fast: error: ", 1)[1]
    for name in names:
        assert name in msg, (name, r.stderr)
    return msg


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> Path:
    """A small dataset in MNIST's IDX layout: 300 training and 100 test images."""
    x, y = synthetic_digits(400, seed=1)
    y = y.astype("uint8")
    return write_idx(tmp_path_factory.mktemp("idx"), (x[:300], y[:300], x[300:], y[300:]), gz=True)


@pytest.fixture(scope="module")
def model_file(idx_dir, tmp_path_factory) -> Path:
    """A model trained for one pass on idx_dir, by the command line itself."""
    out = tmp_path_factory.mktemp("run")
    r = run(
        "train", "--dataset", "idx", "--data", idx_dir, "--passes", "1", "--mu", "0.4", "--out", out
    )
    assert r.returncode == 0, r.stderr
    assert f"on 300 images from {idx_dir} (IDX)" in r.stdout and "MNIST" not in r.stdout
    return out / "model.npz"


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run from an empty folder with no MNIST anywhere (the default --out lands here)."""
    monkeypatch.setenv("LENET_FAST_DATA", str(tmp_path / "no-mnist-here"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------------------
# the parser: status 2, the usage, then the error


@pytest.mark.parametrize(
    "args, names",
    [
        ((), ["command"]),
        (("bogus",), ["invalid choice", "'bogus'"]),
        (("info", "--bogus"), ["--bogus"]),
        (("train", "--passes", "0"), ["--passes", ">= 1", "got 0"]),
        (("train", "--passes", "-2"), ["--passes", ">= 1", "got -2"]),
        (("train", "--passes", "two"), ["--passes", "'two'"]),
        (("train", "--batch-size", "0"), ["--batch-size", ">= 1"]),
        (("train", "--limit", "0"), ["--limit", ">= 1"]),
        (("train", "--seed", "-1"), ["--seed", ">= 0"]),
        (("train", "--lr", "-0.1"), ["--lr", "> 0"]),
        (("train", "--mu", "nan"), ["--mu", "finite"]),
        (("train", "--map-j", "0"), ["--map-j", "> 0"]),
        (("train", "--loss-scale", "inf"), ["--loss-scale"]),
        (("train", "--dataset", "cifar"), ["--dataset", "'cifar'"]),
        (("eval",), ["model"]),
        (("eval", "m.npz", "--dataset", "x"), ["--dataset"]),
    ],
)
def test_bad_arguments(in_tmp, args, names):
    r = run(*args)
    check(r, 2, *names)
    assert r.stderr.startswith("usage: lenet-fast")
    assert list(in_tmp.iterdir()) == []  # nothing written, not even the --out folder


# --------------------------------------------------------------------------------------
# data


@pytest.mark.parametrize("command", ["train", "eval"])
def test_missing_data_folder(in_tmp, model_file, command):
    folder = in_tmp / "nowhere"
    args = ("train",) if command == "train" else ("eval", model_file)
    check(run(*args, "--data", folder), 2, str(folder), "does not exist")
    check(run(*args, "--dataset", "idx", "--data", folder), 2, str(folder), "does not exist")
    assert not (in_tmp / "lenet-fast-run").exists()


def test_folder_without_mnist(in_tmp):
    (in_tmp / "empty").mkdir()
    msg = check(run("train", "--data", in_tmp / "empty"), 2, str(in_tmp / "empty"))
    assert "train-images-idx3-ubyte.gz" in msg and "not found" in msg


def test_default_folder_without_mnist(in_tmp):
    check(run("train"), 2, "no-mnist-here", "LENET_FAST_DATA")


@pytest.mark.parametrize("dataset", ["mnist", "idx"])
def test_corrupt_data_file(in_tmp, idx_dir, dataset):
    folder = in_tmp / "d"
    folder.mkdir()
    for p in idx_dir.iterdir():
        (folder / p.name).write_bytes(p.read_bytes())
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:50])
    r = run("train", "--dataset", dataset, "--data", folder)
    # MNIST stops at the first file, whose counts are not MNIST's; idx at the cut one
    names = [str(folder / "train-images-idx3-ubyte.gz")] if dataset == "mnist" else [str(bad)]
    check(r, 2, *names)


def test_idx_needs_data_and_no_download(in_tmp, idx_dir):
    check(run("train", "--dataset", "idx"), 2, "--dataset idx", "--data")
    check(run("train", "--dataset", "idx", "--data", idx_dir, "--download"), 2, "--download")
    assert not (in_tmp / "lenet-fast-run").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once it is closed


@pytest.mark.parametrize("command", ["train", "eval"])
def test_download_without_network(in_tmp, model_file, command):
    mirror = f"http://127.0.0.1:{_closed_port()}/mnist/"
    args = ("train",) if command == "train" else ("eval", model_file)
    start = time.monotonic()
    r = run(*args, "--data", in_tmp / "dl", "--download", env={"LENET_FAST_MNIST_MIRROR": mirror})
    assert time.monotonic() - start < 60
    check(r, 1, "could not download", "train-images-idx3-ubyte.gz")
    assert mirror in r.stderr
    assert list((in_tmp / "dl").iterdir()) == []  # no partial file left


# --------------------------------------------------------------------------------------
# model files, checkpoints, the output folder


def test_eval_of_a_missing_model(in_tmp, idx_dir):
    check(run("eval", in_tmp / "none.npz", "--dataset", "idx", "--data", idx_dir), 2, "none.npz")


@pytest.mark.parametrize(
    "case, make",
    [
        ("truncated", lambda good: good[: len(good) // 2]),
        ("not an npz", lambda good: b"model weights, honest\n"),
        ("empty", lambda good: b""),
    ],
)
def test_eval_of_a_bad_model(in_tmp, idx_dir, model_file, case, make):
    bad = in_tmp / "bad.npz"
    bad.write_bytes(make(model_file.read_bytes()))
    check(run("eval", bad, "--dataset", "idx", "--data", idx_dir), 2, str(bad))


def test_eval_of_a_folder(in_tmp, idx_dir):
    check(run("eval", in_tmp, "--dataset", "idx", "--data", idx_dir), 2, str(in_tmp))


def test_eval_of_a_good_model_on_idx(idx_dir, model_file):
    r = run("eval", model_file, "--dataset", "idx", "--data", idx_dir)
    assert r.returncode == 0, r.stderr
    assert "of 100)" in r.stdout  # the 100 test images of idx_dir


def test_resume_of_a_missing_file(in_tmp, idx_dir):
    ckpt = in_tmp / "checkpoint_03.npz"
    r = run("train", "--dataset", "idx", "--data", idx_dir, "--resume", ckpt)
    check(r, 2, "--resume", str(ckpt))


def test_resume_of_a_model_that_is_not_a_checkpoint(in_tmp, idx_dir):
    bad = in_tmp / "checkpoint_01.npz"
    bad.write_bytes(b"PK\x03\x04 not really")
    r = run("train", "--dataset", "idx", "--data", idx_dir, "--resume", bad, "--out", in_tmp / "o")
    check(r, 2, str(bad))


@pytest.mark.parametrize("where", ["inside a file", "a file"])
def test_unwritable_out(in_tmp, idx_dir, where):
    (in_tmp / "file").write_text("a regular file\n")
    out = in_tmp / "file" / "run" if where == "inside a file" else in_tmp / "file"
    r = run("train", "--dataset", "idx", "--data", idx_dir, "--passes", "1", "--out", out)
    check(r, 2, "--out", str(out))
    assert "training LeNet-5" not in r.stdout  # refused before the first pass


# --------------------------------------------------------------------------------------
# interrupted


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX")
def test_interrupt_is_status_130(tmp_path, idx_dir):
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lenet_fast",
            "train",
            "--dataset",
            "idx",
            "--data",
            str(idx_dir),
            "--passes",
            "100000",
            "--mu",
            "0.4",
            "--out",
            str(tmp_path / "run"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        banner = p.stdout.readline()  # printed inside main's error handling
        assert "training LeNet-5" in banner, banner
        p.stdout.readline()  # the first pass is done: the run is well under way
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=TIMEOUT)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
