"""A trained model in other runtimes' formats, chosen by the file's extension.

``to_onnx(model, "lenet5.onnx")`` (the same as ``model.to_onnx("lenet5.onnx")``) writes an
ONNX graph with the ``onnx`` package's helper API (``pip install "lenet_fast[onnx]"``; no
PyTorch); see :mod:`lenet_fast._onnx` for the graph. ``to_tflite(model, "lenet5.tflite")``
writes a LiteRT flatbuffer (``pip install "lenet_fast[litert]"``; no TensorFlow); see
:mod:`lenet_fast.tflite`. :data:`FORMATS` maps each file
extension ``lenet-fast export`` knows to the name of its function here; a format whose
function this build lacks is reported as not available.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _onnx
from ._onnx import DEFAULT_OPSET, MIN_OPSET
from .model import LeNet5
from .tflite import to_tflite

__all__ = [
    "DEFAULT_OPSET",
    "FORMATS",
    "MIN_OPSET",
    "build_onnx",
    "exporter_for",
    "to_onnx",
    "to_tflite",
]

#: file extension -> the name of the function of this module that writes that format
FORMATS: dict[str, str] = {".onnx": "to_onnx", ".tflite": "to_tflite"}


def _model(model: Any) -> LeNet5:
    if not isinstance(model, LeNet5):
        raise TypeError(f"model: expected a lenet_fast.LeNet5, got {type(model).__name__}")
    return model


def build_onnx(model: LeNet5, *, opset: int = DEFAULT_OPSET, uint8_input: bool = False) -> Any:
    """The model's ``onnx.ModelProto`` (checked with ``onnx.checker``), not written."""
    m = _model(model)
    return _onnx.build_onnx(
        m.params, m.options, m.centres, m.meta, opset=opset, uint8_input=uint8_input
    )


def to_onnx(
    model: LeNet5,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    uint8_input: bool = False,
) -> Path:
    """Write ``model`` as an ONNX file (see :meth:`lenet_fast.LeNet5.to_onnx`)."""
    return _model(model).to_onnx(path, opset=opset, uint8_input=uint8_input)


def exporter_for(path: str | os.PathLike[str]) -> Callable[..., Path]:
    """The function that writes the format of ``path``'s extension: ValueError for an
    extension no format has, or one whose exporter this build does not have."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        known = ", ".join(FORMATS)
        raise ValueError(
            f"{str(path)!r}: unknown extension {suffix or '(none)'!r}: expected one of {known}"
        )
    fn: Callable[..., Path] | None = globals().get(FORMATS[suffix])
    if fn is None:
        raise ValueError(f"{suffix}: not available in this build")
    return fn
