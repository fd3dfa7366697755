"""A LeNet5 pickles: the copy computes the same bits, keeps every attribute (unknown ones
included) and works in another process (multiprocessing's spawn context)."""

from __future__ import annotations

import multiprocessing
import os
import pickle

import numpy as np
import pytest

import lenet_fast
from conftest import synthetic_digits


def digits(n: int = 16) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def same_model(a: lenet_fast.LeNet5, b: lenet_fast.LeNet5) -> None:
    assert vars(a).keys() == vars(b).keys()
    assert a.options == b.options and a.backend == b.backend
    assert a.history == b.history and a.train_state == b.train_state
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert a.params[k].dtype == b.params[k].dtype
        np.testing.assert_array_equal(a.params[k], b.params[k])
    x = digits()
    np.testing.assert_array_equal(a.forward(x), b.forward(x))  # bit for bit
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


@pytest.fixture(scope="module")
def trained() -> lenet_fast.LeNet5:
    x, y = synthetic_digits(200, seed=4)
    model = lenet_fast.LeNet5(seed=3, rbf="trainable")
    model.fit(x, y, passes=1, mu=0.4)
    assert model.history
    return model


@pytest.mark.parametrize(
    "config",
    [{}, {"rbf": "trainable", "subsample": "sum", "loss": "mse"}, {"backend": "reference"}],
    ids=["default", "options", "reference"],
)
def test_a_fresh_model(config):
    m = lenet_fast.LeNet5(seed=7, **config)
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        same_model(m, pickle.loads(pickle.dumps(m, protocol=protocol)))


def test_a_trained_model(trained):
    copy = pickle.loads(pickle.dumps(trained))
    same_model(trained, copy)
    assert copy.params["c1.w"] is not trained.params["c1.w"]  # a copy, not a view
    assert copy.params["c1.w"].flags.writeable


def test_a_loaded_model(trained, tmp_path):
    trained.save(tmp_path / "m.npz", history=trained.history)
    loaded = lenet_fast.LeNet5.load(tmp_path / "m.npz")
    same_model(loaded, pickle.loads(pickle.dumps(loaded)))


def test_unknown_attributes_ride_along():
    m = lenet_fast.LeNet5(seed=1)
    m.meta = {"name": "digits", "classes": list(range(10))}
    copy = pickle.loads(pickle.dumps(m))
    assert copy.meta == m.meta


def test_in_a_spawned_process(trained):
    x = digits(64)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        assert pool.apply(os.getpid) != os.getpid()  # really another process
        # a bound method pickles its model: the child unpickles it and computes
        forward = pool.apply(trained.forward, (x,))
        predicted = pool.apply(trained.predict, (x,))
    np.testing.assert_array_equal(forward, trained.forward(x))
    np.testing.assert_array_equal(predicted, trained.predict(x))
