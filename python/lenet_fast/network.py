"""The Python face of the fused C++ network (``csrc/network.h``): arrays in, arrays out.

Each function is one call into ``_core`` that runs the whole network with the GIL
released: :func:`forward` (the penalties of a batch, threads over the images),
:func:`gradients` (the loss, its gradient for every parameter and the penalties of a batch,
threads over blocks of 8 images) and :func:`sdlm_pass` (SDLM's per-pattern loop: forward,
error count, loss, backward and ``p -= eps * g`` for every parameter, one pattern per
update). The results do not depend on the thread count.

``params`` maps the names of :data:`lenet_fast.layout.PARAM_SHAPES` to C-contiguous float32
arrays of their shapes; trainable RBF centres are ``params["rbf.c"]``, and fixed ones are
passed as ``centres``. ``options`` holds the network's settings as
:attr:`lenet_fast.LeNet5.options` does: ``subsample`` ("sum" or "mean"), and for training
``loss`` ("mse" or "map"), ``loss_scale`` and ``map_j``; other keys are ignored. Arguments
are checked in C++, and a bad one raises TypeError or ValueError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core, tables
from .layout import RBF_PARAM

__all__ = ["forward", "gradients", "sdlm_pass"]

F32 = npt.NDArray[np.float32]


def _centres(params: Mapping[str, F32], centres: F32 | None) -> tuple[F32, bool]:
    """The centres to use and whether they are a parameter (trained)."""
    if RBF_PARAM in params:
        if centres is not None:
            raise ValueError(
                f"centres: params holds trainable centres ({RBF_PARAM!r}); pass "
                "centres only for fixed ones"
            )
        return params[RBF_PARAM], True
    if centres is None:
        raise ValueError(
            f"centres: expected the fixed (10,84) RBF centres when params has no {RBF_PARAM!r}"
        )
    return centres, False


def _layers(params: Mapping[str, F32]) -> dict[str, F32]:
    """The arrays of the layers under the RBF (the C++ side checks names and shapes)."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params: expected a dict of arrays by parameter name, got {type(params).__name__}"
        )
    return {k: v for k, v in params.items() if k != RBF_PARAM}


def forward(
    params: Mapping[str, F32], x: F32, *, options: Mapping[str, Any], centres: F32 | None = None
) -> F32:
    """The RBF penalties (N,10) of preprocessed input ``x`` (N,1,32,32) float32.

    The same kernels in the same order as the per-layer path (:mod:`lenet_fast.kernels`),
    so the same bits, image by image."""
    c, trained = _centres(params, centres)
    # without trainable centres params is the layers' dict already: no copy per call
    layers = _layers(params) if trained or not isinstance(params, dict) else params
    return _core.network_forward(layers, c, x, tables.C3_TABLE, options["subsample"])


def gradients(
    params: Mapping[str, F32],
    x: F32,
    labels: npt.NDArray[np.integer[Any]],
    *,
    options: Mapping[str, Any],
    centres: F32 | None = None,
) -> tuple[float, dict[str, F32], F32]:
    """Loss, gradients and penalties of a batch of N >= 1 patterns.

    Returns ``(loss, grads, y)``: the batch mean of ``loss_scale`` times the loss, its
    gradient for every parameter (new arrays named and shaped as ``params``, ``"rbf.c"``
    included when the centres are a parameter) and the penalties y (N,10)."""
    c, trained = _centres(params, centres)
    loss_sum, _, g, y = _core.network_gradients(
        _layers(params),
        c,
        x,
        labels,
        tables.C3_TABLE,
        options["loss"],
        options["loss_scale"],
        options["map_j"],
        options["subsample"],
        trained,
    )
    return loss_sum / x.shape[0], g, y


def sdlm_pass(
    params: Mapping[str, F32],
    steps: Mapping[str, F32],
    x: F32,
    labels: npt.ArrayLike,
    order: npt.ArrayLike,
    *,
    options: Mapping[str, Any],
    centres: F32 | None = None,
) -> tuple[float, int]:
    """Train ``params`` in place on the patterns ``x[order[0]], x[order[1]], ...``, one
    pattern per update: ``params[k] -= steps[k] * dE/dparams[k]`` (SDLM's ``eps_k``).

    ``steps``: float32 arrays with the names and shapes of ``params``; ``labels``: int (N,)
    digits 0..9; ``order``: int (P,) indices into ``x``, visited in this order. Returns
    ``(sum of the P per-pattern losses, number of patterns misclassified before their
    update)``. Do not touch ``params`` from another thread during the pass."""
    layers = _layers(params)
    if not isinstance(steps, Mapping):
        raise TypeError(
            f"steps: expected a dict of arrays by parameter name, got {type(steps).__name__}"
        )
    if set(steps) != set(params):
        raise ValueError(f"steps: expected the names {sorted(params)}, got {sorted(steps)}")
    c, trained = _centres(params, centres)
    loss_sum, errors = _core.sdlm_pass(
        layers,
        _layers(steps),
        c,
        steps[RBF_PARAM] if trained else None,
        x,
        np.asarray(labels),
        np.asarray(order),
        tables.C3_TABLE,
        options["loss"],
        float(options["loss_scale"]),
        float(options["map_j"]),
        options["subsample"],
    )
    return float(loss_sum), int(errors)
