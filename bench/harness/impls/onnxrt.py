"""ONNX Runtime (CPU execution provider), inference only, on the network exported from
PyTorch (``torch.onnx.export``) or written with the ``onnx`` helper API
(:func:`build_onnx_graph`) when torch cannot export it or ``--onnx-graph helper`` asks."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from lenet_fast import LeNet5

from .base import Impl, Setup
from .torch_net import build_torch_net, dense_c3

OPSET = 17


def export_torch_onnx(model: LeNet5, path: Path) -> None:
    """The PyTorch network through the TorchScript exporter (dynamo=False: the dynamo one
    needs onnxscript), with a dynamic batch axis."""
    import torch

    net = build_torch_net(model).eval()
    x = torch.zeros(2, 1, 32, 32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
            opset_version=OPSET,
        )


def build_onnx_graph(model: LeNet5, path: Path) -> None:
    """The same network as the PyTorch one, written with onnx.helper: Conv, AveragePool,
    Mul, Add, Tanh, Gemm, Sub, ReduceSum."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    p, opts = model.params, model.options
    sub_scale = 4.0 if opts["subsample"] == "sum" else 1.0
    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, a: Any) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(a, dtype=np.float32), name))
        return name

    def squash(a: str, out: str) -> str:
        nodes.append(helper.make_node("Mul", [a, const(out + "_s", 2.0 / 3.0)], [out + "_m"]))
        nodes.append(helper.make_node("Tanh", [out + "_m"], [out + "_t"]))
        nodes.append(helper.make_node("Mul", [out + "_t", const(out + "_a", 1.7159)], [out]))
        return out

    def conv(a: str, w: Any, b: Any, out: str) -> str:
        nodes.append(
            helper.make_node("Conv", [a, const(out + "_w", w), const(out + "_b", b)], [out + "_c"])
        )
        return squash(out + "_c", out)

    def subsample(a: str, coef: Any, bias: Any, out: str) -> str:
        c = len(coef)
        nodes.append(
            helper.make_node("AveragePool", [a], [out + "_p"], kernel_shape=[2, 2], strides=[2, 2])
        )
        k = const(out + "_k", (sub_scale * coef).reshape(1, c, 1, 1))
        nodes.append(helper.make_node("Mul", [out + "_p", k], [out + "_q"]))
        d = const(out + "_d", bias.reshape(1, c, 1, 1))
        nodes.append(helper.make_node("Add", [out + "_q", d], [out + "_r"]))
        return squash(out + "_r", out)

    a = conv("x", p["c1.w"], p["c1.b"], "c1")
    a = subsample(a, p["s2.coef"], p["s2.bias"], "s2")
    a = conv(a, dense_c3(p["c3.w"]), p["c3.b"], "c3")
    a = subsample(a, p["s4.coef"], p["s4.bias"], "s4")
    a = conv(a, p["c5.w"], p["c5.b"], "c5")
    nodes.append(helper.make_node("Flatten", [a], ["h5"], axis=1))
    f6 = [const("f6_w", p["f6.w"]), const("f6_b", p["f6.b"])]
    nodes.append(helper.make_node("Gemm", ["h5", *f6], ["f6_l"], transB=1))
    a = squash("f6_l", "f6")
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "ax1"))
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "ax2"))
    nodes.append(helper.make_node("Unsqueeze", [a, "ax1"], ["h6u"]))  # (N,1,84)
    nodes.append(helper.make_node("Sub", ["h6u", const("rbf_c", model.centres[None])], ["rd"]))
    nodes.append(helper.make_node("Mul", ["rd", "rd"], ["rd2"]))
    nodes.append(helper.make_node("ReduceSum", ["rd2", "ax2"], ["y"], keepdims=0))
    graph = helper.make_graph(
        nodes,
        "lenet5",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


class OnnxRuntime(Impl):
    key = "onnxruntime"
    requires = ("onnxruntime", "onnx")

    def prepare(self, setup: Setup) -> None:
        import onnxruntime as ort

        self.ort = ort
        self.version = f"onnxruntime {ort.__version__}"
        self.path = Path(tempfile.mkdtemp(prefix="lenet_fast_bench_")) / "lenet5.onnx"
        graph = setup.options.get("onnx_graph", "auto")
        why_not_torch = ""
        if graph in ("auto", "torch"):
            try:
                export_torch_onnx(setup.model, self.path)
                self.source = "torch.onnx.export (TorchScript exporter, dynamo=False)"
            except Exception as e:
                if graph == "torch":
                    raise
                first = str(e).splitlines()[0][:120] if str(e) else ""
                why_not_torch = f" (torch.onnx.export unavailable: {type(e).__name__}: {first})"
        if graph == "helper" or why_not_torch:
            build_onnx_graph(setup.model, self.path)
            self.source = "the onnx helper API" + why_not_torch
        self.sessions: dict[int, Any] = {}
        self.threads = 1
        self.note = f"InferenceSession, CPUExecutionProvider, graph from {self.source}"

    def supports(self, task: str) -> str | None:
        return "inference only" if task == "train" else None

    def set_threads(self, n: int) -> None:
        self.threads = n

    def session(self, n: int) -> Any:
        if n not in self.sessions:
            so = self.ort.SessionOptions()
            so.intra_op_num_threads = n
            so.inter_op_num_threads = 1
            so.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self.sessions[n] = self.ort.InferenceSession(
                str(self.path), so, providers=["CPUExecutionProvider"]
            )
        return self.sessions[n]

    def infer(self, x: npt.NDArray[np.float32]) -> Callable[[], Any]:
        s = self.session(self.threads)
        feed = {s.get_inputs()[0].name: x}
        return lambda: s.run(None, feed)[0]

    def close(self) -> None:
        self.sessions.clear()
        try:
            self.path.unlink()
            self.path.parent.rmdir()
        except OSError:
            pass


IMPL = OnnxRuntime
