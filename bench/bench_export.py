#!/usr/bin/env python
"""How closely ONNX Runtime, on the exported graph, follows the model on MNIST's 10,000
test digits: labels that agree, and the largest differences of the penalties and of
Eq. 9's posterior.

    python bench/bench_export.py [--data DIR] [--json PATH]

The models: both shipped ones, and two moved off their initialisation (every parameter
plus 0.05 x a normal draw, seed 3; tests/conftest.py's moved_model), one with trainable RBF
centres and one with subsample="sum". Each is exported at the default opset, float32
input, and run by ONNX Runtime's CPU provider on one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from lenet_fast import LeNet5, load_mnist


def moved(seed: int = 3, **config: Any) -> LeNet5:
    m = LeNet5(seed=seed, **config)
    rng = np.random.default_rng(seed)
    for a in m.params.values():
        a += (0.05 * rng.standard_normal(a.shape)).astype(np.float32)
    return m


def agreement(model: LeNet5, te_x: np.ndarray, folder: Path) -> dict[str, Any]:
    import onnxruntime as ort

    path = model.to_onnx(folder / "m.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = model.prepare(te_x)
    outs = [sess.run(None, {"x": x[i : i + 2000]}) for i in range(0, len(x), 2000)]
    pen, label, proba = (np.concatenate([o[k] for o in outs]) for k in range(3))
    want = model.forward(te_x)
    diff = np.abs(pen.astype(np.float64) - want)
    return {
        "digits": len(te_x),
        "labels_agree": int((label == model.predict(te_x)).sum()),
        "max_abs_penalty_diff": float(diff.max()),
        "max_rel_penalty_diff": float((diff / np.maximum(np.abs(want), 1e-30)).max()),
        "max_abs_proba_diff": float(np.abs(proba - model.predict_proba(te_x)).max()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="MNIST folder (default $LENET_FAST_DATA)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    a = ap.parse_args(argv)
    te_x = load_mnist(a.data)[2]
    models = {
        "mnist": LeNet5.pretrained("mnist"),
        "mnist-distorted": LeNet5.pretrained("mnist-distorted"),
        "trainable-rbf (moved)": moved(rbf="trainable"),
        "subsample-sum (moved)": moved(subsample="sum"),
    }
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in models.items():
            rows[name] = agreement(model, te_x, Path(tmp))
    print(
        f"{'model':24s} {'labels agree':>14s} {'max |dpen|':>11s} {'max rel':>9s} {'max |dP|':>9s}"
    )
    for name, r in rows.items():
        print(
            f"{name:24s} {r['labels_agree']:>7,}/{r['digits']:<6,} "
            f"{r['max_abs_penalty_diff']:11.2e} {r['max_rel_penalty_diff']:9.2e} "
            f"{r['max_abs_proba_diff']:9.2e}"
        )
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
