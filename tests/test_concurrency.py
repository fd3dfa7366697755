"""Concurrency at the model level: 8 threads predicting with one shared model get exactly
the sequential results, and training one model while other threads predict with another
changes neither the predictions nor the trained weights."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import lenet_fast
from lenet_fast.model import LeNet5


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


def test_eight_threads_predict_on_one_model(isa):
    model = LeNet5(seed=4)
    x, _ = synthetic_digits(300, 1)
    chunks = [x[i::8] for i in range(8)]
    seq_pred = [model.predict(c, batch_size=16) for c in chunks]
    seq_fwd = [model.forward(c) for c in chunks]
    barrier = threading.Barrier(8)

    def work(i):
        barrier.wait()
        out = []
        for _ in range(5):
            out.append((model.predict(chunks[i], batch_size=16), model.forward(chunks[i])))
        return out

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(work, range(8)))
    for i, runs in enumerate(results):
        for p, f in runs:
            np.testing.assert_array_equal(p, seq_pred[i])
            assert f.tobytes() == seq_fwd[i].tobytes(), f"thread {i}: forward differs"


def test_training_one_model_while_threads_predict_with_another():
    x, y = synthetic_digits(400, 2)
    served = LeNet5(seed=5)
    want_pred = served.predict(x)
    want_fwd = served.forward(x[:64]).tobytes()
    params_before = {k: v.copy() for k, v in served.params.items()}

    # the weights one pass of training reaches alone
    alone = LeNet5(seed=6)
    lenet_fast.train(alone, x, y, passes=1, hessian_samples=50, seed=3)

    trained = LeNet5(seed=6)
    stop = threading.Event()
    errors: list[str] = []
    rounds = [0] * 4

    def serve(i):
        while not stop.is_set():
            if not np.array_equal(served.predict(x), want_pred):
                errors.append(f"thread {i}: predictions changed")
            if served.forward(x[:64]).tobytes() != want_fwd:
                errors.append(f"thread {i}: forward changed")
            rounds[i] += 1

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        lenet_fast.train(trained, x, y, passes=1, hessian_samples=50, seed=3)
        lenet_fast.train(LeNet5(seed=7), x, y, passes=1, optimizer="sgd", seed=3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:5]
    assert min(rounds) >= 1, rounds
    for k, v in served.params.items():
        assert v.tobytes() == params_before[k].tobytes(), f"served model's {k} changed"
    for k, v in alone.params.items():
        assert trained.params[k].tobytes() == v.tobytes(), f"trained {k} differs from training alone"
