"""OpenVINO (CPU plugin), inference only, on the ONNX graph ONNX Runtime runs (exported from
PyTorch, or written by :meth:`lenet_fast.LeNet5.to_onnx`; ``--onnx-graph``), compiled for
float32 at a fixed batch and thread count."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from .base import Impl, Setup
from .onnxrt import write_onnx


def compile_config(threads: int) -> dict[str, Any]:
    """The CPU plugin's properties: ``threads`` inference threads, float32 enforced (the
    plugin's default on a CPU with AVX-512 BF16 or AMX would be bfloat16, which would not
    compute this network in float32 as every other implementation does), one request at a
    time."""
    return {
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
    }


def _shown(value: Any) -> str:
    """A property's value as the config writes it (an element type as ``f32``)."""
    name = getattr(value, "get_type_name", None)
    return str(name() if callable(name) else value)


class OpenVINO(Impl):
    key = "openvino"
    requires = ("openvino", "onnx")

    def prepare(self, setup: Setup) -> None:
        import openvino as ov

        self.ov = ov
        self.version = f"openvino {ov.__version__.split('-')[0]}"
        self.path = Path(tempfile.mkdtemp(prefix="lenet_fast_bench_")) / "lenet5.onnx"
        self.source = write_onnx(setup, self.path)
        self.core = ov.Core()
        model = self.core.read_model(str(self.path))
        # only the penalties (the first output), what every implementation returns (the
        # helper's graph also computes the label and the posteriors from them)
        self.model = ov.Model([model.outputs[0]], model.get_parameters(), "lenet5")
        # one compiled model per (threads, batch): a static shape and a thread count are
        # fixed at compilation
        self.compiled: dict[tuple[int, int], Any] = {}
        self.threads = 1
        # the properties as the plugin took them, read back from a first compilation
        cm, _ = self.compile(1, 1)
        took = ", ".join(
            f"{k} {_shown(cm.get_property(k))}"
            for k in ("INFERENCE_PRECISION_HINT", "NUM_STREAMS", "ENABLE_CPU_PINNING")
        )
        self.note = (
            f"core.compile_model(the graph reshaped to the batch, 'CPU', {compile_config(1)} "
            f"with the case's threads), the penalties output only (compiled: {took}); an "
            f"infer request, the input shared, not copied; graph from {self.source}"
        )

    def supports(self, task: str) -> str | None:
        return "inference only" if task == "train" else None

    def set_threads(self, n: int) -> None:
        self.threads = n

    def compile(self, n: int, batch: int) -> tuple[Any, Any]:
        """The compiled model and its infer request for n threads at this batch."""
        if (n, batch) not in self.compiled:
            m = self.model.clone()
            m.reshape({"x": [batch, 1, 32, 32]})
            cm = self.core.compile_model(m, "CPU", compile_config(n))
            if cm.get_property("INFERENCE_PRECISION_HINT") != self.ov.Type.f32:
                got = _shown(cm.get_property("INFERENCE_PRECISION_HINT"))
                raise RuntimeError(f"the plugin compiled for {got}, not f32")
            if cm.get_property("INFERENCE_NUM_THREADS") != n:
                got = cm.get_property("INFERENCE_NUM_THREADS")
                raise RuntimeError(f"the plugin compiled for {got} threads, not {n}")
            self.compiled[(n, batch)] = (cm, cm.create_infer_request())
        return self.compiled[(n, batch)]

    def infer(self, x: npt.NDArray[np.float32]) -> Callable[[], Any]:
        _, req = self.compile(self.threads, x.shape[0])
        return lambda: req.infer({0: x}, share_inputs=True)[0]

    def close(self) -> None:
        self.compiled.clear()
        try:
            self.path.unlink()
            self.path.parent.rmdir()
        except OSError:
            pass


IMPL = OpenVINO
