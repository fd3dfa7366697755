"""Durable checkpoint files (beyond tests/model/test_checkpoint.py's cases).

* A save killed with SIGKILL at random moments (a child process saving in a loop) always
  leaves a file that loads, and loads as one of the models that were saved, whole.
* A failure injected at each step of the atomic write (write, flush, fsync, rename, an
  interrupt) leaves the previous file byte-identical and no temporary behind.
* A file truncated at any length, or with one bit flipped anywhere (zip headers, the .npy
  headers, every parameter array, the codes, the metadata, the central directory), is
  rejected with ValueError, or (a flip in bytes no reader uses) loads as exactly the saved
  model: never as a different one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import lenet_fast.checkpoint as mod
from lenet_fast.model import LeNet5

CHILD = r"""
import sys
from lenet_fast.model import LeNet5
path = sys.argv[1]
models = [LeNet5(seed=s) for s in (1, 2)]
hist = [[{"pass": i, "note": "x" * 2000}] for i in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    models[i % 2].save(path, history=hist[i % 2], train_state={"pass": i % 2 + 1})
    i += 1
"""


def same_model(a: LeNet5, b: LeNet5) -> bool:
    return (
        a.options == b.options
        and a.codes.tobytes() == b.codes.tobytes()
        and list(a.params) == list(b.params)
        and all(a.params[k].tobytes() == b.params[k].tobytes() for k in a.params)
    )


@pytest.mark.slow
def test_sigkill_during_save_leaves_a_readable_checkpoint(tmp_path):
    path = tmp_path / "ckpt.npz"
    expected = {1: LeNet5(seed=1), 2: LeNet5(seed=2)}
    LeNet5(seed=1).save(path, history=[{"pass": 1, "note": "x" * 2000}], train_state={"pass": 1})
    rng = np.random.default_rng(0)
    kills = 30
    for _ in range(kills):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
            time.sleep(float(rng.uniform(0.0, 0.05)))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
            child.stderr.close()
        back = LeNet5.load(path)  # must not raise
        which = back.train_state["pass"]
        assert same_model(back, expected[which]), "a killed save left a mixed or damaged model"
        assert back.history == [{"pass": which, "note": "x" * 2000}]
    # killed saves may leave their temporary file; never a half file under the real name
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert all(n.startswith(".ckpt.npz.") and n.endswith(".tmp") for n in leftovers), leftovers


class Boom(Exception):
    pass


@pytest.mark.parametrize("stage", ["write_half", "flush", "fsync", "replace", "interrupt"])
def test_failure_at_each_step_keeps_the_previous_file(tmp_path, monkeypatch, stage):
    path = tmp_path / "m.npz"
    LeNet5(seed=1).save(path)
    before = path.read_bytes()
    real_savez = np.savez

    if stage == "write_half":

        def savez(f, **arrays):  # the writer dies halfway through the archive
            import io

            buf = io.BytesIO()
            real_savez(buf, **arrays)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise Boom("disk full halfway")

        monkeypatch.setattr(np, "savez", savez)
    elif stage == "flush":
        real_fdopen = os.fdopen

        class FailingFlush:
            def __init__(self, f):
                self.f = f

            def __getattr__(self, name):
                return getattr(self.f, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def flush(self):
                raise Boom("flush")

        monkeypatch.setattr(os, "fdopen", lambda fd, mode: FailingFlush(real_fdopen(fd, mode)))
    elif stage == "fsync":
        monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(Boom("fsync")))
    elif stage == "replace":
        monkeypatch.setattr(os, "replace", lambda a, b: (_ for _ in ()).throw(Boom("rename")))
    else:

        def savez(f, **arrays):
            raise KeyboardInterrupt

        monkeypatch.setattr(np, "savez", savez)
    exc = KeyboardInterrupt if stage == "interrupt" else (Boom, OSError)
    with pytest.raises(exc):
        LeNet5(seed=2).save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"], "a temporary file was left"
    assert same_model(LeNet5.load(path), LeNet5(seed=1))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("durable")
    model = LeNet5(seed=8, rbf="trainable")
    model.params["rbf.c"] += 0.25
    path = model.save(
        d / "m.npz", history=[{"pass": 1, "test_error": 0.01}], train_state={"pass": 1}
    )
    raw = path.read_bytes()
    # the byte range of each member in the archive: every region gets flips
    regions = {}
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            start = info.header_offset
            regions[info.filename] = (
                start,
                start + 30 + len(info.filename) + len(info.extra) + info.compress_size,
            )
    regions["central directory"] = (max(e for _, e in regions.values()), len(raw))
    return d, model, raw, regions


ESCAPED: list[str] = []  # damaged files that raised something else than ValueError


def _check_rejected_or_same(path, model, what):
    try:
        back = LeNet5.load(path)
    except ValueError as e:
        assert str(path) in str(e), f"{what}: error does not name the file: {e}"
        return "rejected"
    except Exception as e:
        # refused, but not with ValueError: test_damaged_files_raise_only_value_error
        ESCAPED.append(f"{what}: {type(e).__name__}: {e}".splitlines()[0])
        return "rejected"
    assert same_model(back, model) and back.history == [{"pass": 1, "test_error": 0.01}], (
        f"{what}: loaded as a different model"
    )
    return "same"


@pytest.mark.slow
def test_bit_flips_everywhere_are_rejected(saved):
    d, model, raw, regions = saved
    rng = np.random.default_rng(1)
    outcomes = {"rejected": 0, "same": 0}
    per_region = {}
    path = d / "flip.npz"
    for name, (lo, hi) in regions.items():
        # every byte of the small members and of the headers, 40 spread over each large member
        offsets = (
            range(lo, hi)
            if hi - lo <= 300
            else sorted(set(range(lo, lo + 130)) | set(rng.integers(lo, hi, 40).tolist()))
        )
        for off in offsets:
            b = bytearray(raw)
            b[off] ^= 1 << int(rng.integers(8))
            path.write_bytes(bytes(b))
            r = _check_rejected_or_same(path, model, f"{name} byte {off}")
            outcomes[r] += 1
            per_region.setdefault(name, {"rejected": 0, "same": 0})[r] += 1
    # the data of every member is covered by the zip CRC: flips there are always caught
    assert all(v["rejected"] > 0 for v in per_region.values()), per_region
    # "same": bytes no reader looks at (zip version and time fields, .npy header padding)
    assert outcomes["rejected"] > outcomes["same"], outcomes


def _escaped_error(path):
    """None if LeNet5.load(path) succeeds or raises ValueError, else the other exception."""
    try:
        LeNet5.load(path)
    except ValueError:
        return None
    except Exception as e:
        return e
    return None


def test_damaged_files_raise_only_value_error(saved, tmp_path):
    d, model, raw, regions = saved
    lo, hi = regions["param/c3.w.npy"]
    escaped = []
    for off in range(lo, min(hi, lo + 200)):  # the local zip header and the .npy header
        for bit in (0, 5):
            b = bytearray(raw)
            b[off] ^= 1 << bit
            (tmp_path / "f.npz").write_bytes(bytes(b))
            if (e := _escaped_error(tmp_path / "f.npz")) is not None:
                escaped.append(f"byte {off} bit {bit}: {type(e).__name__}")
    np.save(tmp_path / "bare.npy", np.zeros(3))
    if (e := _escaped_error(tmp_path / "bare.npy")) is not None:
        escaped.append(f"bare .npy: {type(e).__name__}: {e}")
    assert not escaped, escaped[:10]


def test_truncation_at_every_length_is_rejected(saved):
    d, model, raw, regions = saved
    path = d / "trunc.npz"
    cuts = sorted(
        set(range(0, 600)) | set(range(0, len(raw), 997)) | set(range(len(raw) - 600, len(raw)))
    )
    for n in cuts:
        path.write_bytes(raw[:n])
        with pytest.raises(ValueError, match="trunc.npz"):
            LeNet5.load(path)


def test_foreign_files_are_rejected(tmp_path):
    cases = {
        "empty.npz": b"",
        "npy.npz": None,  # a bare .npy
        "zip_of_text.npz": None,
        "other_npz.npz": None,
        "pickled.npz": None,
        "json_meta.npz": None,
        "wrong_shapes.npz": None,
        "random.npz": np.random.default_rng(0).bytes(5000),
    }
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "random.npz").write_bytes(cases["random.npz"])
    np.save(tmp_path / "npy.npz", np.zeros(3))
    os.replace(tmp_path / "npy.npz.npy", tmp_path / "npy.npz") if (
        tmp_path / "npy.npz.npy"
    ).exists() else None
    with zipfile.ZipFile(tmp_path / "zip_of_text.npz", "w") as z:
        z.writestr("meta.npy", "hello")
    np.savez(
        tmp_path / "other_npz.npz", meta=np.array('{"format": "something.else"}'), x=np.zeros(2)
    )
    np.savez(tmp_path / "pickled.npz", meta=np.array([{"format": mod.FORMAT}], dtype=object))
    np.savez(tmp_path / "json_meta.npz", meta=np.array("[1, 2, 3]"))
    # a lenet_fast file whose parameters were swapped for others of the wrong shape
    good = LeNet5(seed=1)
    good.save(tmp_path / "g.npz")
    with np.load(tmp_path / "g.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param/c1.w"] = np.zeros((6, 1, 4, 4), np.float32)
    np.savez(tmp_path / "wrong_shapes.npz", **arrays)
    for name in cases:
        with pytest.raises(ValueError, match=name):
            LeNet5.load(tmp_path / name)
