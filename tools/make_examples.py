#!/usr/bin/env python
"""Write ``examples/digits/``: handwritten digits as a scan or a photo would give them, for
the README's ``lenet-fast predict`` example.

    python tools/make_examples.py --data DIR

The digits are the first twelve of the MNIST test set (handwritten, by the writers of NIST's
Special Database 1), made to look unlike MNIST: enlarged 5 times with smoothing, dark ink on
light grey paper, placed off centre on a 200x160 page, saved as PNG, JPEG, BMP, GIF and
TIFF; plus a blank page and a ring, which are not digits. Needs Pillow.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "examples" / "digits"
FORMATS = ("png", "jpg", "png", "bmp", "gif", "tif")


def page(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image, ImageFilter

    big = (
        Image.fromarray(digit).resize((140, 140), Image.BICUBIC).filter(ImageFilter.GaussianBlur(1))
    )
    ink = np.asarray(big, dtype=np.float64) / 255
    paper = np.full((160, 200), 225.0)
    y, x = rng.integers(0, 20), rng.integers(0, 60)
    paper[y : y + 140, x : x + 140] -= 190 * ink
    paper += rng.normal(0, 3, paper.shape)
    return np.clip(paper, 0, 255).astype(np.uint8)


def main() -> int:
    from PIL import Image

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=os.environ.get("LENET_FAST_DATA"), help="MNIST folder")
    a = p.parse_args()
    from lenet_fast import load_mnist

    _, _, te_x, te_y = load_mnist(a.data)
    rng = np.random.default_rng(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        fmt = FORMATS[i % len(FORMATS)]
        Image.fromarray(page(te_x[i], rng)).save(OUT / f"test{i:02d}-label{te_y[i]}.{fmt}")
    blank = np.clip(np.full((160, 200), 225.0) + rng.normal(0, 3, (160, 200)), 0, 255)
    Image.fromarray(blank.astype(np.uint8)).save(OUT / "blank-page.png")
    yy, xx = np.mgrid[:160, :200]
    ring = np.abs(np.hypot(xx - 100, yy - 80) - 50) < 6
    Image.fromarray(np.where(ring, 40, 225).astype(np.uint8)).save(OUT / "ring.png")
    print(f"wrote {len(list(OUT.iterdir()))} files in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
