"""LeNet-5 as an ONNX graph, written with the ``onnx`` package's helper API (no PyTorch).

This module works on a model's arrays (its ``params``, ``options``, ``centres`` and
``meta``), not on the model: :meth:`lenet_fast.LeNet5.to_onnx` and
:func:`lenet_fast.export.to_onnx` hand them over. ``onnx`` is imported when a graph is
built, so the package runs without it (``pip install "lenet_fast[onnx]"`` adds it).

The graph (input ``x``, N dynamic):

======== =============================================================================
x        float32 (N,1,32,32), the input :func:`lenet_fast.preprocess` makes; or, with
         ``uint8_input``, uint8 digits (N,28,28) padded and scaled inside the graph
C1       Conv 6x1x5x5 + bias, then f(a) = 1.7159 tanh(2a/3) (Mul, Tanh, Mul)
S2       Conv with one 2x2 kernel per map (group=6, stride 2) whose four taps are the
         map's coefficient (a quarter of it with ``subsample="mean"``), + bias, then f
C3       Table I: a Gather of the S2 map each of the 60 connections reads, one
         depthwise Conv (group=60) with the packed (60,5,5) kernels, then the
         connections of each C3 map summed (Reshape, ReduceSum per run of maps of one
         fan-in), concatenated, + bias, then f: 60 kernels, no zero-filled dense one
S4       as S2 (group=16), then f
C5       Conv 120x16x5x5 + bias, then f; Flatten to (N,120)
F6       Gemm with the (84,120) weights, + bias, then f
OUTPUT   penalties (N,10) = ReduceSum over j of (h6_j - c_ij)^2, the model's centres
label    ArgMin of the penalties (N,) int64, the first of a tie, as numpy's argmin
proba    Eq. 9's posterior (N,10): e^-y_i / (e^-j + sum_k e^-y_k), j = options["map_j"],
         computed as e^(m - y_i) / (e^(m - j) + sum_k e^(m - y_k)) with
         m = min(j, min_k y_k), so nothing overflows
======== =============================================================================

Opset 13 is the lowest the graph allows: ReduceSum and Unsqueeze take their axes as an
input from there on. The file's IR version is the lowest its opset allows, so older
runtimes load it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from . import tables
from ._files import atomic_write
from .layout import PARAM_SHAPES, RBF_SHAPE
from .mnist import preprocess
from .reference import SQUASH_A, SQUASH_S
from .runtime import __version__

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "PREPROCESSING", "build_onnx", "max_opset", "save_onnx"]

Array = npt.NDArray[Any]

#: The opset written when none is asked for.
DEFAULT_OPSET = 17
#: The lowest opset the graph can be written in (axes as inputs of ReduceSum and Unsqueeze).
MIN_OPSET = 13

#: What the graph's input expects, stored in the file's metadata ("preprocessing").
PREPROCESSING = {
    False: (
        "x: float32 (N,1,32,32), MNIST-like digits prepared as lenet_fast.preprocess does: "
        "the 28x28 bytes p (0 = background, 255 = full ink, white ink on black) padded "
        "with 2 background pixels on every side to 32x32, each pixel -0.1 + 1.275*p/255 "
        "(background -0.1, full ink 1.175); images that are not MNIST-like (dark ink on "
        "paper, off-centre, another size) go through lenet_fast.image.normalize_digit first"
    ),
    True: (
        "x: uint8 (N,28,28), MNIST-like digits (0 = background, 255 = full ink, white ink "
        "on black, centred as MNIST's are); the graph pads them to 32x32 and maps each "
        "byte p to -0.1 + 1.275*p/255 as lenet_fast.preprocess does; images that are not "
        "MNIST-like go through lenet_fast.image.normalize_digit first"
    ),
}


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:
        raise ImportError(
            'exporting to ONNX needs the onnx package: pip install "lenet_fast[onnx]"'
        ) from e
    return onnx


def max_opset() -> int:
    """The highest opset the installed ``onnx`` package knows."""
    return int(_onnx().defs.onnx_opset_version())


def _check_opset(opset: Any) -> int:
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset: expected an int, got {type(opset).__name__}")
    top = max_opset()
    if opset < MIN_OPSET:
        raise ValueError(
            f"opset: the graph needs opset {MIN_OPSET} or later (ReduceSum and Unsqueeze "
            f"take their axes as an input from opset 13 on), got {opset}"
        )
    if opset > top:
        raise ValueError(
            f"opset: the installed onnx {_onnx().__version__} knows opsets up to {top}, got {opset}"
        )
    return int(opset)


def _check_arrays(
    params: Mapping[str, Array], options: Mapping[str, Any], centres: Array
) -> dict[str, Array]:
    p: dict[str, Array] = {}
    for name, shape in PARAM_SHAPES.items():
        if name not in params:
            raise ValueError(f"params: missing {name!r}")
        a = np.asarray(params[name])
        if a.shape != shape:
            raise ValueError(f"params: {name!r} expected shape {shape}, got {a.shape}")
        p[name] = np.ascontiguousarray(a, dtype=np.float32)
    c = np.asarray(centres)
    if c.shape != RBF_SHAPE:
        raise ValueError(f"centres: expected shape {RBF_SHAPE}, got {c.shape}")
    p["centres"] = np.ascontiguousarray(c, dtype=np.float32)
    if options.get("subsample") not in ("mean", "sum"):
        raise ValueError(
            f"options: subsample must be 'mean' or 'sum', got {options.get('subsample')!r}"
        )
    return p


def _byte_table() -> Array:
    """The float32 value preprocess gives each byte 0..255 (256,): read from preprocess
    itself, so the uint8 graph cannot drift from it."""
    digit = np.zeros(28 * 28, dtype=np.uint8)
    digit[:256] = np.arange(256, dtype=np.uint8)
    return preprocess(digit.reshape(28, 28))[0, 0, 2:30, 2:30].reshape(-1)[:256].copy()


def _fan_in_runs() -> list[tuple[int, int, int]]:
    """Table I's C3 maps as runs ``(k0, k1, f)`` of consecutive maps k0..k1-1 that read f
    S2 maps each: (0, 6, 3), (6, 15, 4), (15, 16, 6)."""
    fans = np.asarray(tables.C3_TABLE, dtype=bool).sum(axis=0)
    runs: list[tuple[int, int, int]] = []
    for k, f in enumerate(fans.tolist()):
        if runs and runs[-1][2] == f:
            runs[-1] = (runs[-1][0], k + 1, f)
        else:
            runs.append((k, k + 1, f))
    return runs


def build_onnx(
    params: Mapping[str, Array],
    options: Mapping[str, Any],
    centres: Array,
    meta: Mapping[str, Any] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    uint8_input: bool = False,
) -> Any:
    """The ``onnx.ModelProto`` of the network with these parameters (see the module's
    docstring for the graph), checked by ``onnx.checker``. ``meta`` (JSON-able) goes into
    the file's metadata with the lenet_fast version and the preprocessing the input
    expects."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    opset = _check_opset(opset)
    if not isinstance(uint8_input, bool):
        raise TypeError(f"uint8_input: expected a bool, got {type(uint8_input).__name__}")
    try:
        meta_json = json.dumps(dict(meta or {}), sort_keys=True)
        options_json = json.dumps(dict(options), sort_keys=True)
    except TypeError as err:
        raise TypeError(f"meta: expected a JSON-able dict ({err})") from None
    p = _check_arrays(params, options, centres)
    sub_scale = 0.25 if options["subsample"] == "mean" else 1.0

    inits: list[Any] = []
    nodes: list[Any] = []

    made: dict[str, Array] = {}

    def const(name: str, a: Any, dtype: Any = np.float32) -> str:
        v = np.ascontiguousarray(a, dtype=dtype)
        if name in made:  # one initializer per name, e.g. the axes several nodes take
            assert np.array_equal(made[name], v), name
            return name
        made[name] = v
        inits.append(numpy_helper.from_array(v, name))
        return name

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    squash_s = const("squash.s", SQUASH_S)
    squash_a = const("squash.a", SQUASH_A)

    def squash(a: str, out: str) -> str:
        t = node("Tanh", [node("Mul", [a, squash_s], out + "/scaled")], out + "/tanh")
        return node("Mul", [t, squash_a], out)

    def subsample(a: str, layer: str) -> str:
        # the 2x2 block's sum times the coefficient: a depthwise 2x2 Conv whose taps all
        # hold the coefficient (a quarter of it in "mean" mode, as the model's _sub_coef)
        coef = p[f"{layer}.coef"] * np.float32(sub_scale)
        c = coef.shape[0]
        w = const(f"{layer}.w", np.broadcast_to(coef.reshape(c, 1, 1, 1), (c, 1, 2, 2)))
        b = const(f"{layer}.bias", p[f"{layer}.bias"])
        conv = node(
            "Conv", [a, w, b], f"{layer}/conv", kernel_shape=[2, 2], strides=[2, 2], group=c
        )
        return squash(conv, layer)

    if uint8_input:
        x_in = helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 28, 28])
        # as lenet_fast.preprocess: pad the bytes with 0 (background), then look each byte
        # up in the table of -0.1 + 1.275*p/255 (computed in float64, rounded once to
        # float32), so the graph gives the same input planes, bit for bit
        axis1 = const("axes.1", [1], np.int64)
        b = node(
            "Cast", [node("Unsqueeze", ["x", axis1], "x/nchw")], "x/int64", to=TensorProto.INT64
        )
        pads = const("x/pads", [0, 0, 2, 2, 0, 0, 2, 2], np.int64)
        padded = node("Pad", [b, pads], "x/padded", mode="constant")
        a = node("Gather", [const("x/scale_table", _byte_table()), padded], "input", axis=0)
    else:
        x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])
        a = "x"

    conv = node(
        "Conv",
        [a, const("c1.w", p["c1.w"]), const("c1.b", p["c1.b"])],
        "c1/conv",
        kernel_shape=[5, 5],
    )
    a = subsample(squash(conv, "c1"), "s2")

    # C3 (Table I): a Gather of the S2 map each of the 60 connections reads, in the packed
    # weights' order (output map k, then input map c); one depthwise Conv, a 5x5 kernel per
    # connection (the packed c3.w itself); then each run of C3 maps of one fan-in f summed
    # f channels at a time (Reshape, ReduceSum), the runs concatenated, the biases added
    pairs = np.argwhere(np.asarray(tables.C3_TABLE, dtype=bool).T)  # rows (k, c)
    maps = node("Gather", [a, const("c3.maps", pairs[:, 1], np.int64)], "c3/maps", axis=1)
    w = const("c3.w", p["c3.w"].reshape(len(pairs), 1, 5, 5))
    conv = node("Conv", [maps, w], "c3/conv", kernel_shape=[5, 5], group=len(pairs))
    parts = []
    for i, (k0, k1, fan) in enumerate(_fan_in_runs()):
        lo, hi = int(np.searchsorted(pairs[:, 0], k0)), int(np.searchsorted(pairs[:, 0], k1))
        bounds = [const(f"c3.run{i}.{e}", [v], np.int64) for e, v in (("lo", lo), ("hi", hi))]
        run = node("Slice", [conv, *bounds, const("axes.1", [1], np.int64)], f"c3/run{i}")
        shape = const(f"c3.run{i}.shape", [0, k1 - k0, fan, 10, 10], np.int64)
        split = node("Reshape", [run, shape], f"c3/run{i}/split")
        parts.append(
            node("ReduceSum", [split, const("axes.2", [2], np.int64)], f"c3/run{i}/sum", keepdims=0)
        )
    summed = node("Concat", parts, "c3/sum", axis=1) if len(parts) > 1 else parts[0]
    conv = node("Add", [summed, const("c3.b", p["c3.b"].reshape(16, 1, 1))], "c3/biased")
    a = subsample(squash(conv, "c3"), "s4")

    conv = node(
        "Conv",
        [a, const("c5.w", p["c5.w"]), const("c5.b", p["c5.b"])],
        "c5/conv",
        kernel_shape=[5, 5],
    )
    a = node("Flatten", [squash(conv, "c5")], "c5/flat", axis=1)
    gemm = node(
        "Gemm", [a, const("f6.w", p["f6.w"]), const("f6.b", p["f6.b"])], "f6/gemm", transB=1
    )
    a = squash(gemm, "f6")

    axis1 = const("axes.1", [1], np.int64)
    h6 = node("Unsqueeze", [a, axis1], "rbf/h6")  # (N,1,84)
    d = node("Sub", [h6, const("rbf.c", p["centres"])], "rbf/diff")  # (N,10,84)
    sq = node("Mul", [d, d], "rbf/squared")
    y = node("ReduceSum", [sq, const("axes.2", [2], np.int64)], "penalties", keepdims=0)

    node("ArgMin", [y], "label", axis=1, keepdims=0)
    best = node("ArgMin", [y], "proba/best", axis=1, keepdims=1)
    ymin = node("GatherElements", [y, best], "proba/min", axis=1)  # (N,1)
    j = const("proba.j", [[float(options["map_j"])]])
    m = node("Min", [ymin, j], "proba/shift")
    e = node("Exp", [node("Sub", [m, y], "proba/neg")], "proba/e")  # (N,10)
    r = node("Exp", [node("Sub", [m, j], "proba/neg_j")], "proba/e_j")  # (N,1)
    z = node("Add", [node("ReduceSum", [e, axis1], "proba/sum", keepdims=1), r], "proba/z")
    node("Div", [e, z], "proba")

    graph = helper.make_graph(
        nodes,
        "lenet5",
        [x_in],
        [
            helper.make_tensor_value_info("penalties", TensorProto.FLOAT, ["N", 10]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_tensor_value_info("proba", TensorProto.FLOAT, ["N", 10]),
        ],
        initializer=inits,
        doc_string="LeNet-5 (LeCun et al. 1998): penalties, argmin label and Eq. 9 posterior",
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=helper.find_min_ir_version_for(opsets),
        producer_name="lenet_fast",
        producer_version=__version__,
        doc_string=PREPROCESSING[uint8_input],
    )
    helper.set_model_props(
        model,
        {
            "lenet_fast.version": __version__,
            "lenet_fast.preprocessing": PREPROCESSING[uint8_input],
            "lenet_fast.meta": meta_json,
            "lenet_fast.options": options_json,
        },
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def check_path(path: Any, suffix: str) -> Path:
    """``path`` as a Path if a file ``*suffix`` can be written there: TypeError for a
    non-path, ValueError for another extension, FileNotFoundError for a missing folder,
    IsADirectoryError for a folder."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__}")
    out = Path(path)
    if out.suffix.lower() != suffix:
        raise ValueError(f"path: expected a file name ending in {suffix}, got {str(out)!r}")
    folder = out.parent if str(out.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"path: the folder {str(folder)!r} does not exist")
    if out.is_dir():
        raise IsADirectoryError(f"path: {str(out)!r} is a folder")
    return out


def save_onnx(
    path: str | os.PathLike[str],
    params: Mapping[str, Array],
    options: Mapping[str, Any],
    centres: Array,
    meta: Mapping[str, Any] | None = None,
    *,
    opset: int = DEFAULT_OPSET,
    uint8_input: bool = False,
) -> Path:
    """Build the graph (:func:`build_onnx`) and write it to ``path`` (``*.onnx``)
    atomically: a temporary file beside it, flushed, renamed over it; on any error no file
    (and no half of one) is left and a previous file at ``path`` is untouched."""
    out = check_path(path, ".onnx")
    blob = build_onnx(params, options, centres, meta, opset=opset, uint8_input=uint8_input)
    data = blob.SerializeToString()
    atomic_write(out, lambda f: f.write(data))
    return out
