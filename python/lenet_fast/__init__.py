"""lenet_fast: LeNet-5 (LeCun et al. 1998) with fast SIMD CPU kernels.

The kernels (``lenet_fast.kernels``, C++ with AVX2+FMA or a portable scalar path chosen at
run time) and their NumPy twins (``lenet_fast.reference``) share names and signatures.
``lenet_fast.tables`` holds the paper's constants: Table I and the RBF codes.

The instruction set is chosen at import from the CPU; ``LENET_FAST_ISA=scalar|avx2|auto``
overrides it (applied when :mod:`lenet_fast.runtime` is imported, here, before any kernel
runs), and :func:`set_isa` changes it at run time.
"""

from __future__ import annotations

from . import image, kernels, reference, runtime, tables
from .mnist import load_idx, load_mnist, preprocess
from .model import LeNet5
from .runtime import (
    __version__,
    available_isas,
    get_isa,
    get_num_threads,
    info,
    set_isa,
    set_num_threads,
)
from .train import evaluate, train

__all__ = [
    "LeNet5",
    "__version__",
    "available_isas",
    "evaluate",
    "get_isa",
    "get_num_threads",
    "image",
    "info",
    "kernels",
    "load_idx",
    "load_mnist",
    "preprocess",
    "reference",
    "runtime",
    "set_isa",
    "set_num_threads",
    "tables",
    "train",
]
