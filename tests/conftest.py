"""Shared test machinery: one run per instruction set, and the tolerance table.

Every test that takes the ``isa`` fixture runs once per ISA this machine can run
(``lenet_fast.available_isas()``), so the scalar path and the AVX2 path are both checked
on every machine that has AVX2 (Highway's and NumPy's habit).
"""

from __future__ import annotations

import gzip
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import lenet_fast

# The floating-point tolerance of each kernel against the float64 reference, in one table.
# The check is |got - want| <= TOL * max(1, max|want|): float32 sums of up to a few
# thousand terms in a different order than float64, plus (AVX2) a tanh accurate to a few
# ulp. A kernel outside its row is wrong, not unlucky.
TOL = {
    "conv2d_forward": 2e-6,
    "conv2d_backward": 2e-6,
    "sparse_conv2d_forward": 2e-6,
    "sparse_conv2d_backward": 2e-6,
    "subsample_forward": 1e-6,
    "subsample_backward": 1e-6,
    "linear_forward": 2e-6,
    "linear_backward": 2e-6,
    "squash_forward": 5e-7,
    "squash_backward": 5e-7,
    "rbf_forward": 1e-6,
    "rbf_backward": 1e-6,
}


@pytest.fixture(params=lenet_fast.available_isas())
def isa(request):
    """Run the test with the kernels of one ISA, then restore the previous choice."""
    before = lenet_fast.get_isa()
    lenet_fast.set_isa(request.param)
    yield request.param
    lenet_fast.set_isa(before)


def assert_close(kernel: str, got, want, what: str = "") -> None:
    """Compare a float32 kernel output with the float64 reference under TOL[kernel]."""
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.dtype == np.float32, f"{kernel} {what}: dtype {got.dtype}"
    assert got.shape == want.shape, f"{kernel} {what}: shape {got.shape} != {want.shape}"
    if want.size == 0:
        return
    # NaN and inf where the maths puts them, and only there.
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{kernel} {what}: NaN")
    np.testing.assert_array_equal(
        np.isposinf(got), np.isposinf(want), err_msg=f"{kernel} {what}: +inf"
    )
    np.testing.assert_array_equal(
        np.isneginf(got), np.isneginf(want), err_msg=f"{kernel} {what}: -inf"
    )
    fin = np.isfinite(want)
    if not fin.any():
        return
    scale = max(1.0, float(np.abs(want[fin]).max()))
    err = float(np.abs(got[fin].astype(np.float64) - want[fin]).max())
    assert err <= TOL[kernel] * scale, (
        f"{kernel} {what}: max error {err:.3g} > {TOL[kernel]:.1g} * {scale:.3g}"
    )


def rand(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    """Uniform float32 in [-scale, scale)."""
    return (scale * (2.0 * rng.random(shape) - 1.0)).astype(np.float32)


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of the four original MNIST .gz files: ``$LENET_FAST_DATA`` (CI sets it),
    else the per-user cache, downloading what is missing there (checksums verified)."""
    from lenet_fast import download as data

    value = os.environ.get("LENET_FAST_DATA", "")
    if value:
        path = Path(value)
        missing = [s + ".gz" for s in data.MNIST_FILES if not (path / (s + ".gz")).is_file()]
        if missing:
            pytest.fail(f"LENET_FAST_DATA={value!r}: missing {missing}", pytrace=False)
        return path
    try:
        return data.download_mnist()
    except (OSError, ValueError) as e:
        pytest.fail(
            f"LENET_FAST_DATA is not set and MNIST could not be downloaded into the cache "
            f"({e}); set LENET_FAST_DATA to a folder with the four MNIST .gz files",
            pytrace=False,
        )


def ticks_during(call: Callable[[], object]) -> int:
    """How many times a pure-Python thread loops while ``call()`` runs in this thread.

    A call that holds the GIL throughout lets it advance only at the interpreter's few
    switch points; a call that releases the GIL lets it run freely."""
    ticks = 0
    done = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.01)
        start = ticks
        call()
        return ticks - start
    finally:
        done.set()
        spinner.join()


def moved_model(config: dict, seed: int = 3) -> lenet_fast.LeNet5:
    """A LeNet5(seed, **config) moved off its initialisation (every parameter plus 0.05 x a
    normal draw), so that every parameter matters to the outputs and gradients."""
    m = lenet_fast.LeNet5(seed=seed, **config)
    rng = np.random.default_rng(seed)
    for a in m.params.values():
        a += (0.05 * rng.standard_normal(a.shape)).astype(np.float32)
    return m


def in_threads(n: int, fn: Callable[[int], object]) -> list:
    """fn(0) .. fn(n-1), each on its own Python thread, all started before any is joined;
    their results in order."""
    out: list = [None] * n

    def run(i: int) -> None:
        out[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def synthetic_digits(n: int, seed: int):
    """Small uint8 'digits': a bar whose position and orientation encode the label, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, d in enumerate(labels):
        r = 4 + 2 * int(d)
        if d % 2:
            x[i, r : r + 3, 4:24] = 255
        else:
            x[i, 4:24, r : r + 3] = 255
    return x, labels


# MNIST's four file names, in load_mnist's and load_idx's order
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def idx_bytes(arr: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array, written from the format's definition (a big-endian
    magic 0x0000080D for D dimensions, D big-endian uint32 sizes, then the bytes) and not
    from the package's reader."""
    assert arr.dtype == np.uint8
    header = struct.pack(">I", 0x0800 | arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.tobytes()


def write_idx(folder: Path, arrays, *, gz: bool, names=None, override=None) -> Path:
    """The four arrays as IDX files under MNIST's names (gzipped or not); ``override``
    maps a stem to the bytes (before compression) to write instead."""
    folder.mkdir(parents=True, exist_ok=True)
    override = override or {}
    for stem, arr in zip(IDX_STEMS, arrays):
        blob = override.get(stem, idx_bytes(arr) if arr is not None else None)
        if blob is None:
            continue
        name = (names or {}).get(stem, stem)
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(blob))
        else:
            (folder / name).write_bytes(blob)
    return folder
