"""Validate before timing: the checks every benchmark runs against ``lenet_fast.reference``
in float64 before it times anything. A check that fails raises :class:`ValidationError`;
one that passes returns its worst |error| / tolerance (<= 1)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from lenet_fast import LeNet5
from lenet_fast.train import sdlm_pass

Arrays = dict[str, npt.NDArray[Any]]

#: Kernels: ``np.allclose(got, want, rtol=RTOL, atol=ATOL_REL * max(1, max|want|))``.
RTOL = 1e-4
ATOL_REL = 1e-4
#: Whole network: |y - y_ref| <= FORWARD_TOL * max(1, max|y_ref|).
FORWARD_TOL = 1e-4
#: |g - g_ref| <= GRAD_TOL * max|g_ref|, per parameter array.
GRAD_TOL = 1e-4
#: |dp - dp_ref| <= UPDATE_TOL * max|dp_ref| per parameter array, plus float32 rounding.
UPDATE_TOL = 5e-4
#: The fused SDLM pass against the Python loop: 1e-6 of each array's largest weight.
FUSED_TOL = 1e-6


class ValidationError(Exception):
    """An implementation disagrees with the reference: nothing of it may be timed."""


def check_close(what: str, got: tuple[Any, ...], want: tuple[Any, ...]) -> float:
    """Kernel outputs: shape, float32, finite and allclose to the float64 reference."""
    if len(got) != len(want):
        raise ValidationError(f"{what}: {len(got)} outputs, reference gives {len(want)}")
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        if g.shape != w.shape:
            raise ValidationError(f"{what}: output {i} has shape {g.shape}, reference {w.shape}")
        if g.dtype != np.float32:
            raise ValidationError(f"{what}: output {i} has dtype {g.dtype}, expected float32")
        atol = ATOL_REL * max(1.0, float(np.abs(w).max(initial=0.0)))
        err = np.abs(g.astype(np.float64) - w)
        tol = atol + RTOL * np.abs(w)
        if not np.all(np.isfinite(g)) or not np.allclose(g, w, rtol=RTOL, atol=atol):
            ratio = np.where(np.isfinite(err), err / tol, np.inf)
            j = np.unravel_index(int(np.nanargmax(ratio)), err.shape)
            raise ValidationError(
                f"{what}: output {i} (shape {w.shape}) disagrees with lenet_fast.reference: "
                f"at index {tuple(int(v) for v in j)} got {float(g[j])!r}, want "
                f"{float(w[j])!r}; max |err| {float(np.nanmax(err)):.3g} > rtol {RTOL:g} / "
                f"atol {atol:.3g}"
            )
        worst = max(worst, float((err / tol).max(initial=0.0)))
    return worst


def check_forward(what: str, got: Any, want: npt.NDArray[np.float64]) -> float:
    """Network outputs (N,10) against the float64 reference's."""
    g = np.asarray(got)
    if g.shape != want.shape:
        raise ValidationError(f"{what}: output shape {g.shape}, reference {want.shape}")
    tol = FORWARD_TOL * max(1.0, float(np.abs(want).max(initial=0.0)))
    err = np.abs(g.astype(np.float64) - want)
    if not np.all(np.isfinite(g)) or not err.max(initial=0.0) <= tol:
        j = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), err.shape)
        raise ValidationError(
            f"{what}: disagrees with the float64 reference at {tuple(map(int, j))}: "
            f"got {float(g[j])!r}, want {float(want[j])!r} (tolerance {tol:.3g})"
        )
    return float(err.max(initial=0.0) / tol)


def check_gradients(what: str, got: Mapping[str, Any], want: Mapping[str, Any]) -> float:
    """Every gradient within GRAD_TOL of its array's largest |entry| of the reference's."""
    if set(got) != set(want):
        raise ValidationError(f"{what}: gradients of {sorted(got)}, reference {sorted(want)}")
    worst = 0.0
    for k, w in want.items():
        g = np.asarray(got[k], dtype=np.float64)
        if g.shape != w.shape:
            raise ValidationError(
                f"{what}: gradient of {k} has shape {g.shape}, reference {w.shape}"
            )
        tol = GRAD_TOL * max(float(np.abs(w).max(initial=0.0)), 1e-30)
        err = float(np.abs(g - w).max(initial=0.0)) if np.all(np.isfinite(g)) else math.inf
        if not err <= tol:
            raise ValidationError(
                f"{what}: the gradient of {k} disagrees with the float64 "
                f"reference: max |err| {err:.3g} > tolerance {tol:.3g}"
            )
        worst = max(worst, err / tol)
    return worst


def check_update(
    what: str,
    start: Mapping[str, Any],
    after: Mapping[str, Any],
    want: Mapping[str, Any],
    steps: int,
) -> float:
    """Each parameter's change (after - start, in float64) against the reference's change.

    Tolerance per array: UPDATE_TOL * max|want| plus the float32 rounding of storing the
    parameters after each of ``steps`` updates (half an ulp of the largest |parameter|)."""
    if set(after) != set(want):
        raise ValidationError(f"{what}: parameters {sorted(after)}, reference {sorted(want)}")
    worst = 0.0
    for k, w in want.items():
        d = np.asarray(after[k], dtype=np.float64) - start[k].astype(np.float64)
        if d.shape != w.shape:
            raise ValidationError(f"{what}: {k} has shape {d.shape}, reference {w.shape}")
        big = float(np.abs(start[k]).max(initial=0.0)) + float(np.abs(w).max(initial=0.0))
        tol = UPDATE_TOL * float(np.abs(w).max(initial=0.0)) + steps * 0.5 * float(
            np.spacing(np.float32(big))
        )
        err = float(np.abs(d - w).max(initial=0.0)) if np.all(np.isfinite(d)) else math.inf
        if not err <= tol:
            raise ValidationError(
                f"{what}: the update of {k} disagrees with the float64 reference: "
                f"max |err| {err:.3g} > tolerance {tol:.3g} (max |update| "
                f"{float(np.abs(w).max()):.3g})"
            )
        worst = max(worst, err / tol if tol > 0 else 0.0)
    return worst


class Truth:
    """The float64 NumPy reference of a model (``LeNet5(backend="reference")`` in float64,
    from the same float32 weights): its outputs, gradients and parameter updates."""

    def __init__(self, model: LeNet5) -> None:
        m = model.copy()
        m.backend = "reference"
        self.model = m.astype(np.float64)

    def forward(self, x: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return np.asarray(self.model.forward(x.astype(np.float64)))

    def gradients(self, x: npt.NDArray[Any], labels: npt.NDArray[Any]) -> Arrays:
        return self.model.gradients(x.astype(np.float64), labels)[1]

    def sgd_delta(self, x: npt.NDArray[Any], labels: npt.NDArray[Any], lr: float) -> Arrays:
        rate = np.float64(np.float32(lr))
        return {k: -rate * v for k, v in self.gradients(x, labels).items()}

    def sdlm_delta(
        self, x: npt.NDArray[Any], labels: npt.NDArray[Any], steps: Mapping[str, Any]
    ) -> Arrays:
        m = self.model.copy()
        start = {k: v.copy() for k, v in m.params.items()}
        for i in range(x.shape[0]):
            _, g, _ = m.gradients(x[i : i + 1].astype(np.float64), labels[i : i + 1])
            for k in m.params:
                m.params[k] -= steps[k].astype(np.float64) * g[k]
        return {k: m.params[k] - start[k] for k in start}


def check_fused_vs_loop(
    model: LeNet5,
    steps: Mapping[str, Any],
    x: npt.NDArray[Any],
    labels: npt.NDArray[Any],
    n: int,
) -> dict[str, Any]:
    """The fused C++ SDLM pass against the Python loop of ``model.gradients`` on ``n``
    patterns: the same parameters (bit for bit in practice; within FUSED_TOL required)."""
    fused, loop = model.copy(), model.copy()
    order = np.arange(n)
    sdlm_pass(fused, x, labels, order, steps, fused=True)
    sdlm_pass(loop, x, labels, order, steps, fused=False)
    worst = 0.0
    for k in loop.params:
        a, b = fused.params[k].astype(np.float64), loop.params[k].astype(np.float64)
        scale = max(float(np.abs(b).max()), 1e-30)
        err = float(np.abs(a - b).max())
        if not err <= FUSED_TOL * scale:
            raise ValidationError(
                f"the fused SDLM pass disagrees with the Python loop on {n} patterns: "
                f"{k} max |err| {err:.3g} > {FUSED_TOL:g} x {scale:.3g}"
            )
        worst = max(worst, err / (FUSED_TOL * scale))
    bitwise = all(np.array_equal(fused.params[k], loop.params[k]) for k in loop.params)
    return {
        "impl": "lenet_fast",
        "case": "train:1 fused vs loop",
        "kind": "fused",
        "checked": f"fused SDLM pass vs Python loop of model.gradients, {n} patterns"
        + (" (bitwise equal)" if bitwise else ""),
        "worst_err_over_tol": worst,
    }
