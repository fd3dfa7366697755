#!/usr/bin/env python
"""The shipped models on the MNIST test set: test error, the error-reject figures, and the
test error after MNIST's normalisation is redone on transformed digits.

    python bench/bench_pretrained.py [--data DIR] [--json PATH]

For each shipped model (``LeNet5.pretrained``):

* the test error, Fig. 10's figure (the share of test digits to reject, lowest margin
  first, for 0.5% error on the rest) and the share ``reject="auto"`` rejects;
* the test error when every test digit is first transformed and then brought back by
  :func:`lenet_fast.image.normalize_digits` (``invert="auto"``): as it is (MNIST's digits
  are normalised already), enlarged 2x and 3x (pixel replication), shrunk by half (2x2
  means), placed off centre on a 64x64 canvas, inverted to dark ink on white, all of
  these at once (3x, on a 120x120 page, dark on white), and 3x on grey paper with noise;
* the share of non-digits rejected by ``reject="auto"``: blank pages, uniform noise and
  simple shapes (rings, squares).

The summary goes to ``--json`` (default bench/results/pretrained.json), rendered into the
README by bench/render_tables.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.facts import machine_facts
from harness.output import SCHEMA, default_json, write_json

Transform = Callable[[np.ndarray], Any]


def enlarge(k: int) -> Transform:
    return lambda x: np.kron(x, np.ones((1, k, k), np.uint8))


def shrink(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).round().astype(np.uint8)


def on_canvas(x: np.ndarray, size: int = 64, at: tuple[int, int] = (5, 29)) -> np.ndarray:
    out = np.zeros((x.shape[0], size, size), np.uint8)
    out[:, at[0] : at[0] + x.shape[1], at[1] : at[1] + x.shape[2]] = x
    return out


def invert(x: np.ndarray) -> np.ndarray:
    return 255 - x


def paper(x: np.ndarray) -> np.ndarray:
    """Dark ink (up to 190 levels) on paper of level 225 with Gaussian noise (sd 3)."""
    noise = np.random.default_rng(0).normal(0, 3, x.shape)
    return np.clip(225 - 190 / 255 * x + noise, 0, 255).astype(np.uint8)


TRANSFORMS: dict[str, Transform] = {
    "as is": lambda x: x,
    "enlarged 2x": enlarge(2),
    "enlarged 3x": enlarge(3),
    "shrunk by half": shrink,
    "off centre on 64x64": on_canvas,
    "dark on white": invert,
    "3x, on a 120x120 page, dark on white": lambda x: invert(
        on_canvas(enlarge(3)(x), 120, (7, 30))
    ),
    "3x, on grey paper with noise": lambda x: paper(on_canvas(enlarge(3)(x), 120, (7, 30))),
}


def non_digits(rng: np.random.Generator) -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[:28, :28]
    shapes = []
    for i in range(300):
        r = rng.uniform(4, 10)
        cx, cy = rng.uniform(10, 18, 2)
        if i % 2:
            img = np.abs(np.hypot(xx - cx, yy - cy) - r) < 1.5
        else:
            img = np.maximum(abs(xx - cx), abs(yy - cy)) < r
        shapes.append(img.astype(np.uint8) * 255)
    return {
        "blank": np.zeros((100, 28, 28), np.uint8),
        "uniform noise": rng.integers(0, 256, (1000, 28, 28)).astype(np.uint8),
        "rings and squares": np.array(shapes),
    }


def measure(name: str, te_x: np.ndarray, te_y: np.ndarray) -> dict[str, Any]:
    from lenet_fast import LeNet5
    from lenet_fast.image import normalize_digits
    from lenet_fast.train import reject_curve

    model = LeNet5.pretrained(name)
    pred = model.predict(te_x)
    curve = reject_curve(model.margin(te_x), pred != te_y)
    out: dict[str, Any] = {
        "model": name,
        "test_error": float(np.mean(pred != te_y)),
        "reject_for_half_percent_error": curve["reject_for_target"],
        "auto_rejects_test": float(np.mean(model.predict(te_x, reject="auto") < 0)),
        "renormalised_test_error": {},
        "auto_rejects_non_digits": {},
    }
    for label, transform in TRANSFORMS.items():
        digits, ink = normalize_digits(transform(te_x), invert="auto")
        p = model.predict(digits)
        p[~ink] = -1
        out["renormalised_test_error"][label] = float(np.mean(p != te_y))
    for label, x in non_digits(np.random.default_rng(0)).items():
        out["auto_rejects_non_digits"][label] = float(np.mean(model.predict(x, reject="auto") < 0))
    print(
        f"{name}: test error {100 * out['test_error']:.2f}%, "
        + ", ".join(f"{k} {100 * v:.2f}%" for k, v in out["renormalised_test_error"].items()),
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("LENET_FAST_DATA"), help="MNIST folder")
    p.add_argument("--json", metavar="PATH", default=default_json("pretrained"))
    a = p.parse_args(argv)
    import lenet_fast
    from lenet_fast import load_mnist
    from lenet_fast.pretrained import PRETRAINED

    facts = machine_facts(threads=lenet_fast.get_num_threads())
    _, _, te_x, te_y = load_mnist(a.data)
    models = [measure(name, te_x, te_y) for name in PRETRAINED]
    write_json(
        a.json,
        {"schema": SCHEMA, "script": "bench/bench_pretrained.py", "facts": facts, "models": models},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
