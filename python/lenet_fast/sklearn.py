"""LeNet-5 as a scikit-learn classifier: :class:`LeNet5Classifier`.

Needs scikit-learn (``pip install "lenet_fast[sklearn]"``). A thin adapter over
:class:`lenet_fast.LeNet5` and :func:`lenet_fast.train`: the estimator's parameters are the
model's options and the training options, ``fit`` trains a fresh model (or starts from a
shipped one), and the predictions are the model's. Nothing else in the package imports this
module, so scikit-learn stays optional.

``from sklearn... import`` below is an absolute import (Python 3 has no implicit relative
ones): it names the real scikit-learn, not this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn.utils.validation as _skvalidation
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_non_negative

from . import _validate
from .model import LeNet5
from .pretrained import PRETRAINED
from .train import train

__all__ = ["LeNet5Classifier"]

Array = npt.NDArray[Any]

#: The flat length of one digit: 28x28 pixels.
N_FEATURES = 784
#: The network's outputs: one RBF unit per digit.
N_UNITS = 10

# scikit-learn >= 1.6 validates through a function, older versions through a method
_validate_data_function = getattr(_skvalidation, "validate_data", None)


class LeNet5Classifier(ClassifierMixin, BaseEstimator):
    """LeNet-5 (LeCun et al. 1998) with the scikit-learn estimator API.

    ``X``: digits as rows of 784 pixels (n,784), or as images (n,28,28); MNIST-like (light
    ink on a dark background), uint8 bytes (255 = full ink) or floating point in [0, 1]
    (or [0, ``pixel_max``]). ``y``: up to ten distinct labels of any kind; ``classes_``
    holds them sorted, as :class:`sklearn.preprocessing.LabelEncoder` does, and the i-th
    class is trained onto the network's i-th output. More than ten classes is a
    ValueError: the network has ten outputs.

    Parameters
    ----------
    passes : int
        Training passes of :meth:`fit` (20 in the paper). 0 only with ``pretrained``:
        the shipped model is then used as it is.
    optimizer, distort, seed, mu, hessian_samples, lr, batch_size, order
        As :func:`lenet_fast.train` takes them; ``mu=None`` is its default schedule
        (:func:`lenet_fast.train.sdlm_mu`, made for 20 passes over 60,000 digits; short runs
        on small data train better with a constant ``mu=0.4``). ``seed`` also seeds the
        initial weights.
    loss, map_j, loss_scale, subsample, rbf
        The model's options, as :class:`lenet_fast.LeNet5` takes them.
    pretrained : None, "mnist" or "mnist-distorted"
        Start from a shipped model (:meth:`lenet_fast.LeNet5.pretrained`) instead of random
        weights: ``fit`` with ``passes=0`` only records the classes and uses it as it is;
        with ``passes >= 1`` it fine-tunes it on ``X, y`` (the pass schedule starts again
        at pass 1). Its ``subsample`` and ``rbf`` are part of its weights, so those
        parameters must match the shipped model's (their defaults do); ``loss``, ``map_j``
        and ``loss_scale`` apply. When every label is an integer digit 0..9, ``classes_``
        is all ten digits, each on the shipped model's output for it, whichever of them
        ``y`` holds (the model knows them all); ``passes=0`` needs such labels.
    pixel_max : float or None
        The value of full ink of the pixels (e.g. 255.0 for floats holding bytes); None:
        255 for integer pixels, 1 for floating point.
    verbose : bool
        Print one line per training pass.

    Attributes
    ----------
    classes_ : array (n_classes,)
    model_ : :class:`lenet_fast.LeNet5`, the trained network
    n_iter_ : int, training passes done by this estimator (``fit`` resets it)
    n_features_in_ : int, 784

    Training quantises floating-point pixels to MNIST's 256 grey levels (``train`` and
    the distortions work on bytes); prediction uses them as given.

    The probabilities are Eq. 9's posterior of the network's outputs for ``classes_``
    renormalised over them: the paper's "rubbish class" (and the outputs of digits absent
    from ``y``) dropped, so that each row sums to 1 as scikit-learn requires; that is a
    softmax of minus the penalties. :meth:`lenet_fast.LeNet5.predict_proba` on ``model_``
    gives the posterior with the rubbish class.
    """

    def __init__(
        self,
        *,
        passes: int = 20,
        optimizer: str = "sdlm",
        distort: bool = False,
        loss: str = "map",
        map_j: float = 5.0,
        loss_scale: float = 1.0,
        subsample: str = "mean",
        rbf: str = "fixed",
        seed: int = 0,
        mu: float | None = None,
        hessian_samples: int = 500,
        lr: float = 0.005,
        batch_size: int = 32,
        order: str = "reshuffle",
        pretrained: str | None = None,
        pixel_max: float | None = None,
        verbose: bool = False,
    ) -> None:
        self.passes = passes
        self.optimizer = optimizer
        self.distort = distort
        self.loss = loss
        self.map_j = map_j
        self.loss_scale = loss_scale
        self.subsample = subsample
        self.rbf = rbf
        self.seed = seed
        self.mu = mu
        self.hessian_samples = hessian_samples
        self.lr = lr
        self.batch_size = batch_size
        self.order = order
        self.pretrained = pretrained
        self.pixel_max = pixel_max
        self.verbose = verbose

    # ------------------------------------------------------------------ scikit-learn

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # pixels: 0 is background
        return tags

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6
        return {"requires_positive_X": True}

    # ------------------------------------------------------------------ training

    def fit(self, X: Any, y: Any) -> LeNet5Classifier:
        """Train a fresh network on digits ``X`` and labels ``y`` for ``passes`` passes
        (or take the shipped ``pretrained`` model, fine-tuned for ``passes``)."""
        passes = _validate.int_at_least("passes", self.passes, 0)
        x, labels = self._check_training_data(X, y, reset=True)
        classes = self._classes_of(np.unique(labels))
        if passes == 0:
            if self.pretrained is None:
                raise ValueError(
                    "passes: 0 passes leave the network at its random initialisation; give "
                    "passes >= 1, or pretrained='mnist' to use a shipped model as it is"
                )
            if not self._digit_classes(classes):
                raise ValueError(
                    f"y: with passes=0 the shipped model {self.pretrained!r} predicts the "
                    f"digits 0..9 untrained, so y must hold such digits; got classes "
                    f"{classes[:10].tolist()}"
                )
        model = self._initial_model()
        if passes:
            self._train(model, x, np.searchsorted(classes, labels), passes=passes, start=0)
        # set together, once all went well: a failed fit leaves a fitted estimator as it was
        self.model_, self.classes_, self.n_iter_ = model, classes, passes
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> LeNet5Classifier:
        """One training pass over ``X, y``, continuing the pass schedule (eta, mu, random
        draws) of the passes before: k calls on the same data give the weights of
        ``fit`` with ``passes=k``.

        ``classes``: every label the calls will see; needed only by the first call (without
        it the first call's labels are all there are), and if given later it must be the
        same."""
        first = not hasattr(self, "model_")
        x, labels = self._check_training_data(X, y, reset=first)
        if first:
            known = self._classes_of(np.unique(labels if classes is None else classes))
            model, done = self._initial_model(), 0
        else:
            known, model, done = self.classes_, self.model_, self.n_iter_
            if classes is not None and not np.array_equal(
                self._classes_of(np.unique(classes)), known
            ):
                raise ValueError(
                    f"classes: expected the classes of the first call, {known.tolist()}, "
                    f"got {np.unique(classes).tolist()}"
                )
        codes = np.minimum(np.searchsorted(known, labels), len(known) - 1)
        unknown = known[codes] != labels
        if np.any(unknown):
            raise ValueError(
                f"y: labels {np.unique(labels[unknown])[:10].tolist()} are not among "
                f"classes_ {known.tolist()}; give every class to the first call (classes=...)"
            )
        self._train(model, x, codes, passes=done + 1, start=done)
        self.model_, self.classes_, self.n_iter_ = model, known, done + 1
        return self

    def _train(self, model: LeNet5, x: Array, codes: Array, *, passes: int, start: int) -> None:
        """Train ``model`` in place on pixels ``x`` (n,784) and class indices ``codes`` (the i-th
        class is the i-th output), passes ``start + 1 .. passes``."""
        kwargs: dict[str, Any] = {
            "passes": passes,
            "start_pass": start,
            "optimizer": self.optimizer,
            "distort": self.distort,
            "seed": self.seed,
            "hessian_samples": self.hessian_samples,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "order": self.order,
            "log": print if self.verbose else None,
        }
        if self.mu is not None:
            kwargs["mu"] = self.mu
        train(model, self._training_bytes(x), codes, **kwargs)

    def _initial_model(self) -> LeNet5:
        """A fresh LeNet5 of the estimator's options, or the shipped model with them."""
        model = LeNet5(
            self.seed,
            loss=self.loss,
            map_j=self.map_j,
            loss_scale=self.loss_scale,
            rbf=self.rbf,
            subsample=self.subsample,
        )
        if self.pretrained is None:
            return model
        if not isinstance(self.pretrained, str) or self.pretrained not in PRETRAINED:
            raise ValueError(
                f"pretrained: expected None or one of {sorted(PRETRAINED)}, got {self.pretrained!r}"
            )
        shipped = LeNet5.pretrained(self.pretrained)
        for name in ("subsample", "rbf"):
            if shipped.options[name] != model.options[name]:
                raise ValueError(
                    f"{name}: the shipped model {self.pretrained!r} was trained with "
                    f"{name}={shipped.options[name]!r}, which is part of its weights; "
                    f"leave {name} at that value, got {model.options[name]!r}"
                )
        for name in ("loss", "map_j", "loss_scale"):
            shipped.options[name] = model.options[name]
        return shipped

    def _classes_of(self, classes: Array) -> Array:
        """``classes_`` for the sorted labels ``classes``: the i-th is the network's i-th
        output. A shipped model knows all ten digits: with digit labels, its classes are
        the ten digits, whichever of them the labels hold."""
        if len(classes) > N_UNITS:
            raise ValueError(
                f"y: LeNet-5 has {N_UNITS} outputs, so at most {N_UNITS} classes; got "
                f"{len(classes)}"
            )
        if self.pretrained is not None and self._digit_classes(classes):
            return np.arange(N_UNITS, dtype=classes.dtype)
        return classes

    @staticmethod
    def _digit_classes(classes: Array) -> bool:
        """Whether every class is an integer digit 0..9 (bools are not)."""
        return bool(
            classes.dtype.kind in "iu"
            and classes.size
            and classes.min() >= 0
            and classes.max() < N_UNITS
        )

    def _training_bytes(self, x: Array) -> npt.NDArray[np.uint8]:
        """(n,784) pixels as the uint8 digits (n,28,28) that training takes."""
        x = x.reshape(-1, 28, 28)
        pm = self.pixel_max
        if x.dtype == np.uint8 and (pm is None or float(pm) == 255.0):
            return np.ascontiguousarray(x)
        if x.dtype == np.bool_ or x.dtype.kind not in "uif":
            raise TypeError(f"X: expected uint8 or floating-point pixels, got {x.dtype}")
        if pm is None:
            full = 255.0 if x.dtype.kind in "ui" else 1.0
        else:
            full = _validate.positive_number("pixel_max", pm)
        hi = float(x.max()) if x.size else 0.0
        if hi > full:
            how = (
                "state the range with pixel_max=255.0 (or the value of full ink)"
                if x.dtype.kind == "f"
                else "bytes are 0..255; for another range pass pixel_max"
            )
            raise ValueError(f"X: pixel values up to {hi:g}, above full ink {full:g}: {how}")
        return np.rint(x.astype(np.float64) * (255.0 / full)).astype(np.uint8)

    # ------------------------------------------------------------------ input

    def _check_X(self, X: Any, y: Any = None, *, reset: bool, fitting: bool) -> Any:
        """Validated ``X`` as (n,784) rows (and ``y``, when fitting)."""
        if isinstance(X, (list, tuple)):
            X = np.asarray(X)
        shape = getattr(X, "shape", None)
        if shape is not None and len(shape) == 3:
            if tuple(shape[1:]) != (28, 28):
                raise ValueError(
                    f"X: expected digits shaped (n,28,28) or rows (n,784), got shape {tuple(shape)}"
                )
            X = np.reshape(X, (shape[0], N_FEATURES))
        kwargs: dict[str, Any] = {"reset": reset, "dtype": "numeric"}
        args = (X, y) if fitting else (X,)
        if _validate_data_function is not None:
            out = _validate_data_function(self, *args, **kwargs)
        else:  # scikit-learn < 1.6
            out = self._validate_data(*args, **kwargs)
        x = out[0] if fitting else out
        if fitting:
            check_classification_targets(out[1])
        check_non_negative(x, f"{type(self).__name__} (pixels)")
        if x.shape[1] != N_FEATURES:
            raise ValueError(
                f"X: LeNet-5 takes 28x28 digits, as rows of {N_FEATURES} pixels (n,784) or "
                f"images (n,28,28); got {x.shape[1]} feature(s)"
            )
        return out

    def _check_training_data(self, X: Any, y: Any, *, reset: bool) -> tuple[Array, Array]:
        x, labels = self._check_X(X, y, reset=reset, fitting=True)
        return x, np.asarray(labels)

    # ------------------------------------------------------------------ prediction

    def _penalties(self, X: Any) -> Array:
        """The network's penalties (n, n_classes) for ``classes_``: smaller = more likely."""
        check_is_fitted(self)
        x = self._check_X(X, reset=False, fitting=False)
        y = self.model_.forward(x, pixel_max=self.pixel_max)
        return y[:, : len(self.classes_)].astype(np.float64)

    def predict(self, X: Any) -> Array:
        """The class of the smallest penalty, for each digit."""
        best = self._penalties(X).argmin(axis=1)
        return self.classes_[best]

    def predict_proba(self, X: Any) -> Array:
        """Probabilities (n, n_classes), rows summing to 1: Eq. 9's posterior over
        ``classes_`` renormalised (the rubbish class dropped), a softmax of minus the
        penalties."""
        y = self._penalties(X)
        e = np.exp(y.min(axis=1, keepdims=True) - y)
        return e / e.sum(axis=1, keepdims=True)

    def predict_log_proba(self, X: Any) -> Array:
        """The log of :meth:`predict_proba`, computed without its rounding to 0."""
        y = self._penalties(X)
        shifted = y.min(axis=1, keepdims=True) - y
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def decision_function(self, X: Any) -> Array:
        """Scores, larger = more likely: minus the penalties (n, n_classes); for two
        classes, as scikit-learn has it, one score (n,) for ``classes_[1]``, the penalty of
        ``classes_[0]`` minus that of ``classes_[1]``."""
        y = self._penalties(X)
        if y.shape[1] == 2:
            return y[:, 0] - y[:, 1]
        return -y
