"""Fuzzing every public function that takes arrays with random valid and invalid arguments.

Each case starts from random *valid* arguments (small random shapes, including N = 0 and
size-1 dimensions), then (most of the time) mutates one or two of them: another dtype,
a Python list, None, a scalar, another number of dimensions, a zero-size or negative-stride
view, Fortran order, a strided or broadcast (huge declared size, zero strides) view, a
misaligned buffer, a dimension changed. The function must then either

* work, and then every array it was given was a valid one and its result matches the NumPy
  reference (the kernels) or the result of the same call on clean arguments (the model,
  preprocess, distort); or
* raise TypeError or ValueError whose message starts with the name of one of its arguments
  (``"x: expected ..."``); a wrong type (not an ndarray, wrong dtype) is a TypeError naming
  exactly the argument that has it.

Anything else (another exception, a crash, a silent wrong answer, a valid call that is
refused) fails. The case generator is seeded: the same cases on every run.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import lenet_fast
from conftest import assert_close
from lenet_fast import distort, image, kernels, mnist, reference
from lenet_fast.model import LeNet5

F32 = np.float32
N_KERNEL_CASES = 12_000
N_MODEL_CASES = 1_500

# ----------------------------------------------------------------------------- valid args


def _r(rng, *shape):
    return np.asarray(2 * rng.random(shape) - 1, dtype=F32)


def _table(rng, c, k):
    t = rng.random((c, k)) < 0.5
    if rng.random() < 0.8:  # most tables: every output map reads at least one input
        for j in range(k):
            t[rng.integers(c), j] = True
    return t


def valid_kernel_args(fn: str, rng: np.random.Generator) -> dict:
    """Random valid arguments of kernel ``fn``: small, with N = 0 and size-1 dims now and then."""
    n = int(rng.choice([0, 1, 1, 2, 3]))
    c, k = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    r, s = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    ho, wo = h - r + 1, w - s + 1
    if fn == "conv2d_forward":
        return dict(x=_r(rng, n, c, h, w), w=_r(rng, k, c, r, s), b=_r(rng, k))
    if fn == "conv2d_backward":
        return dict(x=_r(rng, n, c, h, w), w=_r(rng, k, c, r, s), dy=_r(rng, n, k, ho, wo))
    if fn.startswith("sparse_conv2d"):
        t = _table(rng, c, k)
        wt = _r(rng, int(t.sum()), r, s)
        if fn.endswith("forward"):
            return dict(x=_r(rng, n, c, h, w), w=wt, b=_r(rng, k), table=t)
        return dict(x=_r(rng, n, c, h, w), w=wt, dy=_r(rng, n, k, ho, wo), table=t)
    if fn.startswith("subsample"):
        h2, w2 = 2 * int(rng.integers(1, 6)), 2 * int(rng.integers(1, 6))
        x = _r(rng, n, c, h2, w2)
        if fn.endswith("forward"):
            return dict(x=x, coef=_r(rng, c), bias=_r(rng, c))
        return dict(x=x, coef=_r(rng, c), dy=_r(rng, n, c, h2 // 2, w2 // 2))
    i, o = int(rng.integers(1, 20)), int(rng.integers(1, 12))
    if fn == "linear_forward":
        return dict(x=_r(rng, n, i), w=_r(rng, o, i), b=_r(rng, o))
    if fn == "linear_backward":
        return dict(x=_r(rng, n, i), w=_r(rng, o, i), dy=_r(rng, n, o))
    if fn == "rbf_forward":
        return dict(x=_r(rng, n, i), c=_r(rng, o, i))
    if fn == "rbf_backward":
        return dict(x=_r(rng, n, i), c=_r(rng, o, i), dy=_r(rng, n, o))
    shape = tuple(int(d) for d in rng.integers(0, 5, size=int(rng.integers(0, 5))))
    if fn == "squash_forward":
        return dict(a=_r(rng, *shape))
    y = np.asarray(np.tanh(_r(rng, *shape)) * F32(1.7), dtype=F32)
    return dict(y=y, dy=_r(rng, *shape))


# the float32 layer kernels; normalize_digit(s) have their own cases (test_fuzz_image below)
KERNELS = [k for k in kernels.__all__ if not k.startswith("normalize_")]

# ----------------------------------------------------------------------------- mutations

# A wrong type: must be a TypeError naming the argument.
TYPE_MUTATIONS = {
    "float64": lambda a, rng: a.astype(np.float64),
    "float16": lambda a, rng: a.astype(np.float16),
    "int32": lambda a, rng: a.astype(np.int32),
    "int64": lambda a, rng: a.astype(np.int64),
    "uint8": lambda a, rng: a.astype(np.uint8),
    "bool": lambda a, rng: a.astype(bool),
    "object": lambda a, rng: a.astype(object),
    "complex64": lambda a, rng: a.astype(np.complex64),
    "big_endian": lambda a, rng: a.astype(">f4"),
    "str": lambda a, rng: a.astype(str),
    "list": lambda a, rng: a.tolist(),
    "tuple": lambda a, rng: tuple(a.tolist()) if a.ndim else (a.item(),),
    "none": lambda a, rng: None,
    "float": lambda a, rng: 1.5,
    "int": lambda a, rng: 3,
    "np_scalar": lambda a, rng: F32(2.0),
    "string": lambda a, rng: "x",
    "dict": lambda a, rng: {"a": a},
    "matrix_like": lambda a, rng: memoryview(np.ascontiguousarray(a)),
}


def _neg_stride(a, rng):
    if a.ndim == 0:
        return a
    ax = int(rng.integers(a.ndim))
    idx = [slice(None)] * a.ndim
    idx[ax] = slice(None, None, -1)
    return a[tuple(idx)]


def _strided(a, rng):
    if a.ndim == 0:
        return a
    return np.repeat(a, 2, axis=-1)[..., ::2]


def _misaligned(a, rng):
    raw = np.zeros(a.nbytes + 1, np.uint8)[1:].view(F32).reshape(a.shape)
    raw[...] = a
    return raw


def _huge_broadcast(a, rng):
    # a huge declared size with zero strides: no memory behind it
    shape = list(a.shape) or [1]
    shape[0] = 1 << int(rng.integers(20, 40))
    return np.broadcast_to(np.zeros(1, F32).reshape((1,) * len(shape)), tuple(shape))


def _change_dim(a, rng):
    if a.ndim == 0:
        return a.reshape(1)
    shape = list(a.shape)
    ax = int(rng.integers(a.ndim))
    shape[ax] = int(rng.choice([0, 1, max(0, shape[ax] - 1), shape[ax] + 1, shape[ax] + 2, 33]))
    return _r(rng, *shape)


def _zero_size_view(a, rng):
    if a.ndim == 0:
        return a
    ax = int(rng.integers(a.ndim))
    idx = [slice(None)] * a.ndim
    idx[ax] = slice(0, 0)
    return a[tuple(idx)]


def _readonly(a, rng):
    b = a.copy()
    b.flags.writeable = False
    return b


# Not a wrong type: may work (then it must be right) or be a ValueError naming an argument.
SHAPE_MUTATIONS = {
    "extra_dim": lambda a, rng: a[None],
    "drop_dim": lambda a, rng: a[0, ...] if a.ndim and a.shape[0] else a.reshape(-1)[:0],
    "flatten": lambda a, rng: a.reshape(-1),
    "zero_size_view": _zero_size_view,
    "neg_stride": _neg_stride,
    "fortran": lambda a, rng: np.asfortranarray(a),
    "transposed": lambda a, rng: a.T,
    "strided": _strided,
    "broadcast": lambda a, rng: np.broadcast_to(a, (2,) + a.shape),
    "huge_broadcast": _huge_broadcast,
    "misaligned": _misaligned,
    "change_dim": _change_dim,
    "readonly": _readonly,
    "zero_d": lambda a, rng: np.zeros((), F32),
}

ALL_MUTATIONS = {**TYPE_MUTATIONS, **SHAPE_MUTATIONS}
TYPE_NAMES = sorted(TYPE_MUTATIONS)
SHAPE_NAMES = sorted(SHAPE_MUTATIONS)


def _is_clean_f32(a) -> bool:
    return (
        isinstance(a, np.ndarray)
        and a.dtype == np.dtype(F32)
        and a.dtype.isnative
        and a.flags.c_contiguous
        and a.flags.aligned
    )


def _names_an_argument(msg: str, names) -> bool:
    return any(msg.startswith(f"{n}:") for n in names)


# ----------------------------------------------------------------------------- kernels


def _mutate_table(t, rng):
    """Tables are read by value: a Fortran or reversed view of a bool table is fine."""
    kind = rng.choice(["int", "list", "none", "fortran", "transposed", "extra_dim", "float32"])
    return kind, {
        "int": lambda: t.astype(np.int64),
        "list": lambda: t.tolist(),
        "none": lambda: None,
        "fortran": lambda: np.asfortranarray(t),
        "transposed": lambda: t.T,
        "extra_dim": lambda: t[None],
        "float32": lambda: t.astype(F32),
    }[kind]()


def check_kernel_case(fn: str, kw: dict, mutated: dict) -> str:
    """Run one case; return its outcome ('ok', 'type', 'value') or fail the test."""
    names = list(kw)
    where = f"{fn} mutated {mutated} shapes " + str(
        {k: getattr(v, "shape", type(v).__name__) for k, v in kw.items()}
    )
    try:
        got = getattr(kernels, fn)(**kw)
    except TypeError as e:
        msg = str(e)
        assert _names_an_argument(msg, names), f"{where}: TypeError not naming an argument: {msg!r}"
        typed = [
            a
            for a, m in mutated.items()
            if m in TYPE_MUTATIONS or (a == "table" and m in ("int", "list", "none", "float32"))
        ]
        assert typed, f"{where}: TypeError without a wrong type: {msg!r}"
        assert any(msg.startswith(f"{a}:") for a in typed), (
            f"{where}: TypeError names another argument: {msg!r}"
        )
        return "type"
    except ValueError as e:
        msg = str(e)
        assert _names_an_argument(msg, names), (
            f"{where}: ValueError not naming an argument: {msg!r}"
        )
        typed = [a for a, m in mutated.items() if m in TYPE_MUTATIONS]
        # with only wrong types (no shape or layout change elsewhere) it must be a TypeError
        assert not typed or len(typed) < len(mutated), (
            f"{where}: a wrong type must be a TypeError, got ValueError {msg!r}"
        )
        # a refused call must be invalid: a broken layout, or the reference refuses it too,
        # or a documented limit (C, H, W, K >= 1)
        clean = all(_is_clean_f32(v) for k, v in kw.items() if k != "table")
        if clean:
            try:
                getattr(reference, fn)(**kw)
            except (ValueError, TypeError):
                return "value"
            assert re.search(r">= 1", msg), f"{where}: valid call refused: {msg!r}"
        return "value"
    # it worked: every array was valid, and the result is right
    for k, v in kw.items():
        if k == "table":
            assert isinstance(v, np.ndarray) and v.dtype == bool, f"{where}: accepted table {v!r}"
        else:
            assert _is_clean_f32(v), (
                f"{where}: accepted an invalid {k}: {type(v).__name__} "
                f"{getattr(v, 'dtype', '')} {getattr(v, 'flags', '')}"
            )
    want = getattr(reference, fn)(**kw)
    got_l = list(got) if isinstance(got, tuple) else [got]
    want_l = list(want) if isinstance(want, tuple) else [want]
    assert len(got_l) == len(want_l)
    for i, (g, w) in enumerate(zip(got_l, want_l)):
        assert isinstance(g, np.ndarray) and g.flags.c_contiguous and g.flags.writeable, where
        for a in kw.values():  # new arrays, never views of the inputs
            if isinstance(a, np.ndarray):
                assert not np.shares_memory(g, a), (
                    f"{where}: output {i} shares memory with an input"
                )
        assert_close(fn, g, w, f"{where} output {i}")
    return "ok"


def kernel_cases(seed: int, count: int):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        fn = KERNELS[int(rng.integers(len(KERNELS)))]
        kw = valid_kernel_args(fn, rng)
        mutated = {}
        u = rng.random()
        n_mut = 0 if u < 0.15 else (1 if u < 0.85 else 2)
        arrays = [k for k in kw]
        for arg in rng.choice(arrays, size=min(n_mut, len(arrays)), replace=False):
            arg = str(arg)
            if arg == "table":
                mutated[arg], kw[arg] = _mutate_table(kw[arg], rng)
                continue
            pool = TYPE_NAMES if rng.random() < 0.45 else SHAPE_NAMES
            m = str(pool[int(rng.integers(len(pool)))])
            kw[arg] = ALL_MUTATIONS[m](kw[arg], rng)
            mutated[arg] = m
        yield fn, kw, mutated


def test_fuzz_kernels(isa):
    outcomes = {"ok": 0, "type": 0, "value": 0}
    for fn, kw, mutated in kernel_cases(seed=20261128, count=N_KERNEL_CASES // 2):
        outcomes[check_kernel_case(fn, kw, mutated)] += 1
    # every outcome is exercised in quantity
    assert min(outcomes.values()) > N_KERNEL_CASES // 40, outcomes


def test_fuzz_kernels_total_count():
    """The two ISA runs above are >= 10,000 cases on a machine with AVX2; on a scalar-only
    machine this run adds the other half."""
    if len(lenet_fast.available_isas()) > 1:
        assert len(lenet_fast.available_isas()) * (N_KERNEL_CASES // 2) >= 10_000
        return
    outcomes = {"ok": 0, "type": 0, "value": 0}
    for fn, kw, mutated in kernel_cases(seed=7, count=N_KERNEL_CASES // 2):
        outcomes[check_kernel_case(fn, kw, mutated)] += 1


def test_valid_random_arguments_always_work(isa):
    """Unmutated random shapes (N = 0, size-1 dims, kernels as large as the input): every
    call works and matches the reference."""
    rng = np.random.default_rng(99)
    for _ in range(600):
        fn = KERNELS[int(rng.integers(len(KERNELS)))]
        kw = valid_kernel_args(fn, rng)
        if fn.startswith("sparse") and not kw["table"].any(axis=0).all():
            pass  # an output map without inputs is valid too
        assert check_kernel_case(fn, kw, {}) == "ok", (fn, {k: v.shape for k, v in kw.items()})


# ----------------------------------------------------------------------------- model, data

_MODEL = LeNet5(seed=3)
# The model's errors about uint8 digits come from mnist.preprocess and name its argument,
# "images", not the model's "x" (test_model_errors_name_x below); both count here.
X_NAMES = ["x", "images"]


def _digits(rng, n):
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _model_input(rng):
    n = int(rng.choice([0, 1, 2, 3]))
    if rng.random() < 0.5:
        return _digits(rng, n)
    return mnist.preprocess(_digits(rng, n))


def _mutate_model_x(x, rng):
    pool = TYPE_NAMES + SHAPE_NAMES + ["single_digit", "float64_input", "int_digits"]
    m = pool[int(rng.integers(len(pool)))]
    if m == "single_digit":
        return m, (x[0] if x.dtype == np.uint8 and x.shape[0] else x)
    if m == "float64_input":
        return m, x.astype(np.float64)
    if m == "int_digits":
        return m, x.astype(np.int64)
    if m in ("misaligned",) and x.dtype != F32:
        return "none_", x
    if m == "huge_broadcast":  # >= 2^30 images: no allocation of its copy can succeed
        return m, np.broadcast_to(
            x.reshape(-1)[:1].reshape((1,) * x.ndim)
            if x.size
            else np.zeros((1,) * x.ndim, x.dtype),
            (1 << int(rng.integers(30, 40)),) + x.shape[1:],
        )
    return m, ALL_MUTATIONS[m](x, rng)


def _valid_model_x(x):
    """True (must work), False (must be refused) or None (either: a misaligned float32
    buffer, which prepare() does not realign). LeNet5.prepare's rules: preprocessed
    floating-point (N,1,32,32); or digits (28,28), (N,28,28), (N,784), (N,1,28,28) as
    bytes (any integer type holding 0..255) or floats in [0, 1]."""
    if not isinstance(x, np.ndarray) or x.dtype == np.bool_ or x.dtype.kind not in "uif":
        return False
    if x.ndim == 4 and x.shape[1:] == (1, 32, 32) and x.dtype.kind == "f":
        return None if x.dtype == np.dtype(F32) and not x.flags.aligned else True
    s = x.shape
    digits = s == (28, 28) or (
        (x.ndim == 3 and s[1:] == (28, 28))
        or (x.ndim == 4 and s[1:] == (1, 28, 28))
        or (x.ndim == 2 and s[1] == 784)
    )
    if not digits:
        return False
    if x.size == 0 or x.dtype == np.uint8:
        return True
    hi = 255 if x.dtype.kind in "ui" else 1
    return bool(np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= hi)


def _model_x_typed(x) -> bool:
    """Whether x has a wrong type (a TypeError naming x is due)."""
    return not isinstance(x, np.ndarray) or x.dtype == np.bool_ or x.dtype.kind not in "uif"


def _clean_model_x(x):
    return np.ascontiguousarray(x)


def check_call(what, call, clean_call, valid, names, typed: bool, huge: bool = False):
    try:
        got = call()
    except MemoryError:
        # a view declaring 2^30+ images (zero strides): the model copies its input
        assert huge, f"{what}: MemoryError"
        return "value"
    except TypeError as e:
        assert _names_an_argument(str(e), names), f"{what}: TypeError not naming an argument: {e}"
        assert valid is not True, f"{what}: a valid call raised {e!r}"
        return "type"
    except ValueError as e:
        assert _names_an_argument(str(e), names), f"{what}: ValueError not naming an argument: {e}"
        assert not typed, f"{what}: a wrong type must be a TypeError: {e}"
        assert valid is not True, f"{what}: a valid call raised {e!r}"
        return "value"
    assert valid is not False, f"{what}: an invalid call worked"
    want = clean_call()
    got_l = got if isinstance(got, tuple) else (got,)
    want_l = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got_l, want_l):
        if isinstance(g, dict):
            for k in w:
                np.testing.assert_array_equal(g[k], w[k], err_msg=f"{what}: {k}")
        else:
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=what)
    return "ok"


def model_cases(seed, count):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        targets = ["forward", "predict", "gradients", "preprocess", "distort", *_FORWARD_LIKE]
        target = targets[int(rng.integers(len(targets)))]
        if target in ("preprocess", "distort"):
            x = _digits(rng, int(rng.choice([0, 1, 3])))
            if rng.random() < 0.3:
                x = x[0] if x.shape[0] else x
        else:
            x = _model_input(rng)
            if x.size == 0 and rng.random() < 0.5:
                x = _model_input(rng)
        labels = rng.integers(0, 10, size=x.shape[0] if x.ndim == 4 or x.ndim == 3 else 1)
        m = "none_"
        lm = "none_"
        u = rng.random()
        if u < 0.8:
            m, x = _mutate_model_x(x, rng)
        if target == "gradients" and (u >= 0.8 or rng.random() < 0.3):
            lm = ["float", "neg", "ten", "list", "extra_dim", "short", "none", "bool", "2d"][
                int(rng.integers(9))
            ]
            labels = {
                "float": lambda: labels.astype(np.float64),
                "neg": lambda: labels - 5,
                "ten": lambda: labels + 5,
                "list": lambda: labels.tolist(),
                "extra_dim": lambda: labels[None],
                "short": lambda: labels[:-1] if labels.size else labels[:0],
                "none": lambda: None,
                "bool": lambda: labels.astype(bool),
                "2d": lambda: labels.reshape(-1, 1),
            }[lm]()
        yield target, x, labels, m, lm


# the model's other methods on digits: the same input rules as forward
_FORWARD_LIKE = {
    "predict_proba": lambda m, x: m.predict_proba(x, rubbish=True),
    "decision_function": lambda m, x: m.decision_function(x),
    "margin": lambda m, x: m.margin(x),
    "classify": lambda m, x: m.classify(x, reject=40.0),
    "predict_reject": lambda m, x: m.predict(x, reject=40.0),
}


def _labels_ok(lab, n) -> bool:
    a = np.asarray(lab) if lab is not None else None
    if a is None or a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        return False
    return n == 0 or (a.min() >= 0 and a.max() <= 9)


def test_fuzz_model_and_data():
    model = _MODEL
    outcomes = {"ok": 0, "type": 0, "value": 0}
    for i, (target, x, labels, m, lm) in enumerate(model_cases(seed=5, count=N_MODEL_CASES)):
        what = (
            f"case {i}: {target} x={m} {getattr(x, 'dtype', type(x).__name__)} "
            f"{getattr(x, 'shape', '')} labels={lm}"
        )
        typed = _model_x_typed(x)
        if target in ("preprocess", "distort"):
            # data functions take anything np.asarray makes uint8 digits of (e.g. a memoryview)
            try:
                xa = np.asarray(x)
            except Exception:
                xa = None
            valid = (
                xa is not None
                and xa.dtype == np.uint8
                and xa.ndim in (2, 3)
                and xa.shape[-2:] == (28, 28)
            )
            typed = xa is None or xa.dtype != np.uint8
            fn = (
                mnist.preprocess
                if target == "preprocess"
                else (lambda a: distort.distort(a, np.random.default_rng(1)))
            )
            out = check_call(
                what,
                lambda: fn(x),
                lambda: fn(np.ascontiguousarray(xa)) if valid else None,
                valid,
                ["images"],
                typed,
                huge=m == "huge_broadcast",
            )
        elif target == "forward":
            valid = _valid_model_x(x)
            out = check_call(
                what,
                lambda: model.forward(x),
                lambda: model.forward(_clean_model_x(x)),
                valid,
                X_NAMES,
                typed,
                huge=m == "huge_broadcast",
            )
        elif target in _FORWARD_LIKE:
            valid = _valid_model_x(x)
            call = _FORWARD_LIKE[target]
            out = check_call(
                what,
                lambda: call(model, x),
                lambda: call(model, _clean_model_x(x)),
                valid,
                X_NAMES,
                typed,
                huge=m == "huge_broadcast",
            )
        elif target == "predict":
            valid = _valid_model_x(x)
            out = check_call(
                what,
                lambda: model.predict(x, batch_size=2),
                lambda: model.predict(_clean_model_x(x)),
                valid,
                X_NAMES,
                typed,
                huge=m == "huge_broadcast",
            )
        else:
            valid_x = _valid_model_x(x)
            n = (1 if x.shape == (28, 28) else x.shape[0]) if valid_x else -1
            valid = valid_x and _labels_ok(labels, n)
            if valid and n == 0:
                continue  # an empty batch: test_gradients_of_an_empty_batch
            out = check_call(
                what,
                lambda: model.gradients(x, labels),
                lambda: model.gradients(_clean_model_x(x), np.asarray(labels)),
                valid,
                X_NAMES + ["labels"],
                typed and lm == "none_",
                huge=m == "huge_broadcast",
            )
            if out == "ok" and np.asarray(labels).size:
                pass
        outcomes[out] += 1
    assert min(outcomes.values()) > 100, outcomes


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, None])
def test_predict_rejects_a_bad_batch_size(batch_size):
    """batch_size must be an int >= 1; -1 used to return np.empty garbage without a word."""
    x = np.zeros((3, 28, 28), np.uint8)
    with pytest.raises((TypeError, ValueError), match=r"^batch_size:"):
        _MODEL.predict(x, batch_size=batch_size)


def test_model_errors_name_x():
    with pytest.raises(ValueError, match=r"^x:"):
        _MODEL.forward(np.zeros((2, 28, 27), np.uint8))


def test_gradients_of_an_empty_batch():
    """N = 0 either works (loss 0, zero gradients) or is a ValueError naming x; never NaN."""
    x = np.zeros((0, 28, 28), np.uint8)
    try:
        loss, grads, y = _MODEL.gradients(x, np.zeros(0, np.int64))
    except ValueError as e:
        assert str(e).startswith("x:")
        return
    assert loss == 0.0 and y.shape == (0, 10)
    assert all(not g.any() for g in grads.values())


# ----------------------------------------------------------------------------- load_image

N_IMAGE_ARRAY_CASES = 3_000
N_IMAGE_BYTES_CASES = 10_000

_IMAGE_DTYPES = [
    "u1", "u2", ">u2", "f2", "f4", "f8", ">f4",  # accepted
    "?", "i1", "i2", "i4", "i8", "u4", "u8", "c8", "O", "U1", "f16" if hasattr(np, "float128") else "c16",
]  # fmt: skip


def _image_dtype_ok(dt: np.dtype) -> bool:
    return (dt.kind == "u" and dt.itemsize <= 2) or (dt.kind == "f" and dt.itemsize <= 8)


def _image_array(rng):
    """A random array: dtype, number of dimensions, sizes (0 included), values (floats
    out of [0,1] or NaN now and then) and layout (views, broadcasts) all drawn."""
    dt = np.dtype(_IMAGE_DTYPES[int(rng.integers(len(_IMAGE_DTYPES)))])
    ndim = int(rng.choice([0, 1, 2, 2, 2, 3, 3, 3, 4]))
    shape = [int(rng.integers(0, 7)) for _ in range(ndim)]
    if ndim == 3 and rng.random() < 0.7:
        shape[2] = int(rng.choice([3, 4]))
    if dt.kind == "f":
        v = rng.random(shape)
        if rng.random() < 0.2:
            v = 3 * v - 1
        if rng.random() < 0.1 and v.size:
            v.flat[int(rng.integers(v.size))] = rng.choice([np.nan, np.inf])
    else:
        v = rng.integers(0, 65536 if dt.itemsize > 1 else 256, shape)
    a = v.astype(dt)
    u = rng.random()
    if u < 0.1 and a.ndim >= 2:
        a = a.swapaxes(0, 1)
    elif u < 0.2 and a.ndim:
        a = a[::-1]
    elif u < 0.25 and a.ndim >= 2:  # a huge declared size, zero strides: no memory behind it
        a = np.broadcast_to(a.reshape(-1)[:1].reshape((1,) * a.ndim) if a.size else
                            np.zeros((1,) * a.ndim, dt), (1 << 16, 1 << 16) + a.shape[2:])  # fmt: skip
    return a


def _image_expected(a: np.ndarray) -> np.ndarray:
    """What load_image must give for a valid array, in float: 8-bit scaling, luma, white."""
    f = a.astype(np.float64)
    f = f / 65535 * 255 if a.dtype.kind == "u" and a.dtype.itemsize == 2 else f
    f = f * 255 if a.dtype.kind == "f" else f
    if a.ndim == 2:
        return f
    grey = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    if a.shape[2] == 4:
        alpha = np.rint(f[..., 3]) / 255
        grey = np.rint(grey) * alpha + 255 * (1 - alpha)
    return grey


def test_fuzz_load_image_arrays():
    from lenet_fast._imageio import ImageError, load_image

    rng = np.random.default_rng(2026)
    max_pixels = 1 << 20
    outcomes = {"ok": 0, "type": 0, "value": 0}
    for i in range(N_IMAGE_ARRAY_CASES):
        a = _image_array(rng)
        what = f"case {i}: {a.dtype} {a.shape} strides {a.strides}"
        typed = not _image_dtype_ok(a.dtype)
        shaped = (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))) and (
            a.ndim >= 2 and 1 <= a.shape[0] * a.shape[1] <= max_pixels and min(a.shape[:2]) >= 1
        )
        valid = not typed and shaped
        if valid and a.dtype.kind == "f":
            f = a.astype(np.float64)
            valid = bool(np.isfinite(f).all() and f.min() >= 0 and f.max() <= 1)
        try:
            got = load_image(a, max_pixels=max_pixels)
        except TypeError as e:
            assert str(e).startswith("src:"), f"{what}: {e}"
            assert typed, f"{what}: TypeError for a valid dtype: {e}"
            outcomes["type"] += 1
            continue
        except ValueError as e:
            assert isinstance(e, ImageError) and str(e).startswith("src:"), f"{what}: {e!r}"
            assert not typed, f"{what}: a wrong dtype must be a TypeError: {e}"
            assert not valid, f"{what}: a valid array refused: {e}"
            outcomes["value"] += 1
            continue
        assert valid, f"{what}: an invalid array accepted"
        assert got.dtype == np.uint8 and got.shape == a.shape[:2] and got.flags.c_contiguous
        assert not np.shares_memory(got, a), what
        diff = np.abs(got - _image_expected(a))
        assert diff.max() <= 1.5, f"{what}: off by {diff.max()}"
        outcomes["ok"] += 1
    assert min(outcomes.values()) > N_IMAGE_ARRAY_CASES // 20, outcomes


def _encoded_images() -> list[bytes]:
    """Small real files of each format and several modes, the seeds of the mutations."""
    import io

    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(11)
    rgba = rng.integers(0, 256, (7, 11, 4), dtype=np.uint8)
    base = Image.fromarray(rgba)
    out = []
    for fmt, modes in (
        ("PNG", ["L", "RGB", "RGBA", "P", "LA", "1"]),
        ("JPEG", ["L", "RGB", "CMYK"]),
        ("GIF", ["P"]),
        ("BMP", ["L", "RGB", "1"]),
        ("TIFF", ["L", "RGB", "RGBA", "CMYK"]),
        ("PPM", ["L", "RGB"]),
    ):
        for mode in modes:
            b = io.BytesIO()
            base.convert(mode).save(b, fmt)
            out.append(b.getvalue())
    b = io.BytesIO()
    Image.fromarray(rng.integers(0, 65536, (5, 6), dtype=np.uint16)).save(b, "PNG")
    out.append(b.getvalue())
    return out


def _mutate_bytes(data: bytes, rng) -> tuple[str, bytes]:
    kind = ["truncate", "flip", "overwrite", "insert", "random", "splice"][int(rng.integers(6))]
    b = bytearray(data)
    if kind == "truncate":
        return kind, bytes(b[: int(rng.integers(0, len(b)))])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 9))):
            j = int(rng.integers(len(b)))
            b[j] ^= 1 << int(rng.integers(8))
        return kind, bytes(b)
    if kind == "overwrite":
        j = int(rng.integers(len(b)))
        n = int(rng.integers(1, 17))
        b[j : j + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return kind, bytes(b)
    if kind == "insert":
        j = int(rng.integers(len(b)))
        return kind, bytes(b[:j]) + rng.integers(0, 256, 8, dtype=np.uint8).tobytes() + bytes(b[j:])
    if kind == "random":
        return kind, rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes()
    j, k = sorted(int(x) for x in rng.integers(0, len(b), 2))
    return kind, bytes(b[:k]) + bytes(b[j:])  # a repeated stretch


def test_fuzz_load_image_bytes():
    """Truncations, bit flips, overwritten, inserted and repeated bytes of real files, and
    random bytes: each is an ImageError naming src, or a valid picture; no warning escapes
    and Pillow's own limit is left as it was."""
    import warnings

    Image = pytest.importorskip("PIL.Image")
    from lenet_fast._imageio import ImageError, load_image

    seeds = _encoded_images()
    rng = np.random.default_rng(314)
    max_pixels = 1 << 16  # a flipped size field cannot make a case slow
    limit = Image.MAX_IMAGE_PIXELS
    outcomes = {"ok": 0, "error": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(N_IMAGE_BYTES_CASES):
            seed = int(rng.integers(len(seeds)))
            kind, data = _mutate_bytes(seeds[seed], rng)
            what = f"case {i}: {kind} of seed {seed}, {len(data)} bytes"
            try:
                got = load_image(data, max_pixels=max_pixels)
            except (TypeError, ValueError) as e:
                assert isinstance(e, ImageError), f"{what}: {e!r}"
                assert str(e).startswith("src: "), f"{what}: {e}"
                outcomes["error"] += 1
                continue
            assert isinstance(got, np.ndarray) and got.dtype == np.uint8 and got.ndim == 2, what
            assert 1 <= got.size <= max_pixels and got.flags.c_contiguous, what
            outcomes["ok"] += 1
    assert [str(w.message) for w in caught] == []
    assert Image.MAX_IMAGE_PIXELS == limit
    assert min(outcomes.values()) > N_IMAGE_BYTES_CASES // 20, outcomes


# ----------------------------------------------------------------------------- image

_GREY = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _valid_grey(rng):
    """A random grey image (1..40 px a side) of a random pixel type, and its pixel_max."""
    h, w = int(rng.integers(1, 41)), int(rng.integers(1, 41))
    dt = [np.uint8, np.uint16, np.float32, np.float64][int(rng.integers(4))]
    x = rng.random((h, w)) * (rng.random((h, w)) < 0.3)
    if rng.random() < 0.5:
        x = 1 - x
    if np.dtype(dt) in _GREY:
        return (x * _GREY[np.dtype(dt)]).astype(dt), None
    if rng.random() < 0.3:
        return (x * 255).astype(dt), 255.0
    return x.astype(dt), None


def _mutate_grey(a, rng):
    pool = TYPE_NAMES + SHAPE_NAMES + ["nan", "inf", "negative", "too_bright", "huge"]
    m = str(pool[int(rng.integers(len(pool)))])
    if m in ("nan", "inf", "negative", "too_bright"):
        b = a.astype(np.float64)
        b.reshape(-1)[int(rng.integers(b.size))] = {
            "nan": np.nan,
            "inf": np.inf,
            "negative": -0.5,
            "too_bright": 70000.0,
        }[m]
        return m, b
    if m in ("huge", "huge_broadcast"):  # >= 2^28 pixels declared, zero strides
        return m, np.broadcast_to(np.zeros((1, 1), a.dtype), (1 << int(rng.integers(28, 40)), 3))
    if m == "misaligned":
        raw = np.zeros(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
        raw[...] = a
        return m, raw
    with np.errstate(over="ignore", invalid="ignore"):  # uint16 -> float16 overflows to inf
        return m, ALL_MUTATIONS[m](a, rng)


def _grey_valid(x, pixel_max) -> bool | None:
    """True (must work or be NoInkError), False (must be refused): by the documented rules."""
    try:
        a = np.asarray(x)
    except Exception:
        return False
    ok_type = (a.dtype.kind == "u" and a.dtype.itemsize <= 2) or (
        a.dtype.kind == "f" and a.dtype.itemsize in (2, 4, 8)
    )
    if not ok_type or a.ndim != 2 or min(a.shape) < 1 or a.size > (1 << 28):
        return False
    pm = pixel_max if pixel_max is not None else _GREY.get(a.dtype, 1.0)
    return bool(np.isfinite(a).all() and a.min() >= 0 and a.max() <= pm)


def _grey_typed(x) -> bool:
    try:
        a = np.asarray(x)
    except Exception:
        return True
    return not ((a.dtype.kind == "u" and a.dtype.itemsize <= 2) or a.dtype.kind == "f") or (
        a.dtype.kind == "f" and a.dtype.itemsize > 8
    )


def test_fuzz_image():
    """normalize_digit and normalize_digits on random grey images, mutated: a valid call
    gives the reference's bytes (or NoInkError, as the reference does); an invalid one is a
    TypeError (wrong type) or ValueError naming its argument."""
    rng = np.random.default_rng(28)
    outcomes = {"ok": 0, "type": 0, "value": 0, "no_ink": 0}
    for case in range(1500):
        img, pm = _valid_grey(rng)
        m = "none_"
        if rng.random() < 0.7:
            m, img = _mutate_grey(img, rng)
        invert = ["auto", True, False][int(rng.integers(3))]
        if rng.random() < 0.05:
            invert = ["yes", 1, None][int(rng.integers(3))]
        batch = rng.random() < 0.3
        what = f"case {case}: {m} {getattr(img, 'dtype', type(img).__name__)} "
        what += f"{getattr(img, 'shape', '')} invert={invert!r} pixel_max={pm} batch={batch}"
        valid = _grey_valid(img, pm) and (isinstance(invert, bool) or invert == "auto")
        name = "images[0]" if batch else "img"
        try:
            if batch:
                got, ink = image.normalize_digits([img], invert, pixel_max=pm)
                if not ink[0]:
                    outcomes["no_ink"] += 1
                    assert not got.any()
                    continue
                got = got[0]
            else:
                got = image.normalize_digit(img, invert, pixel_max=pm)
        except image.NoInkError as e:
            assert str(e).startswith(f"{name}: no ink"), f"{what}: {e}"
            assert valid, f"{what}: an invalid image reached the kernel"
            with pytest.raises(image.NoInkError):
                reference.normalize_digit(np.asarray(img), invert, pixel_max=pm)
            outcomes["no_ink"] += 1
            continue
        except TypeError as e:
            assert _names_an_argument(str(e), [name, "images", "invert"]), f"{what}: {e}"
            assert not valid, f"{what}: a valid call raised {e!r}"
            if str(e).startswith(("img", "images")):
                assert _grey_typed(img), f"{what}: TypeError for a right type: {e}"
            outcomes["type"] += 1
            continue
        except ValueError as e:
            assert _names_an_argument(str(e), [name, "images", "invert"]), f"{what}: {e}"
            assert not valid, f"{what}: a valid call raised {e!r}"
            if str(e).startswith(("img", "images")):
                assert not _grey_typed(img), f"{what}: a wrong type must be a TypeError: {e}"
            outcomes["value"] += 1
            continue
        assert valid, f"{what}: an invalid call worked"
        want = reference.normalize_digit(np.ascontiguousarray(img), invert, pixel_max=pm)
        np.testing.assert_array_equal(got, want, err_msg=what)
        outcomes["ok"] += 1
    assert min(outcomes.values()) > 50, outcomes


REJECTS = ["auto", "off", None, 0, 3.5, -1, float("nan"), float("inf"), "yes", True, [1], b"auto"]


@pytest.mark.parametrize("reject", REJECTS)
def test_fuzz_reject_values(reject):
    """Every method taking reject: works for None/'off'/a number >= 0 ('auto' on a model
    without thresholds is a ValueError naming reject), else a TypeError/ValueError naming it."""
    x = _digits(np.random.default_rng(0), 3)
    ok = (
        reject is None
        or reject == "off"
        or (
            isinstance(reject, (int, float))
            and not isinstance(reject, bool)
            and 0 <= reject < float("inf")
        )
    )
    for call in (
        lambda: _MODEL.predict(x, reject=reject),
        lambda: _MODEL.classify(x, reject=reject),
        lambda: _MODEL.reject_rule(reject),
    ):
        if ok:
            call()
        else:
            with pytest.raises((TypeError, ValueError), match="^reject: "):
                call()


def test_fuzz_reject_curve():
    from lenet_fast.train import reject_curve

    rng = np.random.default_rng(3)
    for i in range(300):
        n = int(rng.integers(0, 30))
        scores, wrong = rng.random(n), rng.random(n) < 0.3
        kind = i % 5
        if kind == 1:
            wrong = wrong[: max(0, n - 1)]
        elif kind == 2 and n:
            scores[0] = np.nan
        try:
            c = reject_curve(scores, wrong)
        except ValueError as e:
            assert kind in (1, 2) and str(e).split(":")[0] in ("wrong", "scores"), e
            continue
        assert kind == 0 or kind > 2 or (kind == 1 and n == 0) or (kind == 2 and n == 0)
        assert c["error"].shape == (n + 1,) and np.all((c["error"] >= 0) & (c["error"] <= 1))
        assert 0 <= c["reject_for_target"] <= 1


def test_fuzz_load_idx(tmp_path):
    """Mutated IDX files (truncated, bytes changed, bytes added): load_idx returns four
    arrays that agree with each other, or a ValueError that names the file it refused."""
    from conftest import IDX_STEMS, idx_bytes, write_idx

    rng = np.random.default_rng(11)
    arrays = [
        _digits(rng, 7),
        rng.integers(0, 10, 7).astype(np.uint8),
        _digits(rng, 3),
        rng.integers(0, 10, 3).astype(np.uint8),
    ]
    outcomes = {"ok": 0, "refused": 0}
    for i in range(200):
        stem = IDX_STEMS[int(rng.integers(4))]
        blob = bytearray(idx_bytes(arrays[IDX_STEMS.index(stem)]))
        kind = i % 4
        if kind == 0:
            blob = blob[: int(rng.integers(0, len(blob)))]
        elif kind == 1:
            for _ in range(int(rng.integers(1, 4))):
                blob[int(rng.integers(len(blob)))] = int(rng.integers(256))
        elif kind == 2:
            blob += bytes(rng.integers(0, 256, int(rng.integers(1, 30)), dtype=np.uint8))
        else:
            at = int(rng.integers(0, min(12, len(blob))))  # the header: magic and sizes
            blob[at] = int(rng.integers(256))
        folder = tmp_path / f"case{i}"
        write_idx(folder, arrays, gz=bool(i % 2), override={stem: bytes(blob)})
        try:
            tr_x, tr_y, te_x, te_y = lenet_fast.load_idx(folder)
        except ValueError as e:
            assert str(e).startswith(str(folder)), e
            outcomes["refused"] += 1
            continue
        assert tr_x.shape == (len(tr_y), 28, 28) and te_x.shape == (len(te_y), 28, 28)
        assert tr_y.max(initial=0) <= 9 and te_y.max(initial=0) <= 9
        outcomes["ok"] += 1
    assert outcomes["refused"] > 50 and outcomes["ok"] > 10, outcomes
