"""The paper's LeNet-5 as a ``torch.nn.Module`` with a ``LeNet5``'s parameters and options,
its loss, and the mapping between its tensors and lenet_fast's parameter names. Used by
PyTorch eager, torch.compile and the ONNX graph exported from PyTorch. Imports torch only
inside its functions."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from lenet_fast import LeNet5, tables
from lenet_fast.layout import PARAM_SHAPES, RBF_PARAM

Arrays = dict[str, npt.NDArray[Any]]


def c3_pairs() -> npt.NDArray[np.intp]:
    """(k, c) of each packed C3 kernel, in lenet_fast's order (output map k, then input c)."""
    return np.argwhere(np.asarray(tables.C3_TABLE).T)


def dense_c3(packed: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """The 60 packed C3 kernels at their Table I places of a dense (16,6,5,5), zeros elsewhere."""
    w = np.zeros((16, 6, 5, 5), np.float32)
    kc = c3_pairs()
    w[kc[:, 0], kc[:, 1]] = packed
    return w


def build_torch_net(model: LeNet5) -> Any:
    """A torch.nn.Module computing ``model.forward`` with ``model``'s parameters."""
    import torch
    import torch.nn.functional as F

    opts = model.options
    sub_scale = 4.0 if opts["subsample"] == "sum" else 1.0  # avg_pool2d * 4 = the 2x2 sum
    mask = dense_c3(np.ones((len(c3_pairs()), 5, 5), np.float32))

    class LeNet5Torch(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c1 = torch.nn.Conv2d(1, 6, 5)
            self.s2_coef = torch.nn.Parameter(torch.zeros(6))
            self.s2_bias = torch.nn.Parameter(torch.zeros(6))
            self.c3 = torch.nn.Conv2d(6, 16, 5)
            self.register_buffer("c3_mask", torch.from_numpy(mask))
            self.s4_coef = torch.nn.Parameter(torch.zeros(16))
            self.s4_bias = torch.nn.Parameter(torch.zeros(16))
            self.c5 = torch.nn.Conv2d(16, 120, 5)
            self.f6 = torch.nn.Linear(120, 84)
            c = torch.from_numpy(np.array(model.centres, dtype=np.float32))
            if opts["rbf"] == "trainable":
                self.rbf_c = torch.nn.Parameter(c.clone())
            else:
                self.register_buffer("rbf_c", c.clone())

        @staticmethod
        def f(a: Any) -> Any:  # the squashing function 1.7159 tanh(2a/3)
            return 1.7159 * torch.tanh(a * (2.0 / 3.0))

        def subsample(self, a: Any, coef: Any, bias: Any) -> Any:
            s = F.avg_pool2d(a, 2) * sub_scale
            return s * coef.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)

        def forward(self, x: Any) -> Any:
            f = self.f
            a = f(self.c1(x))
            a = f(self.subsample(a, self.s2_coef, self.s2_bias))
            # the mask keeps the 36 unconnected kernels at zero under training; the stored
            # weight is already masked, so inference skips the multiply
            mask: Any = self.c3_mask
            w3 = self.c3.weight * mask if torch.is_grad_enabled() else self.c3.weight
            a = f(F.conv2d(a, w3, self.c3.bias))
            a = f(self.subsample(a, self.s4_coef, self.s4_bias))
            a = f(self.c5(a)).flatten(1)
            a = f(self.f6(a))
            return ((a.unsqueeze(1) - self.rbf_c.unsqueeze(0)) ** 2).sum(-1)

    net = LeNet5Torch()
    load_params(net, model.params)
    return net


def named_params(net: Any) -> dict[str, Any]:
    """lenet_fast parameter name -> the torch tensor holding it (C3: the dense (16,6,5,5))."""
    import torch

    d = {
        "c1.w": net.c1.weight,
        "c1.b": net.c1.bias,
        "s2.coef": net.s2_coef,
        "s2.bias": net.s2_bias,
        "c3.w": net.c3.weight,
        "c3.b": net.c3.bias,
        "s4.coef": net.s4_coef,
        "s4.bias": net.s4_bias,
        "c5.w": net.c5.weight,
        "c5.b": net.c5.bias,
        "f6.w": net.f6.weight,
        "f6.b": net.f6.bias,
    }
    assert list(d) == list(PARAM_SHAPES), "the torch network's parameters are lenet_fast's"
    if isinstance(net.rbf_c, torch.nn.Parameter):
        d[RBF_PARAM] = net.rbf_c
    return d


def load_params(net: Any, params: Arrays) -> None:
    import torch

    with torch.no_grad():
        for k, t in named_params(net).items():
            v = dense_c3(params[k]) if k == "c3.w" else params[k]
            t.copy_(torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).reshape(t.shape))


def to_lenet_fast(tensors: dict[str, Any]) -> Arrays:
    """Arrays by lenet_fast name and shape from tensors by name (C3 packed again)."""
    out = {}
    kc = c3_pairs()
    for k, t in tensors.items():
        a = t.detach().numpy().copy()
        if k == "c3.w":
            a = np.ascontiguousarray(a[kc[:, 0], kc[:, 1]])
        out[k] = a.reshape(PARAM_SHAPES.get(k, a.shape))
    return out


def loss_fn(model: LeNet5) -> Callable[[Any, Any], Any]:
    """The model's loss (``LeNet5.loss_gradient``'s) in torch: mean over the batch, times
    ``loss_scale``. Eq. 9 (MAP) as ``y_c + logaddexp(logsumexp(-y), -j)``, or Eq. 8."""
    import torch

    opts = model.options
    scale = float(opts["loss_scale"])
    neg_j = torch.tensor(-float(opts["map_j"]))

    def loss(y: Any, labels: Any) -> Any:
        yc = y.gather(1, labels.view(-1, 1)).view(-1)
        if opts["loss"] == "mse":  # Eq. 8
            return scale * yc.mean()
        return scale * (yc + torch.logaddexp(torch.logsumexp(-y, dim=1), neg_j)).mean()

    return loss
