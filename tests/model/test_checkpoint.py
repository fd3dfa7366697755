"""lenet_fast.checkpoint: format version 2, and a version 1 file, written by lenet_fast
before mu became a per-pass schedule, read through the migration.

tests/fixtures/v1_sdlm_checkpoint.npz is that code's checkpoint after one SDLM pass (loss
scale 0.05, mu 0.02 in the config) on the synthetic digits of :func:`digits`;
v1_sdlm_checkpoint.json holds what the same code computed: the penalties of the first four
digits, and the parameters' sha256 and losses of an uninterrupted two-pass run. That code
ran the AVX2 kernels, whose bits differ from the scalar path's, so the two tests that compare
them run on the AVX2 path whatever LENET_FAST_ISA says, and only where the CPU has it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import lenet_fast
from lenet_fast import LeNet5, train
from lenet_fast.checkpoint import FORMAT_VERSION, digest, migrate_v1, read_checkpoint

DATA = Path(__file__).resolve().parents[1] / "fixtures"
V1 = DATA / "v1_sdlm_checkpoint.npz"
EXPECTED = json.loads((DATA / "v1_sdlm_checkpoint.json").read_text(encoding="utf-8"))


# conftest.py's isa fixture, on the one path whose bits the fixture holds
ON_AVX2 = pytest.mark.parametrize(
    "isa",
    [
        pytest.param(
            "avx2",
            marks=pytest.mark.skipif(
                "avx2" not in lenet_fast.available_isas(),
                reason="the version 1 fixture holds the AVX2 kernels' bits; this CPU has no AVX2",
            ),
        )
    ],
    indirect=True,
)


def digits() -> tuple[np.ndarray, np.ndarray]:
    """The 60 synthetic digits the version 1 file was trained on."""
    rng = np.random.default_rng(2026)
    labels = rng.integers(0, 10, 60)
    images = rng.integers(0, 40, (60, 28, 28)).astype(np.uint8)
    for i, d in enumerate(labels):
        images[i, 4 + 2 * d : 6 + 2 * d, 4:24] = 255
    return images, labels


def test_the_file_is_version_1():
    with np.load(V1) as z:
        assert json.loads(str(z["meta"]))["format_version"] == 1


def test_reading_version_1_migrates_its_metadata():
    meta, arrays = read_checkpoint(V1)
    assert FORMAT_VERSION == 2 and meta["format_version"] == 2
    assert meta["options"]["loss_scale"] == 0.05  # the default of that code, kept
    assert [r["mu"] for r in meta["history"]] == [0.02]  # from the config, per pass now
    assert meta["train_state"] == {
        "pass": 1,
        "config": {
            "optimizer": "sdlm",
            "distort": False,
            "seed": 6,
            "hessian_samples": 20,
            "order": "reshuffle",
            "n_train": 60,
        },
    }
    assert set(arrays) == {f"param/{k}" for k in meta["param_names"]} | {"codes"}


@ON_AVX2
def test_a_version_1_model_computes_what_it_did(isa):
    m = LeNet5.load(V1)
    assert m.options["loss_scale"] == 0.05
    images, _ = digits()
    np.testing.assert_array_equal(
        m.forward(images[:4]), np.array(EXPECTED["penalties"], dtype=np.float32)
    )


@ON_AVX2
def test_resuming_version_1_reaches_the_weights_of_its_uninterrupted_run(isa, tmp_path):
    images, labels = digits()
    m = LeNet5()
    hist = train(
        m, images, labels, passes=2, hessian_samples=20, seed=6, mu=0.02, resume=V1, out=tmp_path
    )
    assert digest(m.params) == EXPECTED["two_passes_param_sha256"]
    assert [r["loss"] for r in hist] == pytest.approx(
        EXPECTED["two_passes_history_loss"], rel=1e-12
    )
    assert hist[1]["mu"] == 0.02 and m.options["loss_scale"] == 0.05
    # the checkpoint written on resuming is version 2, and reads back as it was written
    meta, _ = read_checkpoint(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as z:
        assert json.loads(str(z["meta"]))["format_version"] == 2
    assert meta["history"] == hist and meta["train_state"]["pass"] == 2


def test_resuming_version_1_with_the_mu_schedule_is_refused():
    images, labels = digits()
    with pytest.raises(ValueError, match=r"'mu of pass 1': \(0\.02, 8\.0\)"):
        train(LeNet5(), images, labels, passes=2, hessian_samples=20, seed=6, resume=V1)


def test_migration_of_the_other_version_1_layouts():
    # an SGD run kept SDLM's mu and hessian_samples too; its passes record no mu
    sgd = {
        "format_version": 1,
        "history": [{"pass": 1, "lr": 0.1}],
        "train_state": {
            "pass": 1,
            "config": {
                "optimizer": "sgd",
                "mu": 0.02,
                "hessian_samples": 500,
                "lr": 0.1,
                "batch_size": 32,
                "seed": 0,
            },
        },
    }
    got = migrate_v1(sgd)
    assert got["history"] == [{"pass": 1, "lr": 0.1}]
    assert got["train_state"]["config"] == {
        "optimizer": "sgd",
        "lr": 0.1,
        "batch_size": 32,
        "seed": 0,
    }
    assert sgd["train_state"]["config"]["mu"] == 0.02  # the input is left as it was
    # a run with a mu function kept its name in the config and mu in every record
    named = {
        "format_version": 1,
        "history": [{"pass": 1, "eta": 5e-4, "mu": 8.0}],
        "train_state": {"pass": 1, "config": {"optimizer": "sdlm", "mu": "sdlm_mu"}},
    }
    got = migrate_v1(named)
    assert got["history"][0]["mu"] == 8.0 and "mu" not in got["train_state"]["config"]
    # a model saved outside training has no train state
    assert migrate_v1({"format_version": 1, "history": [], "train_state": {}})["train_state"] == {}


def test_version_2_round_trip(tmp_path):
    m = LeNet5(seed=2, rbf="trainable", loss="mse")
    path = m.save(
        tmp_path / "m.npz",
        history=[{"pass": 1, "eta": 5e-4, "mu": 8.0}],
        train_state={"pass": 1, "config": {"optimizer": "sdlm"}},
    )
    back = LeNet5.load(path)
    assert back.options == m.options and back.history[0]["mu"] == 8.0
    for k in m.params:
        np.testing.assert_array_equal(back.params[k], m.params[k])
