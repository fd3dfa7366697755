"""lenet_fast.dask against a real distributed cluster: two worker processes on loopback,
started and closed here. The expectations are the model's own local predict and
predict_proba, computed in this process without Dask."""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest

import lenet_fast
from lenet_fast import LeNet5

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import lenet_fast.dask as ld  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture(scope="module")
def model() -> LeNet5:
    return LeNet5.pretrained()


@pytest.fixture(scope="module")
def digits(mnist_dir) -> np.ndarray:
    """The 70,000 MNIST digits, training then test, uint8 (70000,28,28)."""
    tr_x, _, te_x, _ = lenet_fast.load_mnist(mnist_dir)
    return np.concatenate([tr_x, te_x])


@pytest.fixture(scope="module")
def local_labels(model, digits) -> np.ndarray:
    return model.predict(digits)


def on_cluster(client, x: np.ndarray, chunk: int):
    """``x`` as a dask array whose chunks already sit on the workers (scattered), as data
    on a cluster does: the graph then holds references, not 55 MB of pixels."""
    parts = [x[i : i + chunk] for i in range(0, len(x), chunk)]
    futures = client.scatter(parts)
    return da.concatenate(
        [
            da.from_delayed(f, shape=p.shape, dtype=p.dtype, meta=p[:0])
            for f, p in zip(futures, parts)
        ]
    )


def test_labels_of_70000_digits_equal_local_predict(client, model, digits, local_labels):
    x = on_cluster(client, digits, 5000)
    assert x.numblocks[0] == 14
    got = ld.predict(model, x).compute()
    assert got.dtype == np.int64 and got.shape == (70000,)
    np.testing.assert_array_equal(got, local_labels)


def test_flat_rows_proba_and_reject_equal_local(client, model, digits):
    te = digits[60000:]
    x = on_cluster(client, te.reshape(-1, 784), 2500)
    p = ld.predict(model, x, proba=True)
    assert p.shape == (10000, 10) and p.dtype == np.float64
    np.testing.assert_array_equal(p.compute(), model.predict_proba(te))
    want = model.predict(te, reject="auto")
    assert (want == -1).sum() > 0  # the shipped thresholds reject some test digits
    np.testing.assert_array_equal(ld.predict(model, x, reject="auto").compute(), want)
    np.testing.assert_array_equal(
        ld.predict(model, x, reject=1.0).compute(), model.predict(te, reject=1.0)
    )


def test_the_graph_holds_one_model_however_many_chunks(model):
    size = len(pickle.dumps(model))
    for chunks in (1000, 100):  # 70 and 700 chunks
        x = da.zeros((70000, 28, 28), dtype=np.uint8, chunks=(chunks, 28, 28))
        base = len(pickle.dumps(dict(x.__dask_graph__())))
        g = dict(ld.predict(model, x).__dask_graph__())
        shipped = [k for k, v in g.items() if "_Shipped" in repr(v)]
        assert len(shipped) == 1, shipped
        # one model's bytes, plus a small task per chunk: far below one model per chunk
        assert len(pickle.dumps(g)) < base + size + 2000 * x.numblocks[0]
        assert len(pickle.dumps(g)) < base + 2 * size


def test_each_worker_unpickles_the_model_at_most_once(client, model, digits):
    def count():
        return ld.unpickled

    before = client.run(count)
    x = on_cluster(client, digits[:20000], 500)  # 40 chunks over 2 workers
    np.testing.assert_array_equal(ld.predict(model, x).compute(), model.predict(digits[:20000]))
    after = client.run(count)
    delta = {w: after[w] - before[w] for w in after}
    assert all(d <= 1 for d in delta.values()), delta
    assert 1 <= sum(delta.values()) <= 2, delta


def test_each_task_runs_its_kernels_on_one_thread(client, model, digits):
    client.run(lenet_fast.set_num_threads, 2)
    x = on_cluster(client, digits[:4000], 200)
    y = ld.predict(model, x).persist()
    futures = distributed.futures_of(y)
    distributed.wait(futures)
    # the workers that ran a chunk (its result stays where it was computed)
    ran = {w for ws in client.who_has(futures).values() for w in ws}
    assert ran
    threads = client.run(lenet_fast.get_num_threads, workers=sorted(ran))
    assert set(threads.values()) == {1}, threads


# the pixels travel inside the graph here (55 MB, distributed warns), unlike scattered data
# a lost worker's chunks can then be made again: the point of this test
@pytest.mark.filterwarnings("ignore:Sending large graph:UserWarning")
def test_a_worker_killed_mid_job_and_the_labels_are_the_same(client, model, digits, local_labels):
    client.wait_for_workers(2)
    x = da.from_array(digits, chunks=(500, 28, 28))  # 140 chunks: several seconds of work
    y = ld.predict(model, x).persist()
    futures = distributed.futures_of(y)
    assert len(futures) == 140
    pids = client.run(os.getpid)
    victim_addr, victim = sorted(pids.items())[0]
    state: dict[str, int] = {}

    def kill_after_first_results() -> None:
        deadline = time.monotonic() + 120  # never outlive a job that failed early
        while sum(f.done() for f in futures) < 3:
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        state["done_at_kill"] = sum(f.done() for f in futures)
        os.kill(victim, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_results)
    killer.start()
    got = y.compute()
    killer.join()
    assert "done_at_kill" in state, "no worker was killed"
    print("chunks done at the kill:", state["done_at_kill"], "of", len(futures))
    assert state["done_at_kill"] < len(futures) // 2, "the kill came too late"
    np.testing.assert_array_equal(got, local_labels)
    # the worker really died: the nanny started a new process in its place
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()


def test_bad_arguments(model):
    x = da.zeros((10, 28, 28), dtype=np.uint8, chunks=(5, 28, 28))
    with pytest.raises(TypeError, match="x: expected a dask array"):
        ld.predict(model, np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(TypeError, match="model: expected a lenet_fast.LeNet5"):
        ld.predict("model.npz", x)
    with pytest.raises(TypeError, match="x: expected uint8"):
        ld.predict(model, x.astype(np.float32))
    with pytest.raises(ValueError, match=r"x: expected digits shaped"):
        ld.predict(model, da.zeros((10, 392, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="x: chunk along the first axis only"):
        ld.predict(model, x.rechunk((5, 14, 28)))
    with pytest.raises(ValueError, match="reject"):
        ld.predict(model, x, reject="sometimes")
    with pytest.raises(ValueError, match="reject: applies to labels only"):
        ld.predict(model, x, proba=True, reject="auto")
