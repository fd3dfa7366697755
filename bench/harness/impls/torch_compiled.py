"""PyTorch ``torch.compile(dynamic=False)``: the eager network compiled for inference, and
the loss (network + loss) compiled for training; backward through AOTAutograd, the
optimizer eager."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from .base import Setup
from .torch_eager import TorchEager


class TorchCompiled(TorchEager):
    key = "torch.compile"
    compiled = True

    def prepare(self, setup: Setup) -> None:
        super().prepare(setup)
        import torch._dynamo

        cfg = torch._dynamo.config
        cfg.cache_size_limit = max(cfg.cache_size_limit, 16)  # one graph per batch size
        self._fn: Any = None
        self.note = (
            "torch.compile(dynamic=False) of the eager network (inference, and the "
            "loss for training; backward through AOTAutograd; optimizer eager)"
        )

    def infer(self, x: npt.NDArray[np.float32]) -> Callable[[], Any]:
        torch, xt = self.torch, self.torch.from_numpy(x)
        if self._fn is None:
            self._fn = torch.compile(self.net, dynamic=False)
        fn = self._fn

        def run() -> Any:
            with torch.no_grad():
                return np.asarray(fn(xt).numpy())

        return run


IMPL = TorchCompiled
