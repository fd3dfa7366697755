"""The lenet_fast names the benchmarks use that are new in the package, each with a fallback
to the older name, in this one file.

Every benchmark imports these names from here and nothing private from lenet_fast. When the
package has them all, each fallback below can go and the name be imported directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from lenet_fast import LeNet5

# the module (lenet_fast.train, the name, is the function that trains)
_train = importlib.import_module("lenet_fast.train")

try:
    from lenet_fast.layout import MACS_PER_IMAGE, PARAM_SHAPES, RBF_PARAM
except ImportError:  # older package: the shapes live in model.py, the counts nowhere
    from lenet_fast.model import PARAM_SHAPES, RBF_PARAM  # type: ignore[no-redef]

    #: Multiply-adds per image with the sparse C3 (60 kernels), inference and training step.
    MACS_PER_IMAGE = {"infer": 328_096, "train": 865_848}  # type: ignore[misc]

__all__ = ["MACS_PER_IMAGE", "PARAM_SHAPES", "RBF_PARAM", "centres", "sdlm_pass", "sdlm_steps"]

Arrays = dict[str, npt.NDArray[Any]]


def centres(model: LeNet5) -> npt.NDArray[np.float32]:
    """The (10,84) RBF centres the model uses (its trainable parameter or its fixed codes)."""
    if hasattr(type(model), "centres"):
        return np.asarray(getattr(model, "centres"), dtype=np.float32)  # noqa: B009
    return np.asarray(model._centres(), dtype=np.float32)


def sdlm_pass(
    model: LeNet5,
    x: npt.NDArray[np.float32],
    labels: npt.NDArray[Any],
    order: npt.NDArray[Any],
    steps: Mapping[str, npt.NDArray[Any]],
    *,
    fused: bool = True,
) -> tuple[float, int]:
    """One SDLM pass in place over ``x[order]``, one pattern per update, as training runs it:
    the fused C++ pass (``fused=True``) or the Python loop of ``model.gradients``. Returns
    (sum of the per-pattern losses, errors)."""
    public = getattr(_train, "sdlm_pass", None)
    if public is not None:
        loss_sum, errors = public(model, x, labels, order, dict(steps), fused=fused)
        return float(loss_sum), int(errors)
    order = np.asarray(order)
    mean, errors = _train._sdlm_pass(model, x, labels, order, dict(steps), 0, None, fused=fused)
    return float(mean) * order.size, int(errors)


def sdlm_steps(hessian: Mapping[str, npt.NDArray[Any]], eta: float, mu: float) -> Arrays:
    """SDLM's step sizes ``eta / (mu + h_kk)`` per parameter array, as float32."""
    public = getattr(_train, "sdlm_steps", None)
    if public is not None:
        return {k: np.asarray(v, dtype=np.float32) for k, v in public(hessian, eta, mu).items()}
    return {k: (eta / (mu + v)).astype(np.float32) for k, v in hessian.items()}
