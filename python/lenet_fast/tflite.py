"""LeNet-5 as a LiteRT (TensorFlow Lite) flatbuffer, written from the weights.

:func:`to_tflite` builds the graph with the TFLite schema's object API that ships inside
``ai-edge-litert`` (the ``litert`` extra) and the ``flatbuffers`` package it depends on; no
TensorFlow and no converter. The file runs in LiteRT's interpreter, on its builtin kernels
or on its default XNNPACK delegate, which takes every op of the graph (one partition).

The graph (NHWC, as LiteRT computes; ``N`` is resizable, ``-1`` in the shape signature):

====== ========================================= ===============================
layer  ops                                       output
====== ========================================= ===============================
input  ``x``, :func:`lenet_fast.mnist.preprocess` [N,32,32,1] float32
C1     CONV_2D 5x5, then f                       [N,28,28,6]
S2     DEPTHWISE_CONV_2D 2x2 stride 2, then f    [N,14,14,6]
C3     CONV_2D 5x5 over Table I's maps, then f   [N,10,10,16]
S4     DEPTHWISE_CONV_2D 2x2 stride 2, then f    [N,5,5,16]
C5     CONV_2D 5x5, then f                       [N,1,1,120]
F6     RESHAPE, FULLY_CONNECTED, then f          [N,84]
RBF    SUB, MUL, FULLY_CONNECTED, RESHAPE        ``penalties`` [N,10]
====== ========================================= ===============================

* f(a) = A tanh(S a) is MUL by S, TANH, MUL by A: the weights are the model's own, not
  rescaled copies, so each layer computes what the C++ kernels compute.
* A subsampling layer is the 2x2 block sum times a coefficient plus a bias per map, which
  is a depthwise 2x2 convolution of stride 2 whose four taps all hold the coefficient
  (in ``subsample="mean"`` mode the coefficient of the block sum is a quarter of the
  stored one, as in the model).
* C3 is one convolution over all six S2 maps with a dense (16,5,5,6) kernel that holds
  each of the 60 packed kernels of Table I at its place and zeros where the table has no
  connection. The zeros multiply squashed values, which are finite and within +-A, so
  they add exactly nothing; this is the one layer where the file's weights are not the
  model's arrays as stored.
* The RBF is ``sum_j (h_j - c_ij)^2``: the difference to each centre (broadcast SUB to
  [N,10,84]), squared (MUL), summed by a FULLY_CONNECTED with a row of ones over each
  difference, not the expansion ``|h|^2 - 2 h.c + |c|^2``, whose cancellation would cost
  digits on the small penalties that decide the label.

The file's metadata ``lenet_fast`` holds JSON: the lenet_fast version, the preprocessing
the input expects and the model's ``meta``. Its signature ``serving_default`` maps the
input ``x`` and the output ``penalties``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import numpy.typing as npt

from . import tables
from ._files import atomic_write
from .layout import PARAM_SHAPES
from .reference import SQUASH_A, SQUASH_S
from .runtime import __version__


class LeNet5(Protocol):
    """What the writer reads of a :class:`lenet_fast.LeNet5` (handed in, so this module,
    which the model calls, does not import model.py)."""

    params: dict[str, Any]
    options: dict[str, Any]
    meta: dict[str, Any]

    @property
    def centres(self) -> Any: ...

    def _sub_coef(self, name: str) -> Any: ...


__all__ = ["PREPROCESSING", "to_tflite"]

#: What the input ``x`` must be, as the file's metadata states it.
PREPROCESSING = (
    "x is float32 [N,32,32,1] (NHWC): 28x28 MNIST-like digits (light ink on a dark "
    "background) padded by 2 pixels on every side, byte p mapped to -0.1 + 1.275 * p / 255 "
    "(background -0.1, full ink 1.175); lenet_fast.preprocess(digits) gives [N,1,32,32], "
    "transpose it with .transpose(0, 2, 3, 1)"
)

_FILE_IDENTIFIER = b"TFL3"
_SCHEMA_VERSION = 3
_ALIGN = 16  # constant buffers aligned as the converter aligns them


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as e:
        raise ImportError(
            "to_tflite needs the TFLite schema of ai-edge-litert>=1.2: "
            "pip install 'lenet_fast[litert]'"
        ) from e
    return schema


def _c3_dense_kernel(w: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The packed C3 kernels (60,5,5), ordered by output map then input map, placed in a
    (16,6,5,5) OIHW kernel with zeros where Table I has no connection."""
    table = np.asarray(tables.C3_TABLE, dtype=bool)  # (6 inputs, 16 outputs)
    dense = np.zeros((table.shape[1], table.shape[0]) + w.shape[1:], dtype=np.float32)
    pairs = np.argwhere(table.T)  # rows (k, c) in the packed order
    dense[pairs[:, 0], pairs[:, 1]] = w
    return dense


class _Graph:
    """The tensors, buffers and operators of one subgraph, in the schema's object API."""

    def __init__(self, schema: Any) -> None:
        self.s = schema
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [_AlignedBuffer(None)]  # buffer 0: the empty sentinel
        self.ops: list[Any] = []
        self.codes: dict[int, int] = {}  # builtin op -> index in operator_codes

    def tensor(self, name: str, shape: tuple[int, ...], data: Any = None) -> int:
        """A float32 tensor (a constant when ``data`` is given); ``shape``'s -1 is the batch."""
        t = self.s.TensorT()
        t.name = name
        t.type = self.s.TensorType.FLOAT32
        if data is not None:
            arr = np.array(data, order="C")
            if arr.dtype == np.int32:
                t.type = self.s.TensorType.INT32
            else:
                arr = arr.astype(np.float32)
            assert arr.shape == shape, (name, arr.shape, shape)
            self.buffers.append(_AlignedBuffer(arr.tobytes()))
            t.buffer = len(self.buffers) - 1
        t.shape = [1 if d == -1 else d for d in shape]
        if -1 in shape:
            t.shapeSignature = list(shape)
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, code: int, inputs: list[int], outputs: list[int], options: Any = None) -> None:
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        o = self.s.OperatorT()
        o.opcodeIndex = self.codes[code]
        o.inputs = inputs
        o.outputs = outputs
        if options is not None:
            name = type(options).__name__[: -len("T")]
            o.builtinOptionsType = getattr(self.s.BuiltinOptions, name)
            o.builtinOptions = options
        self.ops.append(o)

    # -------------------------------------------------------------- the ops LeNet-5 uses

    def conv(self, name: str, x: int, w_oihw: Any, b: Any, out: tuple[int, ...]) -> int:
        w = np.transpose(np.asarray(w_oihw, dtype=np.float32), (0, 2, 3, 1))  # OHWI
        wt = self.tensor(f"{name}.w", w.shape, w)
        bt = self.tensor(f"{name}.b", (w.shape[0],), b)
        y = self.tensor(f"{name}.a", out)
        opt = self.s.Conv2DOptionsT()
        opt.padding = self.s.Padding.VALID
        opt.strideW = opt.strideH = 1
        opt.dilationWFactor = opt.dilationHFactor = 1
        self.op(self.s.BuiltinOperator.CONV_2D, [x, wt, bt], [y], opt)
        return y

    def subsample(self, name: str, x: int, coef: Any, bias: Any, out: tuple[int, ...]) -> int:
        c = np.asarray(coef, dtype=np.float32)
        w = np.broadcast_to(c, (1, 2, 2, c.size))  # depthwise filter [1,H,W,C]
        wt = self.tensor(f"{name}.coef", w.shape, w)
        bt = self.tensor(f"{name}.bias", (c.size,), bias)
        y = self.tensor(f"{name}.a", out)
        opt = self.s.DepthwiseConv2DOptionsT()
        opt.padding = self.s.Padding.VALID
        opt.strideW = opt.strideH = 2
        opt.depthMultiplier = 1
        opt.dilationWFactor = opt.dilationHFactor = 1
        self.op(self.s.BuiltinOperator.DEPTHWISE_CONV_2D, [x, wt, bt], [y], opt)
        return y

    def binary(self, code: int, name: str, a: int, b: int, out: tuple[int, ...]) -> int:
        y = self.tensor(name, out)
        kind = {
            self.s.BuiltinOperator.MUL: self.s.MulOptionsT,
            self.s.BuiltinOperator.SUB: self.s.SubOptionsT,
        }[code]
        self.op(code, [a, b], [y], kind())
        return y

    def squash(self, name: str, a: int, shape: tuple[int, ...]) -> int:
        """f(a) = A tanh(S a), in float32 as the kernels compute it."""
        mul = self.s.BuiltinOperator.MUL
        s = self.tensor(f"{name}.S", (), np.float32(SQUASH_S))
        scaled = self.binary(mul, f"{name}.Sa", a, s, shape)
        t = self.tensor(f"{name}.tanh", shape)
        self.op(self.s.BuiltinOperator.TANH, [scaled], [t])
        amp = self.tensor(f"{name}.A", (), np.float32(SQUASH_A))
        return self.binary(mul, name, t, amp, shape)

    def reshape(self, name: str, x: int, shape: tuple[int, ...]) -> int:
        st = self.tensor(f"{name}.shape", (len(shape),), np.asarray(shape, dtype=np.int32))
        y = self.tensor(name, shape)
        opt = self.s.ReshapeOptionsT()
        opt.newShape = list(shape)
        self.op(self.s.BuiltinOperator.RESHAPE, [x, st], [y], opt)
        return y

    def dense(self, name: str, x: int, w: Any, b: Any, out: tuple[int, ...]) -> int:
        """FULLY_CONNECTED: y = x @ w.T + b, w (O,I) as TFLite stores it."""
        w = np.asarray(w, dtype=np.float32)
        wt = self.tensor(f"{name}.w", w.shape, w)
        inputs = [x, wt, self.tensor(f"{name}.b", (w.shape[0],), b) if b is not None else -1]
        y = self.tensor(name, out)
        self.op(
            self.s.BuiltinOperator.FULLY_CONNECTED, inputs, [y], self.s.FullyConnectedOptionsT()
        )
        return y


class _AlignedBuffer:
    """A schema Buffer whose bytes start on a 16-byte boundary of the file (the object API's
    own BufferT packs them wherever the builder stands)."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data

    def Pack(self, builder: Any) -> int:
        schema = _schema()
        vec = None
        if self.data is not None:
            n = len(self.data)
            builder.StartVector(1, n, _ALIGN)
            builder.head = builder.head - n
            builder.Bytes[builder.head : builder.head + n] = self.data
            vec = builder.EndVector()
        schema.BufferStart(builder)
        if vec is not None:
            schema.BufferAddData(builder, vec)
        return int(schema.BufferEnd(builder))


def _build(model: LeNet5) -> bytes:
    s = _schema()
    import flatbuffers

    p = {k: np.asarray(v, dtype=np.float32) for k, v in model.params.items()}
    for name, shape in PARAM_SHAPES.items():
        if p[name].shape != shape:
            raise ValueError(f"model: parameter {name} has shape {p[name].shape}, expected {shape}")
    centres = np.asarray(model.centres, dtype=np.float32)
    g = _Graph(s)
    op = s.BuiltinOperator
    x = g.tensor("x", (-1, 32, 32, 1))

    a1 = g.conv("c1", x, p["c1.w"], p["c1.b"], (-1, 28, 28, 6))
    h1 = g.squash("c1", a1, (-1, 28, 28, 6))
    a2 = g.subsample("s2", h1, model._sub_coef("s2.coef"), p["s2.bias"], (-1, 14, 14, 6))
    h2 = g.squash("s2", a2, (-1, 14, 14, 6))
    a3 = g.conv("c3", h2, _c3_dense_kernel(p["c3.w"]), p["c3.b"], (-1, 10, 10, 16))
    h3 = g.squash("c3", a3, (-1, 10, 10, 16))
    a4 = g.subsample("s4", h3, model._sub_coef("s4.coef"), p["s4.bias"], (-1, 5, 5, 16))
    h4 = g.squash("s4", a4, (-1, 5, 5, 16))
    a5 = g.conv("c5", h4, p["c5.w"], p["c5.b"], (-1, 1, 1, 120))
    h5 = g.squash("c5", a5, (-1, 1, 1, 120))
    f5 = g.reshape("c5.flat", h5, (-1, 120))
    a6 = g.dense("f6", f5, p["f6.w"], p["f6.b"], (-1, 84))
    h6 = g.squash("f6", a6, (-1, 84))
    # RBF: (h - c)^2 summed over the 84 values of each centre
    h6r = g.reshape("rbf.h", h6, (-1, 1, 84))
    ct = g.tensor("rbf.c", (1, 10, 84), centres[None])
    d = g.binary(op.SUB, "rbf.diff", h6r, ct, (-1, 10, 84))
    d2 = g.binary(op.MUL, "rbf.sq", d, d, (-1, 10, 84))
    rows = g.reshape("rbf.rows", d2, (-1, 84))
    sums = g.dense("rbf.sum", rows, np.ones((1, 84), np.float32), None, (-1, 1))
    y = g.reshape("penalties", sums, (-1, 10))

    sub = s.SubGraphT()
    sub.tensors, sub.operators = g.tensors, g.ops
    sub.inputs, sub.outputs = [x], [y]
    sub.name = "main"

    codes = []
    for code in sorted(g.codes, key=g.codes.__getitem__):
        oc = s.OperatorCodeT()
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)
        oc.version = 1
        codes.append(oc)

    sig = s.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    sig.inputs = [_tensor_map(s, "x", x)]
    sig.outputs = [_tensor_map(s, "penalties", y)]

    info = {
        "lenet_fast_version": __version__,
        "input": "x",
        "output": "penalties",
        "preprocessing": PREPROCESSING,
        "options": {k: v for k, v in model.options.items()},
        "meta": model.meta,
    }
    g.buffers.append(_AlignedBuffer(json.dumps(info, sort_keys=True).encode()))
    md = s.MetadataT()
    md.name = "lenet_fast"
    md.buffer = len(g.buffers) - 1

    m = s.ModelT()
    m.version = _SCHEMA_VERSION
    m.description = "LeNet-5 (LeCun et al. 1998), written by lenet_fast"
    m.operatorCodes = codes
    m.subgraphs = [sub]
    m.buffers = g.buffers
    m.metadata = [md]
    m.signatureDefs = [sig]
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=_FILE_IDENTIFIER)
    return bytes(b.Output())


def _tensor_map(s: Any, name: str, index: int) -> Any:
    t = s.TensorMapT()
    t.name = name
    t.tensorIndex = index
    return t


def to_tflite(model: LeNet5, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` as a LiteRT flatbuffer at ``path`` (a ``.tflite`` file), atomically:
    a failure leaves any previous file at ``path`` as it was. Returns the path.

    The input ``x`` is float32 [N,32,32,1], :func:`lenet_fast.mnist.preprocess`'s planes in
    NHWC, N resizable (``interpreter.resize_tensor_input``); the output ``penalties`` is
    [N,10], the model's :meth:`~lenet_fast.model.LeNet5.forward`, smallest = the label.
    Needs ``ai-edge-litert`` (the ``litert`` extra); nothing of TensorFlow.

    Raises TypeError for a ``model`` that is not a LeNet5 or a ``path`` that is not a path,
    ValueError for another extension than ``.tflite``, FileNotFoundError for a folder that
    does not exist.
    """
    if not all(hasattr(model, a) for a in ("params", "options", "centres", "_sub_coef")):
        raise TypeError(f"model: expected a lenet_fast.LeNet5, got {type(model).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"path: expected a .tflite file, got {str(path)!r}")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"path: folder {str(folder)!r} does not exist")
    data = _build(model)

    def write(f: IO[bytes]) -> None:
        f.write(data)

    atomic_write(path, write)
    return path
