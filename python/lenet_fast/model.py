"""LeNet-5 as LeCun et al. (1998) describe it: the model, its losses and its Hessian
diagonal; its files are :mod:`lenet_fast.checkpoint`'s.

Layers (paper II-B, Fig. 2; N = batch):

====== ============= ===================================================== ========
layer  output        computes                                              params
====== ============= ===================================================== ========
C1     (N,6,28,28)   5x5 conv of the (N,1,32,32) input + bias, then f      156
S2     (N,6,14,14)   2x2 block sum x coefficient + bias per map, then f    12
C3     (N,16,10,10)  5x5 conv over the S2 maps of Table I + bias, then f   1,516
S4     (N,16,5,5)    as S2                                                 32
C5     (N,120,1,1)   5x5 conv over all 16 S4 maps + bias, then f           48,120
F6     (N,84)        full connection + bias, then f                        10,164
OUTPUT (N,10)        Euclidean RBF y_i = sum_j (x_j - c_ij)^2              0 (fixed)
====== ============= ===================================================== ========

f(a) = 1.7159 tanh(2a/3). The output is a penalty per class: the predicted class is the
argmin. 60,000 trainable parameters (60,840 with trainable RBF centres).

Choices where the paper is silent or where following it literally fails (each an option;
the training documentation has the measurements behind them):

* ``subsample="mean"`` (default, the average of the 2x2 block) or ``"sum"`` (the paper: "the
  four inputs ... are added, then multiplied by a trainable coefficient"). In "mean" mode
  the coefficient multiplies the average, so it is 4x the "sum" coefficient for the same
  function; it is initialised 4x wider, so both modes start from the same network. They
  differ in training: SDLM's step on the coefficient is 16x smaller in "mean" mode, and
  that trained to a lower test error here.
* Biases start like weights: a bias is a weight from a constant +1 input, uniform in
  +-2.4/F with F the fan-in of its unit (Appendix A gives only the weights' rule).
* ``loss="map"`` (default, Eq. 9, with ``map_j=5``, the "rubbish class" penalty the paper
  leaves open) or ``"mse"`` (Eq. 8, the penalty of the correct class).
* ``loss_scale=1``: the loss is E exactly as printed (Eq. 8 or 9, mean over the batch).
  SDLM's step ``eta * g / (mu + h)`` with both g and h of ``loss_scale * E`` equals the
  step on E with ``mu / loss_scale``, so a scale is another way to set mu; the training
  schedule of mu (:func:`lenet_fast.train.sdlm_mu`) is where the choice is made.
* ``rbf="fixed"`` (default, the paper's 7x12 codes) or ``"trainable"``; ``codes`` swaps
  the centres, e.g. :data:`lenet_fast.tables.RBF_CODES_NO_TOP_BAR`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from . import _validate, kernels, network, reference, tables
from .checkpoint import read_checkpoint, save_checkpoint
from .layout import PARAM_SHAPES, RBF_PARAM, RBF_SHAPE, count_parameters
from .mnist import preprocess
from .pretrained import pretrained_file
from .train import train as _train

LOSSES = ("mse", "map")
SUBSAMPLES = ("sum", "mean")
RBFS = ("fixed", "trainable")
BACKENDS = ("fast", "reference")

Array = npt.NDArray[Any]


def _c3_fan_in() -> npt.NDArray[np.int64]:
    """Fan-in of each C3 map (75, 100 or 150): 25 x the S2 maps it reads."""
    return 25 * np.asarray(tables.C3_TABLE).sum(axis=0)


def init_params(seed: int, subsample: str = "sum") -> dict[str, npt.NDArray[np.float32]]:
    """Appendix A: every weight (and bias) uniform in [-2.4/F, 2.4/F], F the unit's fan-in."""
    rng = np.random.default_rng(seed)
    c3_fan = _c3_fan_in()
    # per-pair fan-in of the packed C3 kernels, ordered by output map k then input map c
    pair_fan = np.repeat(c3_fan, np.asarray(tables.C3_TABLE).sum(axis=0))
    sub = 4.0 if subsample == "mean" else 1.0
    fan: dict[str, Any] = {
        "c1.w": 25,
        "c1.b": 25,
        "s2.coef": 4 / sub,
        "s2.bias": 4,
        "c3.w": pair_fan[:, None, None],
        "c3.b": c3_fan,
        "s4.coef": 4 / sub,
        "s4.bias": 4,
        "c5.w": 400,
        "c5.b": 400,
        "f6.w": 120,
        "f6.b": 120,
    }
    params = {}
    for name, shape in PARAM_SHAPES.items():
        u = rng.uniform(-1.0, 1.0, size=shape)
        params[name] = (u * (2.4 / np.asarray(fan[name], dtype=np.float64))).astype(np.float32)
    return params


def _digit_shape(x: Array) -> tuple[int, int, int]:
    """The (N,28,28) view of x's shape: (N,28,28), (28,28), (N,784) or (N,1,28,28)."""
    s = x.shape
    if s == (28, 28):
        return (1, 28, 28)
    if (x.ndim == 3 and s[1:] == (28, 28)) or (x.ndim == 4 and s[1:] == (1, 28, 28)):
        return (s[0], 28, 28)
    if x.ndim == 2 and s[1] == 784:
        return (s[0], 28, 28)
    hint = " (one flat digit: x.reshape(1, 784))" if s == (784,) else ""
    raise ValueError(
        f"x: expected digits shaped (N,28,28), (28,28), (N,784) or (N,1,28,28), or "
        f"floating-point preprocessed input (N,1,32,32), got shape {s}{hint}"
    )


def _rubbish_posterior(y: Array, j: float) -> Array:
    """Eq. 9's posterior (N,11) of penalties y (N,10): P(i) = e^-y_i / Z for the ten
    classes and e^-j / Z for the rubbish class, Z = e^-j + sum_k e^-y_k (max-shifted)."""
    yd = np.concatenate([y.astype(np.float64), np.full((y.shape[0], 1), float(j))], axis=1)
    e = np.exp(yd.min(axis=1, keepdims=True) - yd)
    return e / e.sum(axis=1, keepdims=True)


class LeNet5:
    """LeNet-5 with the paper's layers, squashing function and RBF output.

    Parameters
    ----------
    seed : int
        Seed of the Appendix A initialisation.
    loss : "mse" | "map"
        Eq. 8 (mean penalty of the correct class) or Eq. 9 (adds a log-sum-exp
        competition term with a rubbish class of penalty ``map_j``).
    map_j : float
        The constant j > 0 of Eq. 9.
    rbf : "fixed" | "trainable"
        Whether the RBF centres (initially ``codes``) are trained.
    subsample : "sum" | "mean"
        What the S2/S4 coefficient multiplies: the 2x2 block's sum (paper) or its mean.
    codes : array (10,84), optional
        RBF centres; default :data:`lenet_fast.tables.RBF_CODES`.
    backend : "fast" | "reference"
        The C++ kernels or their NumPy twins (slow; float64 capable, for checks).

    ``model.params`` maps names (see :data:`lenet_fast.layout.PARAM_SHAPES`) to float32 arrays. ``forward``
    and ``predict`` only read them, so one model may serve many threads at once.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        loss: str = "map",
        map_j: float = 5.0,
        loss_scale: float = 1.0,
        rbf: str = "fixed",
        subsample: str = "mean",
        codes: npt.ArrayLike | None = None,
        backend: str = "fast",
    ) -> None:
        _validate.choice("loss", loss, LOSSES)
        _validate.choice("rbf", rbf, RBFS)
        _validate.choice("subsample", subsample, SUBSAMPLES)
        _validate.choice("backend", backend, BACKENDS)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed: expected an int, got {type(seed).__name__}")
        map_j = _validate.positive_number("map_j", map_j)
        c = np.asarray(tables.RBF_CODES if codes is None else codes)
        if (
            c.shape != RBF_SHAPE
            or not np.issubdtype(c.dtype, np.number)
            or not np.all(np.isfinite(c))
        ):
            raise ValueError(
                f"codes: expected a finite (10,84) array, got shape {c.shape} {c.dtype}"
            )
        loss_scale = _validate.positive_number("loss_scale", loss_scale)
        self.options: dict[str, Any] = {
            "seed": int(seed),
            "loss": loss,
            "map_j": map_j,
            "loss_scale": loss_scale,
            "rbf": rbf,
            "subsample": subsample,
        }
        self.backend = backend
        self.params: dict[str, Array] = init_params(int(seed), subsample)
        self.codes: Array = np.ascontiguousarray(c, dtype=np.float32)
        self.history: list[dict[str, Any]] = []  # per-pass records, filled by training
        self.train_state: dict[str, Any] = {}  # where a checkpoint's training stood
        self.meta: dict[str, Any] = {}  # what made the model (JSON-able; saved with it)
        self.pixel_max: float | None = None  # full ink of floating-point input (prepare)
        if rbf == "trainable":
            self.params[RBF_PARAM] = self.codes.copy()

    # ------------------------------------------------------------------ basics

    @property
    def _k(self) -> ModuleType:
        return kernels if self.backend == "fast" else reference

    @property
    def centres(self) -> Array:
        """The RBF centres (10,84) in use, in the parameters' dtype: the trained ``"rbf.c"``
        parameter itself with ``rbf="trainable"``, else a copy of the fixed ``codes``."""
        return self.params[RBF_PARAM] if RBF_PARAM in self.params else self.codes.astype(self.dtype)

    @property
    def _fixed_centres(self) -> Array | None:
        """The fixed centres for the fused network, None when they are a parameter: ``codes``
        itself (the C++ only reads it), not a copy per call."""
        return None if RBF_PARAM in self.params else np.asarray(self.codes, dtype=self.dtype)

    @property
    def dtype(self) -> np.dtype:
        return self.params["c1.w"].dtype

    def num_parameters(self) -> dict[str, int]:
        """Trainable parameters per layer, and their total under "total"."""
        return count_parameters(trainable_centres=RBF_PARAM in self.params)

    def astype(self, dtype: Any) -> LeNet5:
        """A copy with parameters of ``dtype`` (float64 needs backend="reference")."""
        dtype = np.dtype(dtype)
        if dtype != np.float32 and self.backend == "fast":
            raise ValueError("dtype: the fast backend computes in float32; use backend='reference'")
        m = self.copy()
        m.params = {k: v.astype(dtype) for k, v in self.params.items()}
        return m

    def copy(self) -> LeNet5:
        m = object.__new__(LeNet5)
        m.options = dict(self.options)
        m.backend = self.backend
        m.params = {k: v.copy() for k, v in self.params.items()}
        m.codes = self.codes.copy()
        m.history = [dict(h) for h in self.history]
        m.train_state = dict(self.train_state)
        m.meta = json.loads(json.dumps(self.meta))
        m.pixel_max = self.pixel_max
        return m

    # ------------------------------------------------------------------ input

    def prepare(self, x: npt.ArrayLike, *, pixel_max: float | None = None) -> Array:
        """The network's input (N,1,32,32) in the model's dtype, from digits as pipelines
        hold them.

        ``x`` (a numpy array), light ink on a dark background as in MNIST:

        * digits of 28x28 pixels, shaped (N,28,28), (28,28) (one digit), (N,784) (flat
          rows, as scikit-learn, Spark and Ray hand them over) or (N,1,28,28); as uint8
          bytes (0 background, 255 full ink), another integer type holding bytes, or
          floating point. Floating-point pixels are read as 0..1 (1 = full ink) unless
          ``pixel_max`` (or the model's ``pixel_max`` attribute) states the value of full
          ink, e.g. 255.0; a value outside [0, pixel_max], NaN or inf is a ValueError.
          Bytes with ``pixel_max`` given are scaled by it too (e.g. uint16 with 65535).
        * the preprocessed input itself, floating point (N,1,32,32)
          (:func:`lenet_fast.mnist.preprocess`: padded to 32x32, background -0.1, ink
          1.175), passed through (cast to the model's dtype); ``pixel_max`` must not be
          given for it.

        Nothing is guessed: the polarity is never flipped and the scale is the stated one.
        Images that are not yet MNIST-like (a photo, a scan, dark ink on paper) go through
        :func:`lenet_fast.image.normalize_digit` first, or :meth:`predict_image`.
        """
        if pixel_max is None:
            pixel_max = self.pixel_max
        if not isinstance(x, np.ndarray):
            raise TypeError(
                f"x: expected a numpy array of digits (N,28,28), (28,28), (N,784) or "
                f"(N,1,28,28), or preprocessed input (N,1,32,32), got {type(x).__name__}"
            )
        if x.ndim == 4 and x.shape[1:] == (1, 32, 32) and x.dtype.kind == "f":
            if pixel_max is not None:
                raise ValueError(
                    "pixel_max: (N,1,32,32) floating-point input is taken as preprocessed "
                    "(background -0.1, ink 1.175); pixel_max applies to 28x28 pixels only"
                )
            return np.ascontiguousarray(x, dtype=self.dtype)
        if x.dtype == np.bool_ or x.dtype.kind not in "uif":
            raise TypeError(
                f"x: expected uint8 or floating-point pixels, got {x.dtype} array of shape "
                f"{x.shape}"
            )
        digits = _digit_shape(x)
        if pixel_max is not None:
            pixel_max = _validate.positive_number("pixel_max", pixel_max)
        if x.dtype == np.uint8 and pixel_max in (None, 255.0):
            return preprocess(x.reshape(digits)).astype(self.dtype, copy=False)
        v = x.reshape(digits).astype(np.float64)
        if pixel_max is None:
            pixel_max = 255.0 if x.dtype.kind in "ui" else 1.0
        if not np.all(np.isfinite(v)):
            raise ValueError("x: NaN or infinite pixel values")
        lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
        if lo < 0 or hi > pixel_max:
            how = (
                "state the range with pixel_max=255.0 (or the value of full ink)"
                if x.dtype.kind == "f"
                else "bytes are 0..255; for another range pass pixel_max"
            )
            raise ValueError(
                f"x: pixel values in [{lo:g}, {hi:g}], outside [0, {pixel_max:g}]: {how}"
            )
        planes = np.full((digits[0], 1, 32, 32), -0.1, dtype=np.float64)
        planes[:, 0, 2:30, 2:30] += 1.275 * (v / pixel_max)
        return planes.astype(self.dtype)

    # ------------------------------------------------------------------ forward

    def _sub_coef(self, name: str) -> Array:
        c = self.params[name]
        return c * c.dtype.type(0.25) if self.options["subsample"] == "mean" else c

    def _forward(self, x: Array) -> tuple[Array, tuple[Array, ...]]:
        """Penalties (N,10) and the activations the backward pass needs."""
        k, p, n = self._k, self.params, x.shape[0]
        h1 = k.squash_forward(k.conv2d_forward(x, p["c1.w"], p["c1.b"]))
        h2 = k.squash_forward(k.subsample_forward(h1, self._sub_coef("s2.coef"), p["s2.bias"]))
        h3 = k.squash_forward(k.sparse_conv2d_forward(h2, p["c3.w"], p["c3.b"], tables.C3_TABLE))
        h4 = k.squash_forward(k.subsample_forward(h3, self._sub_coef("s4.coef"), p["s4.bias"]))
        h5 = k.squash_forward(k.conv2d_forward(h4, p["c5.w"], p["c5.b"])).reshape(n, 120)
        h6 = k.squash_forward(k.linear_forward(h5, p["f6.w"], p["f6.b"]))
        y = k.rbf_forward(h6, self.centres)
        return y, (x, h1, h2, h3, h4, h5, h6)

    def _penalties(self, x: Array) -> Array:
        """The penalties (N,10) of prepared input, without the activations: with the fast
        backend one C++ call (:func:`lenet_fast.network.forward`: the same kernels in the same
        order as :meth:`_forward`, so the same bits, image by image)."""
        if self.backend != "fast":
            return self._forward(x)[0]
        return network.forward(self.params, x, options=self.options, centres=self._fixed_centres)

    def forward(
        self, x: npt.ArrayLike, *, pixel_max: float | None = None, batch_size: int = 1024
    ) -> Array:
        """RBF penalties (N,10) of the digits ``x`` (any input :meth:`prepare` takes):
        the squared distance of F6's output to each digit's code; smaller = more likely.
        Computed ``batch_size`` digits at a time (the results do not depend on it)."""
        _validate.int_at_least("batch_size", batch_size, 1)
        xp = self.prepare(x, pixel_max=pixel_max)
        if xp.shape[0] <= batch_size:
            return self._penalties(xp)
        return np.concatenate(
            [self._penalties(xp[i : i + batch_size]) for i in range(0, xp.shape[0], batch_size)]
        )

    def decision_function(self, x: npt.ArrayLike, *, pixel_max: float | None = None) -> Array:
        """Scores (N,10), larger = more likely: minus the penalties of :meth:`forward`
        (scikit-learn's convention for classifiers)."""
        return -self.forward(x, pixel_max=pixel_max)

    def predict_proba(
        self, x: npt.ArrayLike, *, rubbish: bool = False, pixel_max: float | None = None
    ) -> Array:
        """Eq. 9's loss read as a posterior (paper II-C) over the ten digits, (N,10) float64:
        ``P(i) = exp(-y_i) / (exp(-j) + sum_k exp(-y_k))`` with ``y`` the penalties and
        ``j = options["map_j"]``, the penalty of the paper's "rubbish" class.

        The rows sum to 1 - P(rubbish), slightly under 1 for a clear digit and much less
        for input that is near no code; with ``rubbish=True`` the result is (N,11), the
        rubbish class last, and the rows sum to 1.

        A model trained with ``loss="map"`` was trained to make this a posterior. For
        ``loss="mse"`` (Eq. 8, which only pulls the correct class's penalty down) the same
        formula is a monotone score of the penalties, useful for ranking and rejection but
        not calibrated as probabilities.
        """
        y = self.forward(x, pixel_max=pixel_max)
        post = _rubbish_posterior(y, self.options["map_j"])
        return post if rubbish else post[:, :10]

    def margin(self, x: npt.ArrayLike, *, pixel_max: float | None = None) -> Array:
        """The paper's rejection score (III-D), (N,) float32: the gap between the two
        smallest penalties. Small = the two best classes are nearly tied."""
        return self._margin(self.forward(x, pixel_max=pixel_max))

    @staticmethod
    def _margin(y: Array) -> Array:
        two = np.partition(y, 1, axis=1)[:, :2] if y.shape[0] else np.zeros((0, 2), y.dtype)
        return two[:, 1] - two[:, 0]

    def reject_rule(self, reject: Any) -> tuple[float, float] | None:
        """What ``reject`` stands for, as ``(margin_threshold, penalty_threshold)``: a digit
        is rejected when its :meth:`margin` is below the first (ambiguous between two
        classes: the paper's rejection score) or its smallest penalty is above the second
        (near no digit's code: the RBF output's "well-circumscribed region", paper II-B).

        * None or "off": None, no rejection;
        * a number T >= 0: ``(T, inf)``, the margin alone, as the paper's Fig. 10;
        * "auto": ``(meta["reject_margin"], meta["reject_penalty"])``, the thresholds
          :meth:`calibrate_reject` chose (the shipped models carry them).
        """
        if reject is None or (isinstance(reject, str) and reject == "off"):
            return None
        if isinstance(reject, str):
            if reject != "auto":
                raise ValueError(
                    f"reject: expected None, 'off', 'auto' or a margin threshold >= 0, got "
                    f"{reject!r}"
                )
            tm, tp = self.meta.get("reject_margin"), self.meta.get("reject_penalty")
            if not (_validate.is_number(tm) and _validate.is_number(tp)):
                raise ValueError(
                    "reject: 'auto' uses the thresholds in the model's meta "
                    "(meta['reject_margin'] and meta['reject_penalty']), and this model has "
                    "none: pass a margin threshold, or choose them with "
                    "model.calibrate_reject(training_digits)"
                )
            return float(cast(float, tm)), float(cast(float, tp))
        t = _validate.finite_number(
            "reject",
            reject,
            minimum=0.0,
            strict=False,
            what="None, 'off', 'auto' or a margin threshold >= 0",
        )
        return t, float("inf")

    def calibrate_reject(
        self, x: npt.ArrayLike, *, fraction: float = 0.01, pixel_max: float | None = None
    ) -> tuple[float, float]:
        """Choose the thresholds of ``reject="auto"`` on digits ``x`` the model should
        accept (its training digits: no test digit plays a part): ``meta["reject_margin"]``,
        the margin below which ``fraction`` of them fall, and ``meta["reject_penalty"]``,
        the smallest penalty above which ``fraction`` of them fall. Returns both."""
        f = _validate.finite_number("fraction", fraction, minimum=0.0, strict=False)
        if f >= 1:
            raise ValueError(f"fraction: expected a number in [0, 1), got {fraction}")
        y = self.forward(x, pixel_max=pixel_max)
        if y.shape[0] == 0:
            raise ValueError("x: choosing the thresholds needs at least one digit")
        tm = float(np.quantile(self._margin(y).astype(np.float64), f))
        tp = float(np.quantile(y.min(axis=1).astype(np.float64), 1 - f))
        self.meta.update(reject_margin=tm, reject_penalty=tp, reject_fraction=f)
        return tm, tp

    @classmethod
    def _rejected(cls, y: Array, rule: tuple[float, float] | None) -> npt.NDArray[np.bool_]:
        if rule is None:
            return np.zeros(y.shape[0], dtype=bool)
        return (cls._margin(y) < rule[0]) | (y.min(axis=1) > rule[1])

    def predict(
        self,
        x: npt.ArrayLike,
        batch_size: int = 1024,
        *,
        reject: Any = None,
        pixel_max: float | None = None,
    ) -> npt.NDArray[np.int64]:
        """Predicted digits (N,) int64: the argmin of the penalties, computed in batches.

        ``reject`` (see :meth:`reject_rule`): None (default) always answers; "auto" (the
        model's calibrated thresholds) or a margin threshold T gives -1 for the digits
        rejected."""
        rule = self.reject_rule(reject)
        y = self.forward(x, pixel_max=pixel_max, batch_size=batch_size)
        out = y.argmin(axis=1).astype(np.int64) if y.shape[0] else np.zeros(0, np.int64)
        out[self._rejected(y, rule)] = -1
        return out

    def classify(
        self, x: npt.ArrayLike, *, reject: Any = None, pixel_max: float | None = None
    ) -> dict[str, Array]:
        """Everything a pipeline reports per digit, in one forward pass: ``digit`` (N,)
        int64 (-1 where rejected), ``probability`` (N,) Eq. 9's posterior of the best
        class, ``margin`` (N,) and ``rejected`` (N,) bool (see :meth:`predict`)."""
        rule = self.reject_rule(reject)
        y = self.forward(x, pixel_max=pixel_max)
        best = y.argmin(axis=1).astype(np.int64) if y.shape[0] else np.zeros(0, np.int64)
        post = _rubbish_posterior(y, self.options["map_j"])
        margin = self._margin(y)
        rejected = self._rejected(y, rule)
        return {
            "digit": np.where(rejected, -1, best),
            "probability": post[np.arange(len(y)), best],
            "margin": margin,
            "rejected": rejected,
        }

    def predict_image(self, images: Any, invert: bool | str = "auto", reject: Any = None) -> Any:
        """Digits in real images: each one normalised as MNIST's were
        (:func:`lenet_fast.image.normalize_digit`), then classified.

        ``images``: one image (a path, bytes, a file object, a ``PIL.Image`` or a 2-D
        array; see :func:`lenet_fast.image.load_image`) or many (a list of those, or a
        3-D array (N,H,W)). ``invert``: "auto" (dark ink on light paper told from the
        border), True or False. ``reject``: as for :meth:`predict`. Returns an int for
        one image, an int64 array (N,) for many; -1 where the digit is rejected and for an
        image with no ink (blank), whatever ``reject`` says. A file that cannot be read
        raises :class:`lenet_fast.image.ImageError`.
        """
        from .image import load_image, normalize_digits

        one = not isinstance(images, (list, tuple)) and not (
            isinstance(images, np.ndarray) and images.ndim == 3
        )
        items = [images] if one else images
        if isinstance(items, np.ndarray):
            grey: Any = items
        else:
            grey = [load_image(item) for item in items]
        digits, ink = normalize_digits(grey, invert=invert)
        out = self.classify(digits, reject=reject)["digit"]
        out[~ink] = -1
        return int(out[0]) if one else out

    # ------------------------------------------------------------------ loss

    def loss_gradient(self, y: Array, labels: Array) -> tuple[float, Array]:
        """Loss (mean over the batch) of penalties y (N,10) and its gradient dE/dy (N,10)."""
        n = y.shape[0]
        rows = np.arange(n)
        scale = self.options["loss_scale"]
        g = np.zeros_like(y)
        if self.options["loss"] == "mse":  # Eq. 8
            g[rows, labels] = scale / n
            return scale * float(y[rows, labels].astype(np.float64).mean()), g
        # Eq. 9: y_c + log(e^-j + sum_i e^-y_i), with the max-shift trick
        j = self.options["map_j"]
        yd = y.astype(np.float64)
        m = np.maximum(-j, (-yd).max(axis=1, keepdims=True))
        e = np.exp(-yd - m)
        z = np.exp(-j - m) + e.sum(axis=1, keepdims=True)
        loss = yd[rows, labels] + (m + np.log(z))[:, 0]
        gd = -e / z
        gd[rows, labels] += 1.0
        return scale * float(loss.mean()), (gd * (scale / n)).astype(y.dtype)

    # ------------------------------------------------------------------ backward

    def _backward(self, cache: tuple[Array, ...], gy: Array) -> dict[str, Array]:
        """Gradients of the loss for every parameter, from dE/dy (N,10)."""
        k, p = self._k, self.params
        x, h1, h2, h3, h4, h5, h6 = cache
        n = x.shape[0]
        g: dict[str, Array] = {}
        dh6, dc = k.rbf_backward(h6, self.centres, gy)
        if RBF_PARAM in p:
            g[RBF_PARAM] = dc
        dh5, g["f6.w"], g["f6.b"] = k.linear_backward(h5, p["f6.w"], k.squash_backward(h6, dh6))
        da5 = k.squash_backward(h5, dh5).reshape(n, 120, 1, 1)
        dh4, g["c5.w"], g["c5.b"] = k.conv2d_backward(h4, p["c5.w"], da5)
        dh3, g["s4.coef"], g["s4.bias"] = k.subsample_backward(
            h3, self._sub_coef("s4.coef"), k.squash_backward(h4, dh4)
        )
        dh2, g["c3.w"], g["c3.b"] = k.sparse_conv2d_backward(
            h2, p["c3.w"], k.squash_backward(h3, dh3), tables.C3_TABLE
        )
        dh1, g["s2.coef"], g["s2.bias"] = k.subsample_backward(
            h1, self._sub_coef("s2.coef"), k.squash_backward(h2, dh2)
        )
        _, g["c1.w"], g["c1.b"] = k.conv2d_backward(x, p["c1.w"], k.squash_backward(h1, dh1))
        if self.options["subsample"] == "mean":
            g["s2.coef"] = g["s2.coef"] * g["s2.coef"].dtype.type(0.25)
            g["s4.coef"] = g["s4.coef"] * g["s4.coef"].dtype.type(0.25)
        return g

    def gradients(
        self, x: npt.ArrayLike, labels: npt.ArrayLike
    ) -> tuple[float, dict[str, Array], Array]:
        """Loss, gradients and penalties of a batch.

        ``x``: N >= 1 images as :meth:`prepare` takes them; ``labels``: (N,) digits 0..9.
        Returns ``(loss, grads, y)``: the loss (a float, mean over the batch of the scaled
        loss of ``options``), its gradient for every parameter (a dict of arrays shaped as
        ``params``; ``"rbf.c"`` too when the centres are trainable) and the penalties y
        (N,10). With the fast backend one C++ call (:func:`lenet_fast.network.gradients`; its
        results do not depend on the thread count), else the NumPy layers."""
        xp = self.prepare(x)
        if xp.shape[0] == 0:
            raise ValueError(
                "x: gradients of the mean loss need at least one pattern, got an empty batch"
            )
        lab = _validate.labels("labels", labels, xp.shape[0])
        if self.backend == "fast":
            return network.gradients(
                self.params, xp, lab, options=self.options, centres=self._fixed_centres
            )
        y, cache = self._forward(xp)
        loss, gy = self.loss_gradient(y, lab)
        return loss, self._backward(cache, gy), y

    def hessian_diagonal(self, x: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, Array]:
        """Gauss-Newton diagonal of the Hessian of the per-pattern loss, averaged over the
        batch (Appendix C): back-propagated like the gradient, with squared weights, squared
        derivatives and squared inputs, summed over the connections that share a weight.

        At the output, d2E/dx_j^2 = 2 for the correct class's penalty (Eq. 8's term; for
        Eq. 9 the log-sum-exp term's curvature is left out, as the paper's Appendix C does
        for the RBF layer). Every entry is >= 0.
        """
        xp = self.prepare(x)
        lab = _validate.labels("labels", labels, xp.shape[0])
        k, p = self._k, self.params
        _, (x0, h1, h2, h3, h4, h5, h6) = self._forward(xp)
        n = x0.shape[0]

        def sq(a: Array) -> Array:
            return a * a

        def f2(yv: Array, hv: Array) -> Array:  # f'(a)^2 h, from the output y = f(a)
            return k.squash_backward(yv, k.squash_backward(yv, hv))

        h: dict[str, Array] = {}
        hh6 = np.full_like(h6, 2.0)
        if RBF_PARAM in p:
            hc = np.zeros_like(p[RBF_PARAM])
            np.add.at(hc, lab, 2.0)
            h[RBF_PARAM] = hc
        hh5, h["f6.w"], h["f6.b"] = k.linear_backward(sq(h5), sq(p["f6.w"]), f2(h6, hh6))
        ha5 = f2(h5, hh5).reshape(n, 120, 1, 1)
        hh4, h["c5.w"], h["c5.b"] = k.conv2d_backward(sq(h4), sq(p["c5.w"]), ha5)
        hh3, h["s4.coef"], h["s4.bias"] = self._subsample_h(h3, "s4.coef", f2(h4, hh4))
        hh2, h["c3.w"], h["c3.b"] = k.sparse_conv2d_backward(
            sq(h2), sq(p["c3.w"]), f2(h3, hh3), tables.C3_TABLE
        )
        hh1, h["s2.coef"], h["s2.bias"] = self._subsample_h(h1, "s2.coef", f2(h2, hh2))
        _, h["c1.w"], h["c1.b"] = k.conv2d_backward(sq(x0), sq(p["c1.w"]), f2(h1, hh1))
        scale = self.options["loss_scale"] / n
        return {name: (v * v.dtype.type(scale)) for name, v in h.items()}

    def _subsample_h(self, x: Array, coef_name: str, ha: Array) -> tuple[Array, Array, Array]:
        """Second derivatives through S2/S4: d2E/dx^2 = coef^2 ha (broadcast over each block),
        d2E/dcoef^2 = sum ha * (block sum)^2, d2E/dbias^2 = sum ha."""
        k = self._k
        c = self._sub_coef(coef_name)
        hx, _, hbias = k.subsample_backward(x, c * c, ha)
        ones, zeros = np.ones_like(c), np.zeros_like(c)
        bs = k.subsample_forward(x, ones, zeros)  # block sums
        hcoef = (ha * bs * bs).sum(axis=(0, 2, 3), dtype=np.float64)
        if self.options["subsample"] == "mean":
            hcoef = hcoef / 16.0
        return hx, hcoef.astype(x.dtype), hbias

    # ------------------------------------------------------------------ fit / files

    def fit(self, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Train this model: see :func:`lenet_fast.train.train` (same arguments)."""
        return _train(self, *args, **kwargs)

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        history: list[dict[str, Any]] | None = None,
        train_state: dict[str, Any] | None = None,
    ) -> Path:
        """Write the model to a portable ``.npz`` (no pickle; :mod:`lenet_fast.checkpoint`),
        atomically: a temporary file in the same folder, flushed to disk, then renamed over
        ``path``; a failure leaves any previous file at ``path`` as it was. ``history`` and
        ``train_state`` (JSON-able) ride along for checkpoints."""
        return save_checkpoint(
            path,
            self.options,
            self.params,
            self.codes,
            history=history,
            train_state=train_state,
            model_meta=self.meta,
        )

    def to_tflite(self, path: str | os.PathLike[str]) -> Path:
        """Write the network as a LiteRT flatbuffer (``*.tflite``), built from the weights
        with the TFLite schema's object API of ``ai-edge-litert`` (``pip install
        "lenet_fast[litert]"``; no TensorFlow, no converter), atomically as :meth:`save`
        writes: input float32 [N,32,32,1] (:meth:`prepare`'s planes in NHWC, N resizable),
        output the penalties [N,10]; only ops XNNPACK delegates. See
        :func:`lenet_fast.tflite.to_tflite`. Returns the path."""
        from .tflite import to_tflite

        return to_tflite(self, path)

    def to_onnx(
        self,
        path: str | os.PathLike[str],
        opset: int = 17,
        uint8_input: bool = False,
    ) -> Path:
        """Write the network as an ONNX file (``*.onnx``), built with the ``onnx`` package's
        helper API (``pip install "lenet_fast[onnx]"``; no PyTorch), atomically as
        :meth:`save` writes.

        The graph's input ``x`` is float32 (N,1,32,32), what :meth:`prepare` makes (N
        dynamic); with ``uint8_input=True`` it is uint8 digits (N,28,28), padded and scaled
        inside the graph as :func:`lenet_fast.preprocess` does. Outputs: ``penalties``
        (N,10) as :meth:`forward`, ``label`` (N,) int64 as :meth:`predict` and ``proba``
        (N,10) as :meth:`predict_proba` (float32). C3 holds Table I's 60 kernels only. The
        file's IR version is the lowest ``opset`` allows (13 or later); its metadata hold
        the lenet_fast version, the preprocessing the input expects and ``meta``.
        Returns the path."""
        from ._onnx import save_onnx

        return save_onnx(
            path,
            self.params,
            self.options,
            self.centres,
            self.meta,
            opset=opset,
            uint8_input=uint8_input,
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, backend: str = "fast") -> LeNet5:
        """Read a model written by :meth:`save`. A file of an unknown format version, or a
        damaged, truncated or foreign file, raises ValueError saying so; nothing is
        unpickled. The history and train state are in ``model.history`` and
        ``model.train_state``."""
        return cls.from_checkpoint(*read_checkpoint(path), backend=backend)

    @classmethod
    def from_checkpoint(
        cls, meta: dict[str, Any], arrays: dict[str, Array], *, backend: str = "fast"
    ) -> LeNet5:
        """The model of :func:`lenet_fast.checkpoint.read_checkpoint`'s ``(meta, arrays)``."""
        opts = meta["options"]
        model = cls(
            seed=opts["seed"],
            loss=opts["loss"],
            map_j=opts["map_j"],
            loss_scale=opts["loss_scale"],
            rbf=opts["rbf"],
            subsample=opts["subsample"],
            codes=arrays["codes"],
            backend=backend,
        )
        model.params = {
            name: np.ascontiguousarray(arrays[f"param/{name}"]) for name in meta["param_names"]
        }
        model.history = meta.get("history", [])
        model.train_state = meta.get("train_state", {})
        model.meta = dict(meta.get("model_meta") or {})
        return model

    @classmethod
    def pretrained(cls, name: str = "mnist-distorted", *, backend: str = "fast") -> LeNet5:
        """A trained model shipped inside the package: no download, no training.

        ``name``: "mnist-distorted" (default: the paper's recipe, 20 SDLM passes over
        MNIST's 60,000 training digits with distortions) or "mnist" (the same without
        distortions). The weight file is checked against its recorded sha256 first.
        ``model.meta`` says how it was made (the command, every option, the seed, the
        lenet_fast version and commit, the MNIST files' sha256), its training and test
        errors, and the thresholds of ``reject="auto"`` (chosen on the training digits by
        :meth:`calibrate_reject`: 1% of them fall below the margin threshold, 1% above the
        penalty one). The weights are derived from MNIST.
        """
        with pretrained_file(name) as path:
            meta, arrays = read_checkpoint(path)
        return cls.from_checkpoint(meta, arrays, backend=backend)
