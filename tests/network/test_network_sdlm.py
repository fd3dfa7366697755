"""The fused C++ SDLM pass (lenet_fast.network.sdlm_pass, _core.sdlm_pass) against the Python
loop of train.sdlm_pass: the fast backend's loop (the same kernels in the same order: the same
bits), and the float64 NumPy reference backend (within float32 rounding); every loss,
subsampling and RBF option, on every ISA. Then bad arguments, the GIL, threads."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

import lenet_fast
from lenet_fast import LeNet5, _core, tables
from lenet_fast.layout import PARAM_SHAPES, RBF_PARAM
from lenet_fast.train import sdlm_pass
from lenet_fast.train import sdlm_steps as train_sdlm_steps

N_PATTERNS = 500  # the long pass against the fast backend's loop
N_REFERENCE = 200  # the long pass against the reference backend (~15 ms a pattern there)

CONFIGS = [
    dict(loss=lo, subsample=su, rbf=rb)
    for lo, su, rb in itertools.product(("mse", "map"), ("sum", "mean"), ("fixed", "trainable"))
]
# With j = 5 and the untrained penalties near 80, Eq. 9's competition term is ~e^-75: a
# large j makes the max-shift and the log-sum-exp gradient count from the first pattern.
CONFIGS.append(dict(loss="map", subsample="sum", rbf="trainable", map_j=200.0))
# every option value twice against the slow reference, in four runs instead of nine
REFERENCE_CONFIGS = [CONFIGS[0], CONFIGS[3], CONFIGS[8], CONFIGS[6]]


@pytest.fixture(autouse=True)
def one_thread():
    """The Python loops below at one thread per kernel call: results do not depend on it, and
    at batch 1 a parallel region waits milliseconds whenever another process holds the other
    core (the fused pass itself always runs on one thread)."""
    before = lenet_fast.get_num_threads()
    lenet_fast.set_num_threads(1)
    yield
    lenet_fast.set_num_threads(before)


def cid(c: dict) -> str:
    return "-".join(str(v) for v in c.values())


@pytest.fixture(scope="module")
def patterns():
    """(x (N,1,32,32) float32, labels (N,) intp, order): MNIST training digits when
    $LENET_FAST_DATA is set, else synthetic digits (a bright bar whose row is the label)."""
    n = N_PATTERNS
    data = os.environ.get("LENET_FAST_DATA")
    if data:
        images, labels, _, _ = lenet_fast.load_mnist(data)
        images, labels = images[:n], labels[:n]
    else:
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, d in enumerate(labels):
            images[i, 4 + 2 * d : 6 + 2 * d, 4:24] = 255
    order = np.random.default_rng(1).permutation(n)
    return lenet_fast.preprocess(images), labels.astype(np.intp), order


def make(config: dict, backend: str = "fast") -> LeNet5:
    return LeNet5(
        **{"seed": 3, "map_j": 5.0, "loss_scale": 1.0 / 30.0, "backend": backend, **config}
    )


def sdlm_steps(model: LeNet5, x, labels, eta: float = 5e-4) -> dict[str, np.ndarray]:
    """eps_k as train() makes them, from the Hessian on the first 100 patterns."""
    return train_sdlm_steps(model.hessian_diagonal(x[:100], labels[:100]), eta, 0.02)


def python_loop(model: LeNet5, x, labels, order, steps) -> tuple[float, int]:
    """train.sdlm_pass's per-pattern Python loop: (mean loss, errors)."""
    loss_sum, errors = sdlm_pass(model, x, labels, order, steps, fused=False)
    return loss_sum / max(1, len(order)), errors


def assert_params_close(
    got: LeNet5, want: LeNet5, start: LeNet5, rtol: float, delta_rtol: float, what: str
):
    """Parameters within rtol of the largest |parameter| of each array, and the change from
    ``start`` within delta_rtol of the largest change: the update itself must agree, not
    only the (much larger) weights it is added to."""
    assert set(got.params) == set(want.params)
    for k in want.params:
        g, w, s = (m.params[k].astype(np.float64) for m in (got, want, start))
        assert got.params[k].dtype == np.float32
        scale = max(np.abs(w).max(), 1e-30)
        err = np.abs(g - w).max()
        assert err <= rtol * scale, f"{what} {k}: max error {err:.3g} > {rtol:g} * {scale:.3g}"
        dscale = max(np.abs(w - s).max(), 1e-30)
        derr = np.abs((g - s) - (w - s)).max()
        assert derr <= delta_rtol * dscale, (
            f"{what} {k}: update error {derr:.3g} > {delta_rtol:g} * {dscale:.3g}"
        )


# ---------------------------------------------------------------- against the Python loop


@pytest.mark.parametrize("config", CONFIGS, ids=cid)
@pytest.mark.parametrize("n", [1, N_PATTERNS], ids=["1-pattern", f"{N_PATTERNS}-patterns"])
def test_same_bits_as_the_fast_python_loop(isa, patterns, config, n):
    """The fused pass calls the kernels of the Python loop, in its order, at batch 1: the
    same parameters, loss and error count bit for bit."""
    x, labels, order = patterns
    start = make(config)
    steps = sdlm_steps(start, x, labels)
    loop, fused = start.copy(), start.copy()
    want_loss, want_err = python_loop(loop, x, labels, order[:n], steps)
    got_sum, got_err = sdlm_pass(fused, x, labels, order[:n], steps)
    assert got_err == want_err
    assert got_sum / n == pytest.approx(want_loss, rel=1e-12)
    assert (RBF_PARAM in fused.params) == (config["rbf"] == "trainable")
    for k in loop.params:
        np.testing.assert_array_equal(fused.params[k], loop.params[k], err_msg=k)
    changed = [k for k in start.params if not np.array_equal(start.params[k], fused.params[k])]
    assert set(changed) == set(start.params), (
        f"parameters left unchanged: {set(start.params) - set(changed)}"
    )


@pytest.fixture(scope="module")
def reference_runs(patterns):
    """The reference backend's Python loop, per config and pass length (ISA-independent,
    so computed once): {(config id, n): (start model, steps, trained model, loss, errors)}."""
    x, labels, order = patterns
    cache = {}

    def get(config: dict, n: int):
        key = (cid(config), n)
        if key not in cache:
            start = make(config)
            steps = sdlm_steps(start, x, labels)
            ref = make(config, backend="reference")
            for k in start.params:
                np.testing.assert_array_equal(ref.params[k], start.params[k])
            loss, errors = python_loop(ref, x, labels, order[:n], steps)
            cache[key] = (start, steps, ref, loss, errors)
        return cache[key]

    return get


@pytest.mark.parametrize("config", CONFIGS, ids=cid)
def test_one_pattern_matches_the_reference_backend(isa, patterns, reference_runs, config):
    x, labels, order = patterns
    start, steps, ref, ref_loss, ref_err = reference_runs(config, 1)
    fused = start.copy()
    loss_sum, errors = sdlm_pass(fused, x, labels, order[:1], steps)
    assert errors == ref_err
    # Eq. 9's loss is y_c minus about min(y): ~80 - 78 for an untrained net, so float32's
    # rounding of y (~1e-5 absolute) is ~1e-5 of the loss
    assert loss_sum == pytest.approx(ref_loss, rel=2e-5)
    # C1's gradient sums 784 products of both signs in float32: ~1e-4 of its largest entry
    assert_params_close(fused, ref, start, rtol=1e-6, delta_rtol=5e-4, what="1 pattern")


@pytest.mark.parametrize("config", REFERENCE_CONFIGS, ids=cid)
def test_a_pass_matches_the_reference_backend(isa, patterns, reference_runs, config):
    x, labels, order = patterns
    n = N_REFERENCE
    start, steps, ref, ref_loss, ref_err = reference_runs(config, n)
    fused = start.copy()
    loss_sum, errors = sdlm_pass(fused, x, labels, order[:n], steps)
    assert errors == ref_err
    assert loss_sum / n == pytest.approx(ref_loss, rel=1e-5)
    assert_params_close(fused, ref, start, rtol=1e-5, delta_rtol=2e-3, what=f"{n} patterns")


def test_sdlm_pass_in_train_fires_progress_like_the_python_loop(patterns):
    """train.sdlm_pass runs the fused pass in chunks that end where the Python loop calls
    progress: the same calls, the same statistics, the same weights."""
    x, labels, order = patterns
    order = order[:250]  # every = 2: 125 progress calls
    start = make(CONFIGS[0])
    steps = sdlm_steps(start, x, labels)
    results, calls = {}, {True: [], False: []}
    for fused in (True, False):
        m = start.copy()
        results[fused] = (
            sdlm_pass(
                m,
                x,
                labels,
                order,
                steps,
                fused=fused,
                progress=lambda *a, f=fused: calls[f].append(a),
            ),
            m,
        )
    (loss_f, err_f), mf = results[True]
    (loss_p, err_p), mp = results[False]
    assert err_f == err_p and loss_f == pytest.approx(loss_p, rel=1e-12)
    assert len(calls[True]) == len(calls[False]) == 125
    for a, b in zip(calls[True], calls[False]):
        assert a[:2] == b[:2]
        assert a[2]["train_error"] == b[2]["train_error"]
        assert a[2]["loss"] == pytest.approx(b[2]["loss"], rel=1e-12)
    for k in mp.params:
        np.testing.assert_array_equal(mf.params[k], mp.params[k], err_msg=k)
    # the fused pass is the default
    m = start.copy()
    assert sdlm_pass(m, x, labels, order, steps) == pytest.approx((loss_f, err_f), rel=1e-12)


def test_empty_order_and_repeated_patterns(patterns):
    x, labels, _ = patterns
    m = make(CONFIGS[0])
    steps = sdlm_steps(m, x, labels)
    before = {k: v.copy() for k, v in m.params.items()}
    assert sdlm_pass(m, x, labels, np.zeros(0, np.int64), steps) == (0.0, 0)
    for k in before:
        np.testing.assert_array_equal(m.params[k], before[k])
    # one pattern three times = three updates, each from the weights the last one left
    a, b = m.copy(), m.copy()
    sdlm_pass(a, x, labels, np.array([7, 7, 7]), steps)
    for _ in range(3):
        sdlm_pass(b, x, labels, np.array([7]), steps)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


# ---------------------------------------------------------------- GIL and threads


# ---------------------------------------------------------------- bad arguments


def good_args():
    """Valid arguments of _core.sdlm_pass, as a dict (small: 3 patterns)."""
    m = LeNet5(seed=0, rbf="trainable")
    x = np.zeros((3, 1, 32, 32), np.float32)
    return dict(
        params={k: m.params[k] for k in PARAM_SHAPES},
        steps={k: np.zeros_like(m.params[k]) for k in PARAM_SHAPES},
        centres=m.params[RBF_PARAM],
        centres_step=np.zeros((10, 84), np.float32),
        x=x,
        labels=np.array([0, 1, 9]),
        order=np.array([2, 0, 1, 1]),
        table=tables.C3_TABLE,
        loss="mse",
        loss_scale=1.0,
        map_j=5.0,
        subsample="sum",
    )


def test_good_arguments_work():
    kw = good_args()
    loss, errors = _core.sdlm_pass(**kw)
    assert isinstance(loss, float) and isinstance(errors, int) and 0 <= errors <= 4
    kw["centres"], kw["centres_step"] = tables.RBF_CODES, None  # fixed: read-only is fine
    assert not tables.RBF_CODES.flags.writeable
    _core.sdlm_pass(**kw)
    kw["labels"], kw["order"] = np.array([0, 1, 9], np.uint8), np.array([2, 0], np.int32)
    _core.sdlm_pass(**kw)


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


BAD = [
    # (what to change, exception, message regex)
    (
        lambda kw: kw.update(params=list(kw["params"].values())),
        TypeError,
        r"^params: expected a dict",
    ),
    (lambda kw: kw["params"].pop("c3.w"), ValueError, r"^params: missing 'c3.w'"),
    (
        lambda kw: kw["steps"].update({"rbf.c": np.zeros((10, 84), np.float32)}),
        ValueError,
        r"^steps: unexpected key 'rbf.c'",
    ),
    (
        lambda kw: kw["params"].update({"c1.w": kw["params"]["c1.w"].astype(np.float64)}),
        TypeError,
        r"^params\['c1.w'\]: expected \(6,1,5,5\) float32, got float64",
    ),
    (
        lambda kw: kw["params"].update({"f6.w": np.zeros((120, 84), np.float32)}),
        ValueError,
        r"^params\['f6.w'\]: expected \(84,120\) float32, got shape \(120,84\)",
    ),
    (
        lambda kw: kw["params"].update({"f6.w": np.zeros((120, 84), np.float32).T}),
        ValueError,
        r"^params\['f6.w'\]: expected a C-contiguous array",
    ),
    (
        lambda kw: kw["params"].update({"c5.b": _readonly(kw["params"]["c5.b"])}),
        ValueError,
        r"^params\['c5.b'\]: expected a writeable array",
    ),
    (
        lambda kw: kw["steps"].update({"s4.coef": np.zeros(6, np.float32)}),
        ValueError,
        r"^steps\['s4.coef'\]: expected \(16,\) float32, got shape \(6,\)",
    ),
    (
        lambda kw: kw.update(centres=_readonly(kw["centres"])),
        ValueError,
        r"^centres: expected a writeable",
    ),
    (
        lambda kw: kw.update(centres=np.zeros((84, 10), np.float32)),
        ValueError,
        r"^centres: expected \(10,84\)",
    ),
    (
        lambda kw: kw.update(centres_step=np.zeros((10, 84))),
        TypeError,
        r"^centres_step: expected \(10,84\) float32",
    ),
    (
        lambda kw: kw.update(x=np.zeros((3, 1, 28, 28), np.float32)),
        ValueError,
        r"^x: expected \(N,1,32,32\) float32",
    ),
    (
        lambda kw: kw.update(x=np.zeros((3, 32, 32), np.float32)),
        ValueError,
        r"^x: expected \(N,1,32,32\) float32",
    ),
    (lambda kw: kw.update(x=[[0.0]]), TypeError, r"^x: expected a numpy.ndarray"),
    (
        lambda kw: kw.update(labels=np.array([0, 1])),
        ValueError,
        r"^labels: expected \(3,\) integers",
    ),
    (
        lambda kw: kw.update(labels=np.array([0, 10, 1])),
        ValueError,
        r"^labels: expected values in 0..9 \(digits\), got 10 at index 1",
    ),
    (
        lambda kw: kw.update(labels=np.array([0.0, 1.0, 2.0])),
        TypeError,
        r"^labels: expected \(3,\) integers, got float64",
    ),
    (
        lambda kw: kw.update(order=np.array([0, 3])),
        ValueError,
        r"^order: expected values in \[0, 3\)",
    ),
    (
        lambda kw: kw.update(order=np.array([-1])),
        ValueError,
        r"^order: expected values in \[0, 3\)",
    ),
    (
        lambda kw: kw.update(order=np.array([2**63 + 5], np.uint64)),
        ValueError,
        r"^order: expected values in \[0, 3\)",
    ),
    (
        lambda kw: kw.update(order=np.zeros((2, 2), np.int64)),
        ValueError,
        r"^order: expected \(P,\) integers",
    ),
    (
        lambda kw: kw.update(table=np.ones((16, 6), bool)),
        ValueError,
        r"^table: expected \(C,K\) = \(6,16\) bool",
    ),
    (
        lambda kw: kw.update(table=np.ones((6, 16), bool)),
        ValueError,
        r"^params\['c3.w'\]: expected \(96,5,5\) float32, got shape \(60,5,5\)",
    ),
    (lambda kw: kw.update(loss="l2"), ValueError, r"^loss: expected 'mse' or 'map', got 'l2'"),
    (lambda kw: kw.update(subsample="max"), ValueError, r"^subsample: expected 'sum' or 'mean'"),
    (
        lambda kw: kw.update(loss_scale=0.0),
        ValueError,
        r"^loss_scale: expected a finite number > 0",
    ),
    (
        lambda kw: kw.update(map_j=float("nan")),
        ValueError,
        r"^map_j: expected a finite number > 0, got nan",
    ),
    (
        lambda kw: kw["params"].update({"s2.bias": kw["params"]["s2.coef"]}),
        ValueError,
        r"^params\['s2.coef'\]: shares memory with params\['s2.bias'\]",
    ),
    (
        lambda kw: kw["steps"].update({"f6.b": kw["params"]["f6.b"]}),
        ValueError,
        r"^params\['f6.b'\]: shares memory with steps\['f6.b'\]",
    ),
    (
        lambda kw: kw.update(centres_step=kw["centres"]),
        ValueError,
        r"^centres: shares memory with centres_step",
    ),
]


@pytest.mark.parametrize(
    ("change", "exc", "match"), BAD, ids=[b[2].replace("\\", "")[1:48] for b in BAD]
)
def test_bad_argument_names_itself_and_changes_nothing(change, exc, match):
    kw = good_args()
    kw["steps"] = {k: np.ones_like(v) for k, v in kw["steps"].items()}  # a run would move them
    arrays = {**kw["params"], RBF_PARAM: kw["centres"]}
    before = {k: v.copy() for k, v in arrays.items()}
    change(kw)
    with pytest.raises(exc, match=match):
        _core.sdlm_pass(**kw)
    for k, v in before.items():
        np.testing.assert_array_equal(arrays[k], v, err_msg=f"{k} changed by a failed call")


def test_python_wrapper_checks_the_model_and_steps(patterns):
    x, labels, order = patterns
    m = LeNet5(seed=0)
    steps = {k: np.zeros_like(v) for k, v in m.params.items()}
    with pytest.raises(ValueError, match="backend='fast'"):
        sdlm_pass(LeNet5(seed=0, backend="reference"), x, labels, order, steps)
    with pytest.raises(TypeError, match="model: expected a LeNet5"):
        sdlm_pass(m.params, x, labels, order, steps)
    with pytest.raises(ValueError, match="steps: expected the names"):
        sdlm_pass(m, x, labels, order, {k: v for k, v in steps.items() if k != "c1.b"})
    with pytest.raises(ValueError, match="steps: expected the names"):
        sdlm_pass(m, x, labels, order, {**steps, RBF_PARAM: np.zeros((10, 84), np.float32)})
    with pytest.raises(ValueError, match=r"^order: expected values in \[0, 500\)"):
        sdlm_pass(m, x, labels, np.array([500]), steps)


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[2]], ids=cid)
def test_network_functions_take_arrays_and_give_the_models_bits(patterns, config):
    """lenet_fast.network on plain dicts of arrays: the bits of the model's methods."""
    from lenet_fast import network

    x, labels, order = patterns
    m = make(config)
    fixed = None if RBF_PARAM in m.params else m.codes
    params = {k: v.copy() for k, v in m.params.items()}
    np.testing.assert_array_equal(
        network.forward(params, x[:5], options=m.options, centres=fixed), m.forward(x[:5])
    )
    loss, g, y = network.gradients(params, x[:5], labels[:5], options=m.options, centres=fixed)
    want_loss, want_g, want_y = m.gradients(x[:5], labels[:5])
    assert loss == want_loss and set(g) == set(want_g) == set(m.params)
    for k in g:
        np.testing.assert_array_equal(g[k], want_g[k], err_msg=k)
    np.testing.assert_array_equal(y, want_y)
    steps = sdlm_steps(m, x, labels)
    got = network.sdlm_pass(params, steps, x, labels, order[:20], options=m.options, centres=fixed)
    assert got == sdlm_pass(m, x, labels, order[:20], steps)
    for k in params:
        np.testing.assert_array_equal(params[k], m.params[k], err_msg=k)
    if fixed is None:
        with pytest.raises(ValueError, match="centres: params holds trainable centres"):
            network.forward(params, x[:1], options=m.options, centres=m.codes)
    else:
        with pytest.raises(ValueError, match="centres: expected the fixed"):
            network.forward(params, x[:1], options=m.options)
