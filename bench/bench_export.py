#!/usr/bin/env python
"""How closely the exported graphs follow the model on MNIST's 10,000 test digits: ONNX
Runtime on the ONNX file, and LiteRT's interpreter on the LiteRT file, with its default
delegate (XNNPACK) and with its builtin kernels only. For each: the labels that agree with
``model.predict``, and the largest differences of the penalties (and, for ONNX, whose graph
has it, of Eq. 9's posterior).

    python bench/bench_export.py [--data DIR] [--json PATH]

The models: both shipped ones, and two moved off their initialisation (every parameter
plus 0.05 x a normal draw, seed 3; tests/conftest.py's moved_model), one with trainable RBF
centres and one with subsample="sum". Each is exported at the default settings (float32
input; ONNX at the default opset) and run on one thread. A runtime that is not installed
is left out, and the report says so. Results go to ``--json`` (default
bench/results/export.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from harness.facts import machine_facts
from harness.output import SCHEMA, default_json, write_json
from lenet_fast import LeNet5, load_mnist

Run = Callable[[LeNet5, np.ndarray, Path], "tuple[np.ndarray, np.ndarray | None]"]
CHUNK = 2000


def moved(seed: int = 3, **config: Any) -> LeNet5:
    m = LeNet5(seed=seed, **config)
    rng = np.random.default_rng(seed)
    for a in m.params.values():
        a += (0.05 * rng.standard_normal(a.shape)).astype(np.float32)
    return m


def onnxruntime_run(model: LeNet5, x: np.ndarray, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """ONNX Runtime's CPU provider, one thread: the penalties and the posterior."""
    import onnxruntime as ort

    path = model.to_onnx(folder / "m.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    outs = [
        sess.run(["penalties", "proba"], {"x": x[i : i + CHUNK]}) for i in range(0, len(x), CHUNK)
    ]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def litert_run(resolver: str) -> Run:
    """LiteRT's interpreter with op resolver ``resolver`` (an ``OpResolverType`` name), one
    thread: the penalties (the LiteRT graph has no posterior output)."""

    def run(model: LeNet5, x: np.ndarray, folder: Path) -> tuple[np.ndarray, None]:
        from ai_edge_litert import interpreter as litert

        path = model.to_tflite(folder / "m.tflite")
        it = litert.Interpreter(
            model_path=str(path),
            experimental_op_resolver_type=getattr(litert.OpResolverType, resolver),
            num_threads=1,
        )
        (inp,), (out,) = it.get_input_details(), it.get_output_details()
        it.resize_tensor_input(inp["index"], [CHUNK, 32, 32, 1])
        it.allocate_tensors()
        pens = []
        for i in range(0, len(x), CHUNK):
            part = np.ascontiguousarray(x[i : i + CHUNK].transpose(0, 2, 3, 1))
            if len(part) != CHUNK:
                it.resize_tensor_input(inp["index"], list(part.shape))
                it.allocate_tensors()
            it.set_tensor(inp["index"], part)
            it.invoke()
            pens.append(it.get_tensor(out["index"]).copy())
        return np.concatenate(pens), None

    return run


#: runtime -> (the package it needs, how it runs a model)
RUNTIMES: dict[str, tuple[str, Run]] = {
    "ONNX Runtime": ("onnxruntime", onnxruntime_run),
    "LiteRT, XNNPACK delegate": ("ai_edge_litert", litert_run("AUTO")),
    "LiteRT, builtin kernels": ("ai_edge_litert", litert_run("BUILTIN_WITHOUT_DEFAULT_DELEGATES")),
}


def agreement(model: LeNet5, te_x: np.ndarray, run: Run, folder: Path) -> dict[str, Any]:
    pen, proba = run(model, model.prepare(te_x), folder)
    want = model.forward(te_x)
    diff = np.abs(pen.astype(np.float64) - want)
    return {
        "digits": len(te_x),
        "labels_agree": int((pen.argmin(axis=1) == model.predict(te_x)).sum()),
        "max_abs_penalty_diff": float(diff.max()),
        "max_rel_penalty_diff": float((diff / np.maximum(np.abs(want), 1e-30)).max()),
        "max_abs_proba_diff": (
            None if proba is None else float(np.abs(proba - model.predict_proba(te_x)).max())
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--data", default=None, help="MNIST folder (default $LENET_FAST_DATA)")
    ap.add_argument("--json", metavar="PATH", default=default_json("export"))
    a = ap.parse_args(argv)
    te_x = load_mnist(a.data)[2]
    models = {
        "mnist": LeNet5.pretrained("mnist"),
        "mnist-distorted": LeNet5.pretrained("mnist-distorted"),
        "trainable RBF (moved)": moved(rbf="trainable"),
        'subsample="sum" (moved)': moved(subsample="sum"),
    }
    facts = machine_facts(threads=1)
    rows, missing = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for runtime, (package, run) in RUNTIMES.items():
            if importlib.util.find_spec(package) is None:
                missing.append(f"{runtime}: {package} is not installed")
                continue
            for name, model in models.items():
                rows.append(
                    {"runtime": runtime, "model": name, **agreement(model, te_x, run, Path(tmp))}
                )
    print(
        f"{'runtime':26s} {'model':24s} {'labels agree':>14s} {'max |dpen|':>11s} {'max |dP|':>9s}"
    )
    for r in rows:
        dp = r["max_abs_proba_diff"]
        print(
            f"{r['runtime']:26s} {r['model']:24s} {r['labels_agree']:>7,}/{r['digits']:<6,} "
            f"{r['max_abs_penalty_diff']:11.2e} {'-' if dp is None else f'{dp:.2e}':>9s}"
        )
    for m in missing:
        print(f"not run: {m}")
    write_json(
        a.json,
        {
            "schema": SCHEMA,
            "script": "bench/bench_export.py",
            "facts": facts,
            "rows": rows,
            "not_run": missing,
        },
    )
    return 0 if all(r["labels_agree"] == r["digits"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
