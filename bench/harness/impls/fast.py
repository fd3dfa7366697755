"""lenet_fast itself: ``model.forward``; the fused SDLM pass at batch 1; ``model.gradients``
and ``p -= lr * g`` at batch b, as ``lenet_fast.train`` runs them."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import numpy.typing as npt

import lenet_fast
from lenet_fast import LeNet5
from lenet_fast.train import sdlm_pass

from .base import Arrays, Impl, Setup, Trainer


class ModelTrainer(Trainer):
    """The training step of a ``LeNet5``: at batch 1 the SDLM pass (fused, or the Python
    loop of ``model.gradients``), at batch b one SGD step on the batch-mean loss."""

    def __init__(self, model: LeNet5, steps: Arrays, batch: int, lr: float, fused: bool) -> None:
        self.model, self.steps, self.batch, self.lr, self.fused = model, steps, batch, lr, fused

    def load(self, params: Arrays) -> None:
        for k, v in params.items():
            np.copyto(self.model.params[k], v)

    def params(self) -> Arrays:
        return {k: v.copy() for k, v in self.model.params.items()}

    def gradients(self, x: npt.NDArray[np.float32], labels: npt.NDArray[Any]) -> Arrays:
        return self.model.gradients(x, labels)[1]

    def bind(self, x: npt.NDArray[np.float32], labels: npt.NDArray[Any]) -> int:
        m, steps, p, fused = self.model, self.steps, self.model.params, self.fused
        if self.batch == 1:
            order = np.arange(x.shape[0])
            self.run = lambda: sdlm_pass(m, x, labels, order, steps, fused=fused)
        else:
            rate = np.float32(self.lr)

            def run() -> None:
                _, g, _ = m.gradients(x, labels)
                for k in p:
                    p[k] -= rate * g[k]

            self.run = run
        return int(x.shape[0])


class LenetFast(Impl):
    key = "lenet_fast"

    def prepare(self, setup: Setup) -> None:
        self.setup = setup
        self.model = setup.model
        self.version = lenet_fast.__version__
        self.note = (
            "forward: model.forward(x); training at batch 1: the fused SDLM pass over a "
            "block of patterns; at batch b: model.gradients + params -= lr*g"
        )

    def set_threads(self, n: int) -> None:
        lenet_fast.set_num_threads(n)

    def infer(self, x: npt.NDArray[np.float32]) -> Callable[[], Any]:
        m = self.model
        return lambda: m.forward(x)

    def trainer(self, batch: int) -> Trainer:
        return ModelTrainer(self.model.copy(), self.setup.steps, batch, self.setup.sgd_lr, True)


IMPL = LenetFast
