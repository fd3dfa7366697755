"""The implementations the suite compares, one module each, all with the interface of
:class:`base.Impl`. A new peer is one more module here and one more
line in :data:`REGISTRY`."""

from __future__ import annotations

import importlib

from .base import Impl, Setup, Trainer

#: key -> (module under harness.impls, label in the tables). The suite runs them in this order.
REGISTRY: dict[str, tuple[str, str]] = {
    "lenet_fast": ("fast", "lenet_fast"),
    "reference": ("reference", "NumPy reference"),
    "torch": ("torch_eager", "PyTorch eager"),
    "torch.compile": ("torch_compiled", "PyTorch torch.compile"),
    "onnxruntime": ("onnxrt", "ONNX Runtime"),
    "litert": ("litert", "LiteRT (XNNPACK)"),
    "openvino": ("openvino", "OpenVINO"),
}
KEYS = tuple(REGISTRY)
LABELS = {k: label for k, (_, label) in REGISTRY.items()}

__all__ = ["KEYS", "LABELS", "REGISTRY", "Impl", "Setup", "Trainer", "get"]


def get(key: str) -> type[Impl]:
    """The class of implementation ``key`` (its module imports no peer library itself)."""
    module = importlib.import_module(f"{__name__}.{REGISTRY[key][0]}")
    cls: type[Impl] = module.IMPL
    return cls
