"""lenet_fast.sklearn.LeNet5Classifier: scikit-learn's own estimator checks, the same
properties on digits where those checks feed data the network cannot take, and the
estimator inside scikit-learn's tools (Pipeline, GridSearchCV, cross_val_score, clone,
pickle) on MNIST. (The folder is not called sklearn: import tools would take it for the
library.)"""

from __future__ import annotations

import inspect
import pickle
from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.estimator_checks import parametrize_with_checks

from lenet_fast import LeNet5, load_mnist
from lenet_fast.sklearn import LeNet5Classifier

# Every scikit-learn check below fits on toy data of k != 784 columns (blobs, iris, random
# rows), which the network refuses with a ValueError: it takes 28x28 digits only. The
# property each checks is tested on digits in this file (named after the reason).
_SHAPE = "fits on rows of k != 784 features, which a 28x28-digit network refuses; "
EXPECTED_FAILED_CHECKS = {
    name: _SHAPE + also
    for name, also in {
        "check_fit_score_takes_y": "the fit/score signatures are covered on digits",
        "check_estimators_overwrite_params": "test_parameters_are_not_changed_by_fit",
        "check_dont_overwrite_parameters": "test_parameters_are_not_changed_by_fit",
        "check_estimators_fit_returns_self": "test_fit_on_digits",
        "check_readonly_memmap_input": "test_read_only_and_f_ordered_input",
        "check_f_contiguous_array_estimator": "test_read_only_and_f_ordered_input",
        "check_n_features_in_after_fitting": "test_fit_on_digits",
        "check_n_features_in": "test_fit_on_digits",
        "check_fit2d_predict1d": "test_bad_input",
        "check_estimators_dtypes": "test_pixel_types_agree",
        "check_dtype_object": "test_pixel_types_agree",
        "check_pipeline_consistency": "test_pipeline_gridsearch_and_cross_val_score",
        "check_estimators_nan_inf": "test_bad_input",
        "check_estimators_pickle": "test_clone_and_pickle",
        "check_classifier_data_not_an_array": "test_fit_on_digits (lists)",
        "check_classifiers_one_label": "test_fewer_classes",
        "check_classifiers_classes": "test_any_labels",
        "check_estimators_partial_fit_n_features": "test_partial_fit",
        "check_classifiers_train": "test_probabilities_and_scores",
        "check_supervised_y_2d": "test_any_labels",
        "check_decision_proba_consistency": "test_probabilities_and_scores",
        "check_methods_sample_order_invariance": "test_order_and_subsets",
        "check_methods_subset_invariance": "test_order_and_subsets",
        "check_fit2d_1sample": "test_fewer_classes (one digit)",
        "check_dict_unchanged": "test_parameters_are_not_changed_by_fit",
        "check_fit_idempotent": "test_fit_on_digits",
        "check_fit_check_is_fitted": "test_bad_input",
    }.items()
}


# a check on the list that passes fails here, so the list stays honest (scikit-learn >= 1.8;
# 1.6 and 1.7, the last for Python 3.9, report it as XPASS)
_STRICT = (
    {"xfail_strict": True}
    if "xfail_strict" in inspect.signature(parametrize_with_checks).parameters
    else {}
)


_CHECKS = parametrize_with_checks(
    [LeNet5Classifier(passes=1, hessian_samples=10)],
    expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
    **_STRICT,
).mark
# as a list: scikit-learn 1.6 and 1.7 pass pytest a generator, which pytest 9 deprecates


@pytest.mark.parametrize(_CHECKS.args[0], list(_CHECKS.args[1]), **_CHECKS.kwargs)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_this_is_the_real_scikit_learn():
    """lenet_fast/sklearn.py imports ``sklearn`` absolutely: the library, not itself."""
    assert Path(sklearn.__file__).parent.name == "sklearn"
    assert LeNet5Classifier.__mro__[1].__module__ == "sklearn.base"


def synthetic_digits(n, seed=0):
    """Learnable stand-ins for MNIST: digit d is a bright bar at row 4 + 2d, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    img = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, d in enumerate(labels):
        img[i, 4 + 2 * d : 6 + 2 * d, 4:24] = 255
    return img, labels


FAST = dict(passes=2, hessian_samples=50, mu=0.4)


def same_weights(a, b):
    assert a.model_.params.keys() == b.model_.params.keys()
    for k in a.model_.params:
        assert a.model_.params[k].tobytes() == b.model_.params[k].tobytes(), k


def test_fit_on_digits():
    x, y = synthetic_digits(300)
    est = LeNet5Classifier(**FAST)
    assert est.fit(x, y) is est
    assert est.n_features_in_ == 784 and est.n_iter_ == 2
    np.testing.assert_array_equal(est.classes_, np.arange(10))
    # the network trained is the one train() gives with the same settings
    ref = LeNet5(0)
    ref.fit(x, y, passes=2, hessian_samples=50, mu=0.4)
    for k in ref.params:
        assert ref.params[k].tobytes() == est.model_.params[k].tobytes(), k
    xt, yt = synthetic_digits(200, seed=1)
    np.testing.assert_array_equal(est.predict(xt), ref.predict(xt))
    assert est.score(xt, yt) > 0.9
    # (n,28,28) and (n,784) are the same digits; so are nested lists
    np.testing.assert_array_equal(est.predict(xt.reshape(-1, 784)), est.predict(xt))
    np.testing.assert_array_equal(est.predict(xt[:3].tolist()), est.predict(xt[:3]))
    again = LeNet5Classifier(**FAST).fit(x.reshape(-1, 784).tolist(), y.tolist())
    same_weights(est, again)  # fitting is deterministic
    est.fit(x, y)
    same_weights(est, again)  # and a second fit starts afresh


def test_any_labels():
    x, y = synthetic_digits(300)
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight"])
    names = np.append(names, "nine")
    est = LeNet5Classifier(**FAST).fit(x, names[y])
    np.testing.assert_array_equal(est.classes_, np.sort(names))
    # the i-th sorted label is trained onto output i: the weights of training on its index
    index = np.searchsorted(np.sort(names), names[y])
    by_index = LeNet5Classifier(**FAST).fit(x, index)
    same_weights(est, by_index)
    xt, _ = synthetic_digits(50, seed=1)
    np.testing.assert_array_equal(est.predict(xt), np.sort(names)[by_index.predict(xt)])
    with pytest.warns(sklearn.exceptions.DataConversionWarning):
        LeNet5Classifier(**FAST).fit(x, y[:, None])  # a column of labels, as sklearn warns
    with pytest.raises(ValueError, match="y: LeNet-5 has 10 outputs, so at most 10 classes"):
        LeNet5Classifier(**FAST).fit(x[:11], np.arange(11))
    with pytest.raises(ValueError, match="Unknown label type"):
        LeNet5Classifier(**FAST).fit(x, y + 0.5)


def test_fewer_classes():
    x, y = synthetic_digits(600)
    keep = y < 4
    est = LeNet5Classifier(**FAST).fit(x[keep], 10 * y[keep])
    np.testing.assert_array_equal(est.classes_, [0, 10, 20, 30])
    xt, yt = synthetic_digits(200, seed=1)
    seen = yt < 4
    assert set(est.predict(xt)) <= {0, 10, 20, 30}
    assert est.score(xt[seen], 10 * yt[seen]) > 0.9
    assert est.predict_proba(xt).shape == (200, 4)
    one = LeNet5Classifier(**FAST).fit(x[:1], ["seven"])  # one digit, one class
    np.testing.assert_array_equal(one.predict(xt[:5]), ["seven"] * 5)
    np.testing.assert_array_equal(one.predict_proba(xt[:5]), np.ones((5, 1)))


def test_probabilities_and_scores():
    x, y = synthetic_digits(300)
    xt, _ = synthetic_digits(100, seed=1)
    est = LeNet5Classifier(**FAST).fit(x, y)
    p = est.predict_proba(xt)
    assert p.shape == (100, 10) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    # Eq. 9's posterior of the model (with its rubbish class), renormalised over the digits
    post = est.model_.predict_proba(xt)
    np.testing.assert_allclose(p, post / post.sum(axis=1, keepdims=True), rtol=1e-9)
    np.testing.assert_allclose(np.exp(est.predict_log_proba(xt)), p, rtol=1e-9)
    np.testing.assert_array_equal(est.predict(xt), p.argmax(axis=1))
    d = est.decision_function(xt)
    np.testing.assert_array_equal(d, -est.model_.forward(xt).astype(np.float64))
    np.testing.assert_array_equal(d.argmax(axis=1), est.predict(xt))
    # two classes: one score per digit, > 0 for classes_[1], as scikit-learn has it
    two = y < 2
    binary = LeNet5Classifier(**FAST).fit(x[two], np.where(y[two] == 1, "b", "a"))
    s = binary.decision_function(xt)
    assert s.shape == (100,)
    np.testing.assert_array_equal(np.where(s > 0, "b", "a"), binary.predict(xt))
    pb = binary.predict_proba(xt)
    np.testing.assert_allclose(pb[:, 1], 1 / (1 + np.exp(-s)), rtol=1e-9)


def test_pixel_types_agree():
    x, y = synthetic_digits(200)
    ref = LeNet5Classifier(**FAST).fit(x, y)
    xt, _ = synthetic_digits(50, seed=1)
    want = ref.decision_function(xt)
    # floats in [0, 1] holding the bytes train to the same bits and predict alike
    for dtype in (np.float32, np.float64):
        est = LeNet5Classifier(**FAST).fit(x.astype(dtype) / 255, y)
        same_weights(est, ref)
        got = est.decision_function(xt.astype(dtype) / 255)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # other integer types hold bytes; pixel_max states another full ink
    same_weights(LeNet5Classifier(**FAST).fit(x.astype(np.int64), y), ref)
    est = LeNet5Classifier(**FAST, pixel_max=255.0).fit(x.astype(np.float32), y)
    same_weights(est, ref)
    np.testing.assert_allclose(est.decision_function(xt.astype(np.float32)), want, rtol=1e-5)
    with pytest.raises(ValueError, match="pixel values up to 255, above full ink 1: state"):
        LeNet5Classifier(**FAST).fit(x.astype(np.float32), y)
    with pytest.raises(ValueError, match="Negative values in data passed to LeNet5Classifier"):
        LeNet5Classifier(**FAST).fit(x.astype(np.float32) / 255 - 0.5, y)


def test_read_only_and_f_ordered_input():
    x, y = synthetic_digits(200)
    ref = LeNet5Classifier(**FAST).fit(x, y)
    ro = x.reshape(-1, 784).copy()
    ro.setflags(write=False)
    est = LeNet5Classifier(**FAST).fit(ro, y)
    same_weights(est, ref)
    f = np.asfortranarray(x.reshape(-1, 784))
    np.testing.assert_array_equal(est.predict(f), ref.predict(x))


def test_order_and_subsets():
    x, y = synthetic_digits(200)
    est = LeNet5Classifier(**FAST).fit(x, y)
    xt, _ = synthetic_digits(64, seed=1)
    perm = np.random.default_rng(0).permutation(64)
    for method in ("predict", "predict_proba", "decision_function"):
        whole = getattr(est, method)(xt)
        np.testing.assert_array_equal(getattr(est, method)(xt[perm]), whole[perm])
        parts = np.concatenate([getattr(est, method)(xt[i : i + 7]) for i in range(0, 64, 7)])
        np.testing.assert_array_equal(parts, whole)


def test_parameters_are_not_changed_by_fit():
    est = LeNet5Classifier(**FAST, pretrained=None, optimizer="sgd", batch_size=8)
    before = est.get_params()
    x, y = synthetic_digits(100)
    est.fit(x, y)
    assert est.get_params() == before
    public = {k for k in vars(est) if not k.endswith("_")}
    assert public == set(before)  # fit adds only attributes ending in "_"


def test_partial_fit():
    x, y = synthetic_digits(200)
    full = LeNet5Classifier(**FAST).fit(x, y)  # two passes
    inc = LeNet5Classifier(**FAST)
    inc.partial_fit(x, y)
    assert inc.n_iter_ == 1
    assert inc.partial_fit(x, y) is inc and inc.n_iter_ == 2
    same_weights(inc, full)  # k passes, one call each, are fit's k passes
    assert [r["pass"] for r in inc.model_.history] == [1, 2]
    # classes announced on the first call, batches holding some of them
    part = LeNet5Classifier(**FAST).partial_fit(x[y < 5], y[y < 5], classes=np.arange(10))
    np.testing.assert_array_equal(part.classes_, np.arange(10))
    part.partial_fit(x[y >= 5], y[y >= 5], classes=np.arange(10))
    with pytest.raises(ValueError, match=r"y: labels \[10\] are not among classes_"):
        part.partial_fit(x[:3], [1, 2, 10])
    with pytest.raises(ValueError, match="classes: expected the classes of the first call"):
        part.partial_fit(x, y, classes=np.arange(5))
    with pytest.raises(ValueError, match="X has 783 features, but LeNet5Classifier"):
        part.partial_fit(x.reshape(-1, 784)[:, 1:], y)
    # from a shipped model, digit labels are its ten digits from the first call on
    tuned = LeNet5Classifier(**FAST, pretrained="mnist")
    tuned.partial_fit(x[y < 3], y[y < 3], classes=[0, 1, 2])
    np.testing.assert_array_equal(tuned.classes_, np.arange(10))
    tuned.partial_fit(x[y < 3], y[y < 3], classes=[0, 1, 2])
    assert tuned.n_iter_ == 2


def test_bad_input():
    x, y = synthetic_digits(20)
    with pytest.raises(NotFittedError):
        LeNet5Classifier().predict(x)
    est = LeNet5Classifier(**FAST).fit(x, y)
    with pytest.raises(ValueError, match=r"784 pixels \(n,784\) or images \(n,28,28\); got 3"):
        LeNet5Classifier(**FAST).fit(np.ones((20, 3)), y)
    with pytest.raises(ValueError, match=r"X: expected digits shaped \(n,28,28\) or rows"):
        est.predict(np.zeros((2, 28, 27), np.uint8))
    with pytest.raises(ValueError, match="X has 100 features, but LeNet5Classifier"):
        est.predict(np.zeros((2, 100), np.uint8))
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        est.predict(x[0].ravel())
    bad = x.reshape(-1, 784).astype(np.float64) / 255
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.predict(bad)
    with pytest.raises(ValueError, match="passes: 0 passes leave the network at its random"):
        LeNet5Classifier(passes=0).fit(x, y)
    with pytest.raises(ValueError, match="passes: expected an int >= 0"):
        LeNet5Classifier(passes=-1).fit(x, y)
    with pytest.raises(ValueError, match="loss: expected one of"):
        LeNet5Classifier(**FAST, loss="hinge").fit(x, y)
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        LeNet5Classifier(**FAST, optimizer="adam").fit(x, y)
    with pytest.raises(ValueError, match="pretrained: expected None or one of"):
        LeNet5Classifier(pretrained="imagenet").fit(x, y)
    with pytest.raises(ValueError, match="subsample: the shipped model 'mnist' was trained"):
        LeNet5Classifier(pretrained="mnist", subsample="sum").fit(x, y)
    with pytest.raises(ValueError, match="y: with passes=0 the shipped model 'mnist'"):
        LeNet5Classifier(pretrained="mnist", passes=0).fit(x, np.array(list("abcdefghij"))[y])
    # a failed fit leaves a fitted estimator as it was
    before = est.predict(x)
    est.set_params(optimizer="adam")
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        est.fit(x, y[::-1])
    np.testing.assert_array_equal(est.predict(x), before)


def test_clone_and_pickle():
    x, y = synthetic_digits(200)
    est = LeNet5Classifier(**FAST, seed=3).fit(x, y)
    fresh = clone(est)
    assert fresh.get_params() == est.get_params() and not hasattr(fresh, "model_")
    same_weights(fresh.fit(x, y), est)
    back = pickle.loads(pickle.dumps(est))
    xt, _ = synthetic_digits(100, seed=1)
    np.testing.assert_array_equal(back.predict(xt), est.predict(xt))
    np.testing.assert_array_equal(back.predict_proba(xt), est.predict_proba(xt))
    same_weights(back, est)


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load_mnist(mnist_dir)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist", "mnist-distorted"])
def test_shipped_model_untrained(mnist, name):
    """passes=0: the shipped model as it is, its test error the one recorded in it."""
    tr_x, tr_y, te_x, te_y = mnist
    est = LeNet5Classifier(pretrained=name, passes=0).fit(tr_x[:20], tr_y[:20])
    np.testing.assert_array_equal(est.classes_, np.arange(10))  # all ten, though 20 digits
    assert est.n_iter_ == 0
    shipped = LeNet5.pretrained(name)
    assert est.score(te_x, te_y) == pytest.approx(1 - shipped.meta["test_error"], abs=1e-12)
    assert est.score(te_x, te_y) >= 0.99
    np.testing.assert_array_equal(est.predict(te_x[:2000]), shipped.predict(te_x[:2000]))
    # floats in [0, 1], flat rows: the same answers
    np.testing.assert_array_equal(
        est.predict(te_x[:500].reshape(-1, 784) / 255.0), shipped.predict(te_x[:500])
    )


@pytest.mark.slow
def test_shipped_model_fine_tuned(mnist):
    """passes >= 1 with pretrained: trained on from the shipped weights, not from scratch."""
    tr_x, tr_y, te_x, te_y = mnist
    est = LeNet5Classifier(pretrained="mnist", passes=1, mu=0.4).fit(tr_x[:2000], tr_y[:2000])
    scratch = LeNet5Classifier(passes=1, mu=0.4).fit(tr_x[:2000], tr_y[:2000])
    assert est.score(te_x[:2000], te_y[:2000]) >= 0.97
    assert scratch.score(te_x[:2000], te_y[:2000]) < 0.95


@pytest.mark.slow
def test_pipeline_gridsearch_and_cross_val_score(mnist):
    """On 2,000 MNIST digits, one pass each: scikit-learn's tools drive the estimator."""
    tr_x, tr_y, te_x, te_y = mnist
    x = tr_x[:2000].reshape(-1, 784).astype(np.float64)  # bytes held as floats 0..255
    y = tr_y[:2000]
    scale = FunctionTransformer(lambda v: v / 255.0)
    pipe = make_pipeline(scale, LeNet5Classifier(passes=1, mu=0.4))
    pipe.fit(x, y)
    direct = LeNet5Classifier(passes=1, mu=0.4).fit(tr_x[:2000], y)
    same_weights(pipe[-1], direct)  # floats v / 255 train as the bytes they hold
    np.testing.assert_array_equal(
        pipe.predict(te_x[:1000].reshape(-1, 784)), direct.predict(te_x[:1000])
    )
    assert pipe.score(te_x[:1000].reshape(-1, 784), te_y[:1000]) > 0.6

    # cross_val_score: each fold's score is that of a clone fitted on the fold by hand
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    scores = cross_val_score(pipe, x, y, cv=cv)
    by_hand = [clone(pipe).fit(x[a], y[a]).score(x[b], y[b]) for a, b in cv.split(x, y)]
    np.testing.assert_array_equal(scores, by_hand)
    assert min(scores) > 0.5  # ten classes: chance is 0.1

    # GridSearchCV over SDLM's mu: a short run on few digits needs the larger steps of 0.4
    grid = GridSearchCV(pipe, {"lenet5classifier__mu": [0.4, 20.0]}, cv=cv)
    grid.fit(x, y)
    assert grid.best_params_ == {"lenet5classifier__mu": 0.4}
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"][0], np.mean(scores))
    refit = grid.best_estimator_[-1]
    same_weights(refit, pipe[-1])
