"""LiteRT (the TensorFlow Lite runtime, ``ai-edge-litert``), inference only, on the model's
own ``.tflite`` export (:meth:`lenet_fast.LeNet5.to_tflite`: the same weights, NHWC), run by
the interpreter with its default delegate, XNNPACK."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import numpy.typing as npt

from .base import Impl, Setup


class LiteRT(Impl):
    key = "litert"
    # to_tflite packs the file with the flatbuffers builder and the schema LiteRT ships
    requires = ("ai_edge_litert", "flatbuffers")

    def prepare(self, setup: Setup) -> None:
        from importlib.metadata import version

        import ai_edge_litert.interpreter as litert

        self.litert = litert
        self.version = f"ai-edge-litert {version('ai-edge-litert')}"
        self.path = Path(tempfile.mkdtemp(prefix="lenet_fast_bench_")) / "lenet5.tflite"
        setup.model.to_tflite(self.path)
        # one interpreter per (threads, batch): its thread count is fixed when it is built,
        # and a resize reallocates its tensors, so cases that alternate keep their own
        self.interpreters: dict[tuple[int, int], Any] = {}
        self.threads = 1
        self.note = (
            "Interpreter(num_threads=threads) on LeNet5.to_tflite's file, default delegate "
            "(XNNPACK), input resized to the batch; the input is transposed to NHWC once, "
            "outside the timed call, which copies it in (set_tensor), invokes and copies the "
            "penalties out (get_tensor)"
        )

    def supports(self, task: str) -> str | None:
        return "inference only" if task == "train" else None

    def set_threads(self, n: int) -> None:
        # the next infer() builds (or reuses) an interpreter of n threads
        self.threads = n

    def interpreter(self, n: int, batch: int) -> Any:
        if (n, batch) not in self.interpreters:
            it = self.litert.Interpreter(model_path=str(self.path), num_threads=n)
            it.resize_tensor_input(it.get_input_details()[0]["index"], [batch, 32, 32, 1])
            it.allocate_tensors()
            self.interpreters[(n, batch)] = it
        return self.interpreters[(n, batch)]

    def infer(self, x: npt.NDArray[np.float32]) -> Callable[[], Any]:
        it = self.interpreter(self.threads, x.shape[0])
        i_in = it.get_input_details()[0]["index"]
        i_out = it.get_output_details()[0]["index"]  # the penalties [N,10]
        x_nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))

        def run() -> Any:
            it.set_tensor(i_in, x_nhwc)
            it.invoke()
            return it.get_tensor(i_out)

        return run

    def close(self) -> None:
        self.interpreters.clear()
        try:
            self.path.unlink()
            self.path.parent.rmdir()
        except OSError:
            pass


IMPL = LiteRT
