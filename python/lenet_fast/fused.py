"""One SDLM pass in a single C++ call: the per-pattern loop of :mod:`lenet_fast.train`
(forward, error count, loss, backward, ``p -= eps * grad`` for every parameter) without a
Python round trip per pattern.

It gives the bits of the Python loop with the fast backend (per pattern the same C++
forward and backward as :meth:`LeNet5.gradients` at batch 1, then the same update)
several times faster; Python keeps the orchestration (Hessian estimate, steps, order,
progress, checkpoints).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core, tables
from .layout import PARAM_SHAPES, RBF_PARAM
from .model import LeNet5

__all__ = ["sdlm_pass"]


def sdlm_pass(
    model: LeNet5,
    x: npt.NDArray[np.float32],
    labels: npt.ArrayLike,
    order: npt.ArrayLike,
    steps: dict[str, npt.NDArray[np.float32]],
) -> tuple[float, int]:
    """Train ``model`` in place on the patterns ``x[order[0]], x[order[1]], ...``, one
    pattern per update: ``w_k -= steps[k] * dE/dw_k`` (SDLM's ``eps_k``).

    Parameters
    ----------
    model : LeNet5 with ``backend="fast"`` (float32 parameters); its options (loss,
        loss_scale, map_j, subsample, rbf) are honoured.
    x : float32 (N,1,32,32), preprocessed input (:meth:`LeNet5.prepare`).
    labels : int (N,), digits 0..9.
    order : int (P,), indices into ``x``; the pass visits them in this order.
    steps : float32 arrays with the names and shapes of ``model.params``.

    Returns ``(sum of the P per-pattern losses, number of patterns misclassified before
    their update)``. The GIL is released during the pass; do not touch ``model.params``
    from another thread meanwhile.
    """
    if not isinstance(model, LeNet5):
        raise TypeError(f"model: expected a LeNet5, got {type(model).__name__}")
    if model.backend != "fast":
        raise ValueError(f"model: the fused pass needs backend='fast', got {model.backend!r}")
    if not isinstance(steps, dict):
        raise TypeError(f"steps: expected a dict of arrays by parameter name, got {type(steps).__name__}")
    opts: dict[str, Any] = model.options
    p = model.params
    train_rbf = RBF_PARAM in p
    if set(steps) != set(p):
        raise ValueError(f"steps: expected the names {sorted(p)}, got {sorted(steps)}")
    names = list(PARAM_SHAPES)
    loss_sum, errors = _core.sdlm_pass(
        {k: p[k] for k in names},
        {k: steps[k] for k in names},
        p[RBF_PARAM] if train_rbf else model.codes,
        steps[RBF_PARAM] if train_rbf else None,
        x,
        np.asarray(labels),
        np.asarray(order),
        tables.C3_TABLE,
        opts["loss"],
        float(opts["loss_scale"]),
        float(opts["map_j"]),
        opts["subsample"],
    )
    return float(loss_sum), int(errors)
