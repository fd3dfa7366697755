"""The NumPy reference: ``LeNet5(backend="reference")`` (``lenet_fast.reference``, float64
inside), its BLAS held to the case's thread count; the Python loop at batch 1."""

from __future__ import annotations

import numpy as np

from ..threads import BlasThreads
from .base import Setup, Trainer
from .fast import LenetFast, ModelTrainer


class Reference(LenetFast):
    key = "reference"

    def prepare(self, setup: Setup) -> None:
        m = setup.model.copy()
        m.backend = "reference"
        self.setup, self.model = setup, m
        self.blas: BlasThreads = setup.options.get("blas") or BlasThreads()
        self.version = f"numpy {np.__version__}"
        self.note = (
            "LeNet5(backend='reference'): lenet_fast.reference, NumPy, float64 inside; "
            f"BLAS threads: {self.blas.how}"
        )

    def set_threads(self, n: int) -> None:
        self.blas.set(n)

    def trainer(self, batch: int) -> Trainer:
        return ModelTrainer(self.model.copy(), self.setup.steps, batch, self.setup.sgd_lr, False)


IMPL = Reference
