"""Figures of a training run (needs the ``plot`` extra: matplotlib).

* :func:`plot_curves`: train and test error per pass, the paper's Fig. 5.
* :func:`plot_misclassified`: a sheet of the misclassified test digits with their true and
  predicted labels, the paper's Fig. 8.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ._files import atomic_write


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'lenet_fast[plot]'") from e
    return plt


def plot_curves(history: list[dict[str, Any]], path: str | Path) -> Path:
    """Train error (on the fly) and test error, in percent, per pass; written as PNG."""
    plt = _pyplot()
    passes = [r["pass"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(passes, [100 * r["train_error"] for r in history], "o-", label="training set error")
    if all("test_error" in r for r in history):
        ax.plot(passes, [100 * r["test_error"] for r in history], "s-", label="test set error")
    ax.set_xlabel("training pass")
    ax.set_ylabel("error rate (%)")
    ax.set_title("LeNet-5 on MNIST (cf. LeCun et al. 1998, Fig. 5)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return path


def plot_misclassified(
    images: np.ndarray,
    labels: np.ndarray,
    predicted: np.ndarray,
    indices: np.ndarray,
    path: str | Path,
    columns: int = 12,
) -> Path:
    """Misclassified digits, each titled 'true->predicted'; written as PNG."""
    plt = _pyplot()
    idx = np.asarray(indices)
    rows = max(1, math.ceil(idx.size / columns))
    fig, axes = plt.subplots(
        rows, columns, figsize=(columns * 0.8, rows * 0.95), dpi=120, squeeze=False
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), idx):
        ax.imshow(images[i], cmap="gray_r", vmin=0, vmax=255)
        ax.set_title(f"{labels[i]}->{predicted[i]}", fontsize=7)
    fig.suptitle(f"{idx.size} misclassified test digits (true->predicted; cf. Fig. 8)", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return path


def plot_reject_curve(
    curve: dict[str, Any], path: str | Path, *, label: str = "LeNet-5", target: float = 0.005
) -> Path:
    """The error-reject curve of :func:`lenet_fast.train.reject_curve` (cf. the paper's
    Fig. 10): error on the digits kept against the share rejected, lowest margin first,
    with the ``target`` error marked; written as PNG."""
    plt = _pyplot()
    reject, error = np.asarray(curve["reject"]), np.asarray(curve["error"])
    keep = reject <= 0.1  # the part the figure is about: up to 10% rejected
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(100 * reject[keep], 100 * error[keep], "-", label=label)
    ax.axhline(100 * target, color="grey", lw=0.8, ls="--", label=f"{100 * target:g}% error")
    r = curve["reject_for_target"]
    ax.plot([100 * r], [100 * target], "o", label=f"{100 * r:.2f}% rejected")
    ax.set_xlabel("test digits rejected, lowest margin first (%)")
    ax.set_ylabel("error on the rest (%)")
    ax.set_title("Error-reject curve (cf. LeCun et al. 1998, Fig. 10)")
    ax.legend()
    fig.tight_layout()
    out = Path(path)
    atomic_write(out, lambda f: fig.savefig(f, format="png"))
    plt.close(fig)
    return out
