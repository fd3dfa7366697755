"""Threads, for every entry point: the kernels, the fused network (forward, gradients, one
SDLM pass), the model and training. Each releases the GIL, gives the same bits from several
Python threads at once as one at a time, and the same bits whatever the number of threads
inside one call; training with a seed gives the same weights with 1 or 2 threads."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import lenet_fast
from conftest import in_threads, moved_model, rand, synthetic_digits, ticks_during
from lenet_fast import kernels as K
from lenet_fast import tables
from lenet_fast.model import LeNet5
from lenet_fast.train import sdlm_pass, sdlm_steps

# ---------------------------------------------------------------- the per-layer kernels


def workload(seed: int):
    """Every kernel, forward and backward, on LeNet shapes: a list of (name, fn, args)."""
    rng = np.random.default_rng(seed)
    n = 16
    t = np.array(tables.C3_TABLE)
    x1, w1, b1 = rand(rng, n, 1, 32, 32), rand(rng, 6, 1, 5, 5), rand(rng, 6)
    x3, w3, b3 = rand(rng, n, 6, 14, 14), rand(rng, 60, 5, 5), rand(rng, 16)
    x5, w5, b5 = rand(rng, n, 16, 5, 5), rand(rng, 120, 16, 5, 5), rand(rng, 120)
    xs, cs, bs = rand(rng, n, 6, 28, 28), rand(rng, 6), rand(rng, 6)
    xf, wf, bf = rand(rng, n, 120), rand(rng, 84, 120), rand(rng, 84)
    xr = rand(rng, n, 84)
    return [
        ("conv2d_forward", K.conv2d_forward, (x1, w1, b1)),
        ("conv2d_backward", K.conv2d_backward, (x1, w1, rand(rng, n, 6, 28, 28))),
        ("c5_forward", K.conv2d_forward, (x5, w5, b5)),
        ("c5_backward", K.conv2d_backward, (x5, w5, rand(rng, n, 120, 1, 1))),
        ("sparse_forward", K.sparse_conv2d_forward, (x3, w3, b3, t)),
        ("sparse_backward", K.sparse_conv2d_backward, (x3, w3, rand(rng, n, 16, 10, 10), t)),
        ("subsample_forward", K.subsample_forward, (xs, cs, bs)),
        ("subsample_backward", K.subsample_backward, (xs, cs, rand(rng, n, 6, 14, 14))),
        ("linear_forward", K.linear_forward, (xf, wf, bf)),
        ("linear_backward", K.linear_backward, (xf, wf, rand(rng, n, 84))),
        ("squash_forward", K.squash_forward, (xs,)),
        ("squash_backward", K.squash_backward, (xs, xs)),
        ("rbf_forward", K.rbf_forward, (xr, tables.RBF_CODES)),
        ("rbf_backward", K.rbf_backward, (xr, tables.RBF_CODES, rand(rng, n, 10))),
    ]


def as_list(out):
    return list(out) if isinstance(out, tuple) else [out]


def assert_same_bits(a, b, what):
    for u, v in zip(as_list(a), as_list(b)):
        assert u.tobytes() == v.tobytes(), f"{what}: results differ"


def test_kernel_calls_from_eight_threads_at_once_match_one_at_a_time(isa):
    work = workload(1)
    expected = {name: fn(*args) for name, fn, args in work}
    barrier = threading.Barrier(8)

    def run(tid: int):
        barrier.wait()
        got = []
        for rep in range(5):
            for name, fn, args in work[(tid + rep) % len(work) :] + work[: (tid + rep) % len(work)]:
                got.append((name, fn(*args)))
        return got

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(run, range(8)))
    for got in results:
        for name, out in got:
            assert_same_bits(out, expected[name], name)


@pytest.mark.skipif(not lenet_fast.info()["openmp"], reason="this build has no OpenMP threads")
def test_kernel_results_do_not_depend_on_the_thread_count(isa):
    before = lenet_fast.get_num_threads()
    try:
        lenet_fast.set_num_threads(1)
        one = {name: fn(*args) for name, fn, args in workload(2)}
        lenet_fast.set_num_threads(2)
        two = {name: fn(*args) for name, fn, args in workload(2)}
        lenet_fast.set_num_threads(3)  # more threads than cores: still the same bits
        three = {name: fn(*args) for name, fn, args in workload(2)}
    finally:
        lenet_fast.set_num_threads(before)
    for name in one:
        assert_same_bits(one[name], two[name], f"{name} 1 vs 2 threads")
        assert_same_bits(one[name], three[name], f"{name} 1 vs 3 threads")


def test_kernels_release_the_gil():
    """A pure-Python thread keeps running while another thread is inside a long kernel call."""
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, 512, 6, 14, 14), rand(rng, 60, 5, 5), rand(rng, 16)
    t = np.array(tables.C3_TABLE)
    K.sparse_conv2d_forward(x, w, b, t)  # warm up
    t0 = time.perf_counter()
    K.sparse_conv2d_forward(x, w, b, t)
    one_call = time.perf_counter() - t0
    calls = max(3, int(0.3 / max(one_call, 1e-4)))
    before = lenet_fast.get_num_threads()
    lenet_fast.set_num_threads(1)
    try:
        during = ticks_during(lambda: [K.sparse_conv2d_forward(x, w, b, t) for _ in range(calls)])
    finally:
        lenet_fast.set_num_threads(before)
    # With the GIL held for the whole call the spinner would advance only at the few
    # switch points between calls (a handful of ticks per call).
    assert during > 100 * calls, f"spinner advanced {during} times over {calls} kernel calls"


def test_set_num_threads_checks_its_argument():
    with pytest.raises(ValueError, match="n: expected a thread count >= 1, got 0"):
        lenet_fast.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        lenet_fast.set_num_threads(2.0)
    before = lenet_fast.get_num_threads()
    lenet_fast.set_num_threads(1)
    assert lenet_fast.get_num_threads() == 1
    lenet_fast.set_num_threads(before)


# ---------------------------------------------------------------- the fused network

NETWORK_ENTRIES = ["forward", "gradients", "sdlm_pass"]


def network_call(entry: str, n: int, seed: int):
    """A call of one whole-network entry point on n synthetic digits, returning the bytes of
    everything it produces (an SDLM pass runs on a fresh copy of the model each time)."""
    m = moved_model({"subsample": "mean", "rbf": "trainable"}, seed=3)
    digits, labels = synthetic_digits(n, seed)
    x = m.prepare(digits)
    if entry == "forward":
        return lambda: (m.forward(x).tobytes(),)
    if entry == "gradients":

        def gradients():
            loss, g, y = m.gradients(x, labels)
            return (repr(loss), y.tobytes(), *(g[k].tobytes() for k in sorted(g)))

        return gradients
    steps = sdlm_steps(m.hessian_diagonal(x[:50], labels[:50]), 5e-4, 0.02)

    def one_pass():
        trained = m.copy()
        result = sdlm_pass(trained, x, labels, np.arange(n), steps)
        return (result, *(trained.params[k].tobytes() for k in sorted(trained.params)))

    return one_pass


@pytest.mark.parametrize("entry", NETWORK_ENTRIES)
def test_network_results_do_not_depend_on_the_thread_count(isa, entry, restore_threads):
    call = network_call(entry, 45, seed=2)
    out = []
    for t in (1, 2, 3):
        lenet_fast.set_num_threads(t)
        out.append(call())
    assert out[0] == out[1], f"{entry}: 1 vs 2 threads"
    assert out[0] == out[2], f"{entry}: 1 vs 3 threads"


@pytest.mark.parametrize("entry", NETWORK_ENTRIES)
def test_network_calls_from_several_threads_at_once_match(isa, entry):
    calls = [network_call(entry, 10, seed=s) for s in range(4)]
    want = [call() for call in calls]
    got = in_threads(4, lambda i: [calls[i]() for _ in range(3)][-1])
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"{entry}: thread {i} differs from the call alone"


@pytest.mark.parametrize("entry", NETWORK_ENTRIES)
def test_network_releases_the_gil(entry):
    """A pure-Python thread keeps running while another thread is inside the call."""
    call = network_call(entry, 256, seed=1)
    during = ticks_during(lambda: [call() for _ in range(3)])
    # With the GIL held for the whole call the spinner would not advance at all.
    assert during > 50, f"{entry}: the spinner advanced {during} times during the calls"


# ---------------------------------------------------------------- the model


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
        assert trained.params[k].tobytes() == v.tobytes(), (
            f"trained {k} differs from training alone"
        )


# ---------------------------------------------------------------- training


def weights_after(threads: int, **kw) -> dict[str, bytes]:
    lenet_fast.set_num_threads(threads)
    x, y = synthetic_digits(300, 11)
    model = LeNet5(seed=2)
    lenet_fast.train(model, x, y, passes=2, hessian_samples=100, seed=5, **kw)
    return {k: v.tobytes() for k, v in model.params.items()}


@pytest.mark.parametrize(
    "kw",
    [{}, {"optimizer": "sgd", "batch_size": 16}, {"distort": True}],
    ids=["sdlm", "sgd", "sdlm-distort"],
)
def test_same_seed_same_bits_with_1_and_2_threads(isa, restore_threads, kw):
    one = weights_after(1, **kw)
    two = weights_after(2, **kw)
    again = weights_after(1, **kw)
    assert one == again, "two runs with 1 thread differ"
    diff = [k for k in one if one[k] != two[k]]
    assert not diff, f"1 vs 2 threads: {diff} differ"


def test_python_sdlm_loop_is_thread_count_independent(isa, restore_threads):
    """The per-pattern Python loop (what the fused pass replaces) on batched Hessian
    estimates: same bits with 1 and 2 threads."""
    x, y = synthetic_digits(120, 12)
    xp = lenet_fast.preprocess(x)
    out = []
    for threads in (1, 2):
        lenet_fast.set_num_threads(threads)
        m = LeNet5(seed=3)
        h = m.hessian_diagonal(xp[:100], y[:100])
        sdlm_pass(m, xp, y, np.arange(120), sdlm_steps(h, 1e-4, 0.02), fused=False)
        out.append({k: v.tobytes() for k, v in m.params.items()})
    assert out[0] == out[1]


@pytest.fixture
def restore_threads():
    before = lenet_fast.get_num_threads()
    yield
    lenet_fast.set_num_threads(before)
