"""PyTorch eager: ``net(x)`` under ``torch.inference_mode``; training with ``backward()``
and ``torch.optim.SGD(foreach=True)`` (batch b) or ``_foreach_addcmul_`` (SDLM, batch 1)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from . import torch_net
from .base import Arrays, Impl, Setup, Trainer


class TorchTrainer(Trainer):
    """One SGD step on a batch or, at batch 1, the per-pattern SDLM update p -= eps * grad
    over a block of patterns, in PyTorch."""

    def __init__(self, impl: TorchEager, batch: int) -> None:
        import torch

        self.torch, self.batch = torch, batch
        model = impl.setup.model
        self.net = torch_net.build_torch_net(model)
        self.tparams = torch_net.named_params(self.net)
        self.plist = list(self.tparams.values())
        loss_of, net = torch_net.loss_fn(model), self.net

        def loss_fn(x: Any, labels: Any) -> Any:
            return loss_of(net(x), labels)

        self.loss_fn = torch.compile(loss_fn, dynamic=False) if impl.compiled else loss_fn
        self.opt = torch.optim.SGD(self.plist, lr=impl.setup.sgd_lr, foreach=True)
        steps = {
            k: torch_net.dense_c3(v) if k == "c3.w" else v for k, v in impl.setup.steps.items()
        }
        self.eps = [
            torch.from_numpy(np.ascontiguousarray(steps[k], np.float32)).reshape(t.shape)
            for k, t in self.tparams.items()
        ]

    def load(self, params: Arrays) -> None:
        torch_net.load_params(self.net, params)

    def params(self) -> Arrays:
        return torch_net.to_lenet_fast(self.tparams)

    def gradients(self, x: npt.NDArray[np.float32], labels: npt.NDArray[Any]) -> Arrays:
        torch = self.torch
        for q in self.plist:
            q.grad = None
        self.loss_fn(torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))).backward()
        grads = torch_net.to_lenet_fast({k: t.grad for k, t in self.tparams.items()})
        for q in self.plist:
            q.grad = None
        return grads

    def bind(self, x: npt.NDArray[np.float32], labels: npt.NDArray[Any]) -> int:
        torch, loss_fn, plist, eps, opt = self.torch, self.loss_fn, self.plist, self.eps, self.opt
        xt, lt = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
        if self.batch == 1:
            patterns = [(xt[i : i + 1], lt[i : i + 1]) for i in range(x.shape[0])]

            def run() -> None:
                for xi, li in patterns:
                    for q in plist:
                        q.grad = None
                    loss_fn(xi, li).backward()
                    with torch.no_grad():
                        torch._foreach_addcmul_(plist, [q.grad for q in plist], eps, value=-1.0)
        else:

            def run() -> None:
                opt.zero_grad(set_to_none=True)
                loss_fn(xt, lt).backward()
                opt.step()

        self.run = run
        return int(x.shape[0])


class TorchEager(Impl):
    key = "torch"
    requires = ("torch",)
    compiled = False

    def prepare(self, setup: Setup) -> None:
        import torch

        self.torch, self.setup = torch, setup
        self.version = (
            f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()} kernels)"
        )
        self.net = torch_net.build_torch_net(setup.model)
        sub = " * 4" if setup.model.options["subsample"] == "sum" else ""
        self.note = (
            "nn.Conv2d C1/C5, dense Conv2d C3 with Table I mask, "
            f"avg_pool2d{sub} x coef + bias, Linear F6, RBF as sum((x-c)^2); "
            "torch.inference_mode; SGD(foreach) / SDLM via _foreach_addcmul_"
        )

    def set_threads(self, n: int) -> None:
        self.torch.set_num_threads(n)

    def infer(self, x: npt.NDArray[np.float32]) -> Callable[[], Any]:
        torch, net, xt = self.torch, self.net, self.torch.from_numpy(x)

        def run() -> Any:
            with torch.inference_mode():
                return net(xt).numpy()

        return run

    def trainer(self, batch: int) -> Trainer:
        return TorchTrainer(self, batch)


IMPL = TorchEager
