"""ONNX Runtime (CPU execution provider), inference only, on the network exported from
PyTorch (``torch.onnx.export``) or written by lenet_fast's own exporter
(:func:`build_onnx_graph`, the ``onnx`` helper API) when torch cannot export it or
``--onnx-graph helper`` asks."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from lenet_fast import LeNet5

from .base import Impl, Setup
from .torch_net import build_torch_net

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
    """The package's own exporter (:meth:`lenet_fast.LeNet5.to_onnx`, the onnx helper
    API): C3 as Table I's 60 kernels (a gather feeding one depthwise convolution), outputs
    penalties, label and proba; the benchmark reads the penalties."""
    model.to_onnx(path, opset=OPSET)


def write_onnx(setup: Setup, path: Path) -> str:
    """The graph ``--onnx-graph`` asks for (``setup.options["onnx_graph"]``) at ``path``,
    and where it came from: exported from PyTorch (auto: when torch can export it) or
    written by lenet_fast's own exporter. ONNX Runtime and OpenVINO run the same graph."""
    graph = setup.options.get("onnx_graph", "auto")
    why_not_torch = ""
    if graph in ("auto", "torch"):
        try:
            export_torch_onnx(setup.model, path)
            return "torch.onnx.export (TorchScript exporter, dynamo=False)"
        except Exception as e:
            if graph == "torch":
                raise
            first = str(e).splitlines()[0][:120] if str(e) else ""
            why_not_torch = f" (torch.onnx.export unavailable: {type(e).__name__}: {first})"
    build_onnx_graph(setup.model, path)
    return "lenet_fast's LeNet5.to_onnx (the onnx helper API)" + why_not_torch


class OnnxRuntime(Impl):
    key = "onnxruntime"
    requires = ("onnxruntime", "onnx")

    def prepare(self, setup: Setup) -> None:
        import onnxruntime as ort

        self.ort = ort
        self.version = f"onnxruntime {ort.__version__}"
        self.path = Path(tempfile.mkdtemp(prefix="lenet_fast_bench_")) / "lenet5.onnx"
        self.source = write_onnx(setup, self.path)
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
        first = [s.get_outputs()[0].name]  # the penalties (y of the torch graph)
        return lambda: s.run(first, feed)[0]

    def close(self) -> None:
        self.sessions.clear()
        try:
            self.path.unlink()
            self.path.parent.rmdir()
        except OSError:
            pass


IMPL = OnnxRuntime
