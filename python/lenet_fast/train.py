"""Training LeNet-5 as the paper does: stochastic diagonal Levenberg-Marquardt (SDLM).

SDLM (Appendix C, section III-B): one pattern per update; before each pass the diagonal
Gauss-Newton Hessian h_kk of the per-pattern loss is estimated on 500 patterns and kept
for the pass; each parameter k then moves by ``-eps_k * dE/dw_k`` with
``eps_k = eta / (mu + h_kk)``, the global ``eta`` of :func:`paper_eta` and ``mu`` of
:func:`sdlm_mu`: the paper's 0.02 from pass 6 on, larger before (see there why).
Plain mini-batch SGD is the other optimizer.

Every random choice of pass ``p`` (the pattern order when reshuffled, the 500 Hessian
patterns, the distortions) comes from ``numpy.random.default_rng([seed, p])``, so a run
resumed from the checkpoint written after pass ``p`` reaches exactly the weights of an
uninterrupted run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from . import _validate, network
from .checkpoint import read_checkpoint
from .distort import distort as distort_images
from .layout import RBF_PARAM
from .mnist import preprocess

OPTIMIZERS = ("sdlm", "sgd")
ORDERS = ("fixed", "reshuffle")

# The paper's global eta per pass (III-B): 5e-4 for passes 1-2, 2e-4 for 3-5, 1e-4 for
# 6-8, 5e-5 for 9-12, 1e-5 after.
PAPER_ETA = ((2, 5e-4), (5, 2e-4), (8, 1e-4), (12, 5e-5))
PAPER_ETA_AFTER = 1e-5

# SDLM's mu per pass: 8 for passes 1-2, 0.5 for 3-5, the paper's 0.02 after (sdlm_mu).
MU_SCHEDULE = ((2, 8.0), (5, 0.5))
PAPER_MU = 0.02

Array = npt.NDArray[Any]


class Model(Protocol):
    """What training needs of a model (:class:`lenet_fast.LeNet5` has it all)."""

    options: dict[str, Any]
    backend: str
    params: dict[str, Array]
    codes: Array
    history: list[dict[str, Any]]
    train_state: dict[str, Any]

    @property
    def dtype(self) -> np.dtype[Any]: ...

    def predict(self, x: npt.ArrayLike, batch_size: int = ...) -> npt.NDArray[np.int64]: ...

    def forward(self, x: npt.ArrayLike) -> Array: ...

    def gradients(
        self, x: npt.ArrayLike, labels: npt.ArrayLike
    ) -> tuple[float, dict[str, Array], Array]: ...

    def hessian_diagonal(self, x: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, Array]: ...

    def save(
        self,
        path: str | Path,
        *,
        history: list[dict[str, Any]] | None = ...,
        train_state: dict[str, Any] | None = ...,
    ) -> Path: ...

    @classmethod
    def from_checkpoint(
        cls, meta: dict[str, Any], arrays: dict[str, Array], *, backend: str = ...
    ) -> Model: ...


def sdlm_steps(hessian: Mapping[str, Array], eta: float, mu: float) -> dict[str, Array]:
    """SDLM's step per parameter, ``eps_k = eta / (mu + h_kk)``, from the Hessian diagonal
    (in its dtype)."""
    return {k: (eta / (mu + h)).astype(h.dtype) for k, h in hessian.items()}


def apply_update(
    params: dict[str, Array],
    step: Mapping[str, Array] | float | np.floating[Any],
    grads: Mapping[str, Array],
) -> None:
    """``p -= eps * g`` in place for every parameter: ``step`` is one array per parameter
    (SDLM's ``eps_k``) or one rate for all (SGD's)."""
    for name in params:
        eps = step[name] if isinstance(step, Mapping) else step
        params[name] -= eps * grads[name]


def paper_eta(pass_number: int) -> float:
    """The paper's global SDLM rate for pass ``pass_number`` (1-based)."""
    for last, eta in PAPER_ETA:
        if pass_number <= last:
            return eta
    return PAPER_ETA_AFTER


def sdlm_mu(pass_number: int) -> float:
    """SDLM's mu for pass ``pass_number`` (1-based): 8 in passes 1-2, 0.5 in passes 3-5, the
    paper's 0.02 from pass 6 on.

    The paper uses mu = 0.02 throughout. At the initial weights the Gauss-Newton diagonal
    h_kk of E is below 1e-4 for most parameters under F6 (the small squared weights of the
    initialisation shrink it layer by layer), so eta / (mu + h_kk) is nearly eta / mu =
    0.025 for all of them, and training diverges within 200 patterns (measured: loss
    84 -> 232, 90% error). After a pass or two the h_kk have grown by two to four orders
    of magnitude (medians 1e-2 to 1), and the paper's mu fits from there. So this schedule
    starts gently (in passes 1-2 every rate is at most eta / 8 = 6e-5, about the paper's
    smallest first-pass rate, 7e-5) and reaches 0.02 with pass 6, where eta is 1e-4. The
    test errors it gives, against a constant mu, are in the training documentation.
    """
    for last, mu in MU_SCHEDULE:
        if pass_number <= last:
            return mu
    return PAPER_MU


def evaluate(model: Model, images: npt.ArrayLike, labels: npt.ArrayLike) -> dict[str, Any]:
    """Error rate, confusion matrix (10,10) [true, predicted], misclassified indices, and
    the penalties (N,10) the predictions are the argmin of (for margins, without a second
    pass)."""
    lab = np.asarray(labels).astype(np.int64)
    penalties = model.forward(np.asarray(images))
    pred = penalties.argmin(axis=1).astype(np.int64)
    wrong = np.flatnonzero(pred != lab)
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (lab, pred), 1)
    return {
        "error": wrong.size / max(1, lab.size),
        "errors": int(wrong.size),
        "misclassified": wrong,
        "predicted": pred,
        "confusion": confusion,
        "penalties": penalties,
    }


def reject_curve(
    scores: npt.ArrayLike, wrong: npt.ArrayLike, *, target: float = 0.005
) -> dict[str, Any]:
    """The error-reject curve (the paper's Fig. 10) of a test set: digits rejected lowest
    ``scores`` first (the margin, :meth:`lenet_fast.LeNet5.margin`), and the error on the
    digits kept.

    ``scores`` (N,) and ``wrong`` (N,) bool (True where the prediction is wrong). Returns
    ``reject`` (N+1,), the fraction rejected (0, 1/N, ..., 1); ``error`` (N+1,), the error
    on the rest (0 once nothing is left); ``threshold`` (N+1,), the score below which
    that many are rejected (ties broken toward rejecting the wrong answers last, so the
    figure is not flattered); and ``reject_for_target``: the smallest fraction to reject
    for an error <= ``target`` (default 0.5%, Fig. 10's) on the rest.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    w = np.asarray(wrong, dtype=bool).ravel()
    if s.shape != w.shape:
        raise ValueError(f"wrong: expected shape {s.shape} like scores, got {w.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores: NaN or infinite values")
    n = s.size
    order = np.lexsort((w, s))  # by score; among equal scores the right answers first
    wrong_sorted = w[order]
    kept_wrong = w.sum() - np.concatenate([[0], np.cumsum(wrong_sorted)])
    kept = n - np.arange(n + 1)
    error = np.where(kept > 0, kept_wrong / np.maximum(kept, 1), 0.0)
    ok = np.flatnonzero(error <= target + 1e-12)
    thresholds = np.concatenate([s[order], [np.inf]]) if n else np.array([np.inf])
    return {
        "reject": np.arange(n + 1) / max(n, 1),
        "error": error,
        "threshold": thresholds,
        "reject_for_target": float(ok[0] / max(n, 1)),
    }


Progress = Callable[[int, int, int, dict[str, float]], None]


def train(
    model: Model,
    train_images: npt.ArrayLike,
    train_labels: npt.ArrayLike,
    test_images: npt.ArrayLike | None = None,
    test_labels: npt.ArrayLike | None = None,
    *,
    passes: int = 20,
    optimizer: str = "sdlm",
    distort: bool = False,
    seed: int = 0,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    start_pass: int = 0,
    mu: float | Callable[[int], float] = sdlm_mu,
    hessian_samples: int = 500,
    eta: Callable[[int], float] = paper_eta,
    lr: float = 0.005,
    batch_size: int = 32,
    order: str = "reshuffle",
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` in place and return its history, one dict per pass.

    Parameters
    ----------
    train_images : uint8 (N,28,28)
        MNIST digits (distortions need the raw digits).
    train_labels : int (N,)
    test_images, test_labels : optional
        Evaluated after every pass.
    passes : total passes (20 in the paper).
    optimizer : "sdlm" (one pattern per update) or "sgd" (mini-batches of ``batch_size``
        with rate ``lr`` on the batch-mean loss; 0.005 by default).
    distort : train on the paper's mix: each pass, every pattern is its original with
        probability 1/10, else a fresh random affine distortion of it (60,000 originals +
        540,000 distorted copies, sampled 60,000 per pass). See :func:`lenet_fast.distort.distort`.
    seed : seeds the order, the Hessian samples and the distortions (the model's own seed
        sets the initial weights).
    out : folder for ``checkpoint_PP.npz`` after each pass and ``model.npz`` at the end.
    resume : a checkpoint from a run with the same settings; training continues after its
        pass, and reaches the same weights as an uninterrupted run.
    start_pass : passes already done on ``model`` as it is in memory (no checkpoint):
        training runs passes ``start_pass + 1 .. passes`` with their eta, mu and random
        draws, so ``passes=k + 1, start_pass=k`` after k passes is the next pass of the same
        run (how an incremental caller trains pass by pass). Not with ``resume``.
    mu : SDLM's mu, a number for every pass or a function of the 1-based pass
        (default :func:`sdlm_mu`).
    hessian_samples, eta : the patterns of each Hessian estimate, and the global rate per
        1-based pass (default :func:`paper_eta`).
    order : "fixed" (one random order for every pass, the paper) or "reshuffle" (a new
        order each pass).
    progress : called as ``progress(pass_index, done, total, stats)`` during a pass.
    log : called with one line per pass (e.g. ``print``).

    Each history record has: pass, eta and mu (or lr), train_error (counted on the fly during the
    pass, before each update, as the paper does), test_error, loss (mean over the pass),
    images_per_s, seconds.
    """
    _validate.choice("optimizer", optimizer, OPTIMIZERS)
    _validate.choice("order", order, ORDERS)
    passes = _validate.int_at_least("passes", passes, 1)
    if not (batch_size >= 1 and hessian_samples >= 1 and lr > 0):
        raise ValueError(
            f"batch_size and hessian_samples must be >= 1, lr > 0; got {batch_size}, "
            f"{hessian_samples}, {lr}"
        )
    if callable(mu):
        mus = [_checked_mu(mu, q) for q in range(1, passes + 1)] if optimizer == "sdlm" else []
    else:
        mus = [_constant_mu(mu)] * passes
    images = np.asarray(train_images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"train_images: expected uint8 (N,28,28) digits, got {images.dtype} {images.shape}"
        )
    labels = _validate.labels("train_labels", train_labels, images.shape[0], match="")
    has_test = test_images is not None and test_labels is not None
    x_test = preprocess(np.asarray(test_images)) if has_test else None

    # The settings a resumed run must share with its checkpoint: only those the optimizer
    # uses. SDLM's mu is checked pass by pass against the history (a function of the pass
    # has no name that identifies it).
    config: dict[str, Any] = {
        "optimizer": optimizer,
        "distort": bool(distort),
        "seed": int(seed),
        "order": order,
        "n_train": int(images.shape[0]),
    }
    config.update(
        {"hessian_samples": int(hessian_samples)}
        if optimizer == "sdlm"
        else {"lr": float(lr), "batch_size": int(batch_size)}
    )
    start = _validate.int_at_least("start_pass", start_pass, 0)
    if start >= passes:
        raise ValueError(f"start_pass: expected fewer than passes={passes}, got {start}")
    if resume is not None and start:
        raise ValueError(
            "start_pass: a resumed run starts after its checkpoint's pass; give start_pass "
            "or resume, not both"
        )
    if resume is not None:
        ckpt = type(model).from_checkpoint(*read_checkpoint(resume), backend=model.backend)
        state = ckpt.train_state
        saved = state.get("config", {})
        mismatched = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
        for r in ckpt.history[:passes] if optimizer == "sdlm" else ():
            was, now = r.get("mu"), mus[int(r["pass"]) - 1]
            if was != now:
                mismatched[f"mu of pass {r['pass']}"] = (was, now)
                break
        if mismatched:
            raise ValueError(
                f"resume: {resume} was written with other settings "
                f"(checkpoint vs now: {mismatched})"
            )
        model.options, model.params, model.codes = ckpt.options, ckpt.params, ckpt.codes
        model.history = list(ckpt.history)
        start = int(state["pass"])
        if start >= passes:
            raise ValueError(f"resume: {resume} already has {start} passes; ask for more than that")
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)

    n = images.shape[0]
    fixed_order = np.random.default_rng([seed, 1 << 20]).permutation(n)
    x_orig = None if distort else preprocess(images)
    for p in range(start, passes):
        rng = np.random.default_rng([seed, p])
        perm = fixed_order if order == "fixed" else rng.permutation(n)
        x = _distorted_pass(images, rng) if x_orig is None else x_orig
        t0 = time.perf_counter()
        if optimizer == "sdlm":
            rate, mu_p = eta(p + 1), mus[p]
            hidx = rng.choice(n, size=min(hessian_samples, n), replace=False)
            h = model.hessian_diagonal(x[hidx], labels[hidx])
            steps = sdlm_steps(h, rate, mu_p)
            loss_sum, train_err = sdlm_pass(
                model,
                x,
                labels,
                perm,
                steps,
                fused=model.backend == "fast",
                progress=_pass_progress(progress, p),
            )
            loss = loss_sum / n
        else:
            rate = lr
            loss, train_err = _sgd_pass(model, x, labels, perm, lr, batch_size, p, progress)
        seconds = time.perf_counter() - t0
        record: dict[str, Any] = {
            "pass": p + 1,
            ("eta" if optimizer == "sdlm" else "lr"): rate,
            **({"mu": mu_p} if optimizer == "sdlm" else {}),
            "train_error": train_err / n,
            "loss": loss,
            "images_per_s": n / seconds,
            "seconds": seconds,
        }
        if x_test is not None:
            record["test_error"] = float(np.mean(model.predict(x_test) != np.asarray(test_labels)))
        model.history.append(record)
        model.train_state = {"pass": p + 1, "config": config}
        if out_dir is not None:
            model.save(
                out_dir / f"checkpoint_{p + 1:02d}.npz",
                history=model.history,
                train_state=model.train_state,
            )
        if log is not None:
            log(format_record(record, passes))
    if out_dir is not None:
        model.save(out_dir / "model.npz", history=model.history, train_state=model.train_state)
    return model.history


def _constant_mu(mu: Any) -> float:
    return _validate.finite_number("mu", mu, what="a number > 0 or a function of the pass")


def _checked_mu(mu_of: Callable[[int], float], pass_number: int) -> float:
    try:
        value = mu_of(pass_number)
    except TypeError as e:
        raise TypeError(f"mu: calling it with the pass number ({pass_number}) failed: {e}") from e
    if not _validate.is_number(value):
        raise TypeError(
            f"mu: the function returned {value!r} for pass {pass_number}, expected a number"
        )
    value = float(value)
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(
            f"mu: the function returned {value} for pass {pass_number}, expected a finite number > 0"
        )
    return value


def format_record(r: dict[str, Any], passes: int) -> str:
    """One progress line per pass."""
    rate = f"eta {r['eta']:.0e}" if "eta" in r else f"lr {r['lr']:.3g}"
    if "mu" in r:
        rate += f"  mu {r['mu']:g}"
    test = f"test error {100 * r['test_error']:5.2f}%  " if "test_error" in r else ""
    return (
        f"pass {r['pass']:2d}/{passes}  {rate}  loss {r['loss']:.4f}  "
        f"train error {100 * r['train_error']:5.2f}%  {test}"
        f"{r['images_per_s']:,.0f} images/s  {r['seconds']:.1f} s"
    )


def _distorted_pass(
    images: npt.NDArray[np.uint8], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """The pass's patterns: each original with probability 1/10, else a fresh distortion."""
    keep = rng.random(images.shape[0]) < 0.1
    out = distort_images(images, rng)
    out[keep] = images[keep]
    return preprocess(out)


PatternProgress = Callable[[int, int, dict[str, float]], None]


def _pass_progress(progress: Progress | None, p: int) -> PatternProgress | None:
    if progress is None:
        return None
    return lambda done, total, stats: progress(p, done, total, stats)


def sdlm_pass(
    model: Model,
    x: Array,
    labels: npt.NDArray[np.integer[Any]],
    order: npt.NDArray[np.integer[Any]],
    steps: Mapping[str, Array],
    *,
    fused: bool = True,
    progress: PatternProgress | None = None,
) -> tuple[float, int]:
    """Train ``model`` in place on ``x[order[0]], x[order[1]], ...``, one pattern per
    update: ``w_k -= steps[k] * dE/dw_k`` (SDLM's ``eps_k``, see :func:`sdlm_steps`).

    ``x``: preprocessed input (N,1,32,32) in the model's dtype; ``labels``: int (N,);
    ``order``: int (P,) indices into ``x``; ``steps``: arrays named and shaped as
    ``model.params``. ``fused`` runs the patterns in one C++ call
    (:func:`lenet_fast.network.sdlm_pass`; needs ``backend="fast"``), else a Python loop of
    :meth:`~lenet_fast.LeNet5.gradients` at batch 1 and :func:`apply_update`; with the fast
    backend both give the same bits. ``progress(done, P, stats)`` (optional) is called
    after the patterns ``0, every, 2 every, ...`` (0-based, ``every = max(1, P // 100)``)
    with the running mean ``loss`` and ``train_error``; the fused pass runs in chunks that
    end there.

    Returns ``(sum of the P per-pattern losses, patterns misclassified before their
    update)``.
    """
    if not all(hasattr(model, a) for a in ("params", "options", "backend", "codes")):
        raise TypeError(f"model: expected a LeNet5, got {type(model).__name__}")
    order = np.asarray(order)
    total_loss, errors, n = 0.0, 0, order.size
    every = max(1, n // 100)
    if fused:
        if model.backend != "fast":
            raise ValueError(f"model: the fused pass needs backend='fast', got {model.backend!r}")
        fixed = None if RBF_PARAM in model.params else model.codes
        start = 0
        for done in range(0, n, every) if progress is not None else ():
            loss, err = network.sdlm_pass(
                model.params,
                steps,
                x,
                labels,
                order[start : done + 1],
                options=model.options,
                centres=fixed,
            )
            total_loss, errors, start = total_loss + loss, errors + err, done + 1
            if progress is not None:  # always, in this loop
                progress(
                    done, n, {"loss": total_loss / (done + 1), "train_error": errors / (done + 1)}
                )
        if start < n:
            loss, err = network.sdlm_pass(
                model.params, steps, x, labels, order[start:], options=model.options, centres=fixed
            )
            total_loss, errors = total_loss + loss, errors + err
        return total_loss, errors
    if set(steps) != set(model.params):
        raise ValueError(f"steps: expected the names {sorted(model.params)}, got {sorted(steps)}")
    for done, (loss, err) in enumerate(_python_patterns(model, x, labels, order, steps)):
        total_loss += loss
        errors += err
        if progress is not None and done % every == 0:
            progress(done, n, {"loss": total_loss / (done + 1), "train_error": errors / (done + 1)})
    return total_loss, errors


def _python_patterns(
    model: Model,
    x: Array,
    labels: npt.NDArray[np.integer[Any]],
    order: npt.NDArray[np.integer[Any]],
    steps: Mapping[str, Array],
) -> Iterator[tuple[float, int]]:
    """The per-pattern loop: update on each pattern, yield (its loss, 1 if it was wrong)."""
    for i in order:
        loss, g, y = model.gradients(x[i : i + 1], labels[i : i + 1])
        wrong = int(y[0].argmin() != labels[i])
        apply_update(model.params, steps, g)
        yield loss, wrong


def _sgd_pass(
    model: Model,
    x: np.ndarray,
    labels: np.ndarray,
    perm: np.ndarray,
    lr: float,
    batch_size: int,
    p: int,
    progress: Progress | None,
) -> tuple[float, int]:
    """Mini-batch SGD on the batch-mean loss. Returns (mean loss, errors)."""
    params = model.params
    total_loss, errors, n = 0.0, 0, perm.size
    rate = model.dtype.type(lr)
    for b0 in range(0, n, batch_size):
        idx = perm[b0 : b0 + batch_size]
        lb = labels[idx]
        loss, g, y = model.gradients(x[idx], lb)
        total_loss += loss * idx.size
        errors += int(np.sum(y.argmin(axis=1) != lb))
        apply_update(params, rate, g)
        if progress is not None:
            progress(
                p,
                min(n, b0 + batch_size),
                n,
                {
                    "loss": total_loss / min(n, b0 + batch_size),
                    "train_error": errors / min(n, b0 + batch_size),
                },
            )
    return total_loss / n, errors
